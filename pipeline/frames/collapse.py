"""A fall among other movers: a person the people detector followed upright goes down where they stood.

The dense observer (`pipeline.frames.motion`) follows foreground blobs; when people walk side by
side, with a dog, over a shiny floor, their blobs merge and a fall inside the merged blob never
shows as one silhouette turning from tall to wide.  This watcher follows *people* instead: OpenCV's
HOG people detector, run a few times a second on the regions of tall movers, gives each upright
walker a box, and the moving pixels are then read inside that box only, so a neighbour's blob
does not count.  A fall, physically, in those terms:

- the person was detected upright several times with a steady box height, whole in the frame
  (a box cut by the frame's edge is someone walking out of view);
- the detector loses them (a person on the floor is no upright pedestrian), and within
  ``COLLAPSE_WITHIN_S`` of the last upright detection the upper part of their box empties of
  moving pixels (the head and torso came down) while its lower part — widened sideways, for a
  body laid out — still holds them (the body is still there: they did not walk away);
- and that lasts ``STAY_DOWN_S`` with no upright detection there again (someone who bends or
  crouches comes back up within a second or two and is detected again), or the video ends while
  they are still down after ``END_MIN_DOWN_S``.

What it cannot see: a person the detector never found upright (seen from straight above, partly
hidden, smaller than the detector's window in a merged region), a fall in the first second of a
person's appearance, or a person who sits down fast on the floor (that looks the same).  A deep bend
held still for longer than about a second beside another person (measured on generated clips: 70°
held 1.2 s, 55° held 1.5 s) stays down ``STAY_DOWN_S`` and is called a fall; one held 0.8 s is not.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import cv2
import numpy as np

from pipeline.analyzers.offline_vision import HogPeople
from pipeline.records import FallSighting, Mover

PeopleFinder = Callable[[np.ndarray, Sequence[Mover]], list[tuple[float, float, float, float]]]
"""(BGR frame, tall movers) -> upright people as (x, y, w, h) boxes in frame fractions."""

DETECT_EVERY_S = 0.24
"""How often the people detector runs while a tall mover is in view."""
MIN_MOVER_HEIGHT = 0.15
"""Share of the frame height from which a mover may hold a person worth detecting."""
MAX_REGIONS = 2
"""Movers (largest first) whose regions the detector looks at per run: it is the costly part."""
HOG_MIN_WEIGHT = 0.5
HOG_SCALE = 1.05
"""Step between the detector's image scales: coarser steps miss people between them."""
REGION_BODY_PX = 180
"""Detector regions are scaled so that a person as tall as the mover is about this many pixels."""
SAME_PERSON_OVERLAP = 0.5
SAME_HEIGHT = 0.7
"""A detection continues a person whose box it overlaps by this share of the smaller box, at about
the same height (a much smaller box there is someone else, or the person sitting, not standing)."""
MIN_DETECTIONS = 3
STEADY_HEIGHT = 0.75
"""The last ``MIN_DETECTIONS`` box heights stay within this ratio: one person, not a flicker."""
BODY_TOP, BODY_BOTTOM = 0.1, 0.9
"""Where the body sits inside a detector box (the detector pads its window around the person)."""
UPPER_PART = 0.45
"""The upper part of the body, in body heights from its top: head and torso of a standing person."""
LOWER_FROM, LOWER_BELOW = 0.55, 0.25
"""The lower part: from this far down the body to this far below the feet (a body falls past them)."""
WIDEN = 1.2
"""Both parts reach this many box widths to either side of the box: a body laid out sideways is
about one and a half box widths long."""
CORE_WIDTH = 0.5
"""The middle share of a detector box's width that another person's body fills."""
IN_PLACE = 1.0
"""The lower part's moving pixels are centred within this many box widths of the box's middle."""
MIN_STANDING_UPPER = 0.02
"""Share of the upper part moving at the last upright detection: a walking person, not a still one."""
UPPER_EMPTIED = 0.35
"""The upper part holds at most this share of its moving pixels at the last upright detection..."""
MIN_LOWER = 0.04
"""...while this share of the lower part moves (the body is still there)..."""
LOWER_OVER_UPPER = 3.0
"""...and this many times the upper part's share (the moving mass sits low)."""
COLLAPSE_WITHIN_S = 1.2
"""From the last upright detection to the emptied upper part: a fall is fast, sitting down is not."""
STAY_DOWN_S = 2.0
"""Down this long, with no upright detection there again, is a fall; a bend comes back up sooner
(a deep bend held 0.8 s beside another person empties the upper part for about 1.4 s)."""
STAY_MAX_DRIFT = 0.6
"""While down, the lower part's moving pixels stay within this many body heights of where they were..."""
FADE_MIN_S = 0.5
VANISHED = 0.25
"""...and keep more than this share of them for ``FADE_MIN_S``: a body lying still fades into the
background more slowly; a walker leaving the region takes them all at once."""
END_MIN_DOWN_S = 0.4
"""Down at least this long when the video ends counts: the end cut the wait short."""
FORGET_AFTER_S = 3.0
"""A person not detected for this long is forgotten..."""
FORGET_DOWN_AFTER_S = 60.0
"""...and one who went down, this long after their last upright detection (the alert has gone out)."""
TRACK_ID_BASE = 1_000_000
"""Sightings carry ids from their own range, apart from the blob tracks' ids."""


@dataclass
class _Person:
    id: int
    box: tuple[float, float, float, float]
    heights: list[float]
    last_seen: float
    standing_upper: float = 0.0
    down_since: float | None = None
    lying: Mover | None = None
    landed: tuple[float, float] | None = None
    """Where the lower part's moving pixels were (mean x) and their share, when the upper part emptied."""
    fallen: bool = False

    @property
    def steady(self) -> bool:
        last = self.heights[-MIN_DETECTIONS:]
        return len(last) >= MIN_DETECTIONS and min(last) >= STEADY_HEIGHT * max(last)

    @property
    def whole(self) -> bool:
        x, y, w, h = self.box
        return x > 0.01 and x + w < 0.99 and y + h < 0.98

    def standing(self) -> Mover:
        x, y, w, h = self.box
        top, bh = y + BODY_TOP * h, (BODY_BOTTOM - BODY_TOP) * h
        # A detector window is twice as tall as wide; the body fills its middle rows.
        return Mover(x=x, y=top, w=w, h=bh, aspect=2.0 * (BODY_BOTTOM - BODY_TOP), area=0.0, track=self.id)


class _Parts(NamedTuple):
    upper: float
    """Moving share of the upper part (head and torso of the person standing)."""
    lower: float
    """Moving share of the lower part."""
    lying: Mover | None
    """The lower part's moving pixels' box (None when nothing moves there)."""
    middle: float
    """The lower part's moving pixels' mean x (frame fraction; the box's middle when none)."""


class HogPeopleFinder:
    """Upright people in the regions of tall movers, by OpenCV's default HOG people detector."""

    def __init__(self) -> None:
        self._hog = HogPeople()

    def __call__(self, image: np.ndarray, movers: Sequence[Mover]) -> list[tuple[float, float, float, float]]:
        H, W = image.shape[:2]
        found: list[tuple[float, float, float, float]] = []
        for mv in movers:
            # The mover's mask may miss a head against a like-coloured wall: look above it too.
            pad_y, pad_x = 0.35 * mv.h, 0.3 * mv.h * H / W
            x0, x1 = max(0.0, mv.x - pad_x), min(1.0, mv.x + mv.w + pad_x)
            y0, y1 = max(0.0, mv.y - pad_y), min(1.0, mv.bottom + 0.25 * mv.h)
            roi = image[int(y0 * H):int(y1 * H), int(x0 * W):int(x1 * W)]
            f = min(2.0, REGION_BODY_PX / max(1.0, mv.h * H))
            if roi.size == 0:
                continue
            roi = cv2.resize(roi, None, fx=f, fy=f, interpolation=cv2.INTER_AREA if f < 1 else cv2.INTER_LINEAR)
            for bx, by, bw, bh, _ in self._hog.detect(roi, threshold=HOG_MIN_WEIGHT, scale=HOG_SCALE):
                box = (x0 + bx / f / W, y0 + by / f / H, bw / f / W, bh / f / H)
                if not any(_overlap(box, other) >= SAME_PERSON_OVERLAP for other in found):
                    found.append(box)
        return found


class CollapseWatch:
    """Per-camera; the dense observer calls `observe` on each frame it looks at, in order."""

    def __init__(self, finder: PeopleFinder | None = None) -> None:
        self._finder = finder
        self._people: list[_Person] = []
        self._next_id = TRACK_ID_BASE + 1
        self._next_run: float | None = None
        self._down: FallSighting | None = None

    def reset(self) -> None:
        self._people.clear()
        self._next_run = None
        self._down = None

    def observe(self, image: np.ndarray, mask: np.ndarray, movers: Sequence[Mover], t: float) -> FallSighting | None:
        """One frame: its BGR image, the observer's 0/1 moving mask and movers.  Returns a fall while one is down."""
        tall = sorted((m for m in movers if m.h >= MIN_MOVER_HEIGHT), key=lambda m: -m.area)[:MAX_REGIONS]
        detections: list[tuple[float, float, float, float]] = []
        if tall and (self._next_run is None or t >= self._next_run - 1e-9):
            self._next_run = t + DETECT_EVERY_S
            if self._finder is None:
                self._finder = HogPeopleFinder()
            detections = self._finder(image, tall)
        seen = self._match(detections, mask, t)
        for person in self._people:
            if person.id not in seen:
                self._judge(person, mask, t)
        kept = [p for p in self._people if t - p.last_seen <= (FORGET_DOWN_AFTER_S if p.down_since is not None else FORGET_AFTER_S)]
        if self._down is not None and not any(p.id == self._down.track for p in kept):
            self._down = None
        self._people = kept
        return self._down

    def finish(self, t: float) -> FallSighting | None:
        """The video ended: a person down long enough since a fast collapse counts as fallen."""
        for person in self._people:
            if not person.fallen and person.down_since is not None and t - person.down_since >= END_MIN_DOWN_S:
                person.fallen = True
                self._down = self._sighting(person, t, "collapsed among other movers as the video ended")
        return self._down

    # ----------------------------------------------------------------------------------

    def _match(self, detections: list[tuple[float, float, float, float]], mask: np.ndarray, t: float) -> set[int]:
        seen: set[int] = set()
        for box in detections:
            person = max((p for p in self._people if p.id not in seen), key=lambda p: _overlap(box, p.box), default=None)
            if person is None or _overlap(box, person.box) < SAME_PERSON_OVERLAP or box[3] < SAME_HEIGHT * person.box[3]:
                person = _Person(id=self._next_id, box=box, heights=[], last_seen=t)
                self._next_id += 1
                self._people.append(person)
            elif person.down_since is not None or person.fallen:
                # Upright again where they went down: they bent or got up.
                if self._down is not None and self._down.track == person.id:
                    self._down = None
                person.down_since, person.lying, person.landed, person.fallen = None, None, None, False
            seen.add(person.id)
            person.box, person.last_seen = box, t
            person.heights = [*person.heights[-(MIN_DETECTIONS - 1):], box[3]]
            person.standing_upper = self._parts(person, mask).upper
        return seen

    def _judge(self, person: _Person, mask: np.ndarray, t: float) -> None:
        upper, lower, lying, middle = self._parts(person, mask)
        x, _, w, _ = person.box
        if person.down_since is None:
            if person.fallen or not (person.steady and person.whole) or person.standing_upper < MIN_STANDING_UPPER:
                return
            if t - person.last_seen > COLLAPSE_WITHIN_S:
                return
            # The body is still there, low, and came down where it stood.
            in_place = lying is not None and abs(middle - (x + w / 2)) <= IN_PLACE * w
            if upper <= UPPER_EMPTIED * person.standing_upper and lower >= MIN_LOWER and lower >= LOWER_OVER_UPPER * upper \
                    and in_place:
                person.down_since, person.lying, person.landed = t, lying, (middle, lower)
            return
        assert person.landed is not None
        landed_middle, landed_lower = person.landed
        body = (BODY_BOTTOM - BODY_TOP) * person.box[3]
        # Moved on: its moving pixels travelled, or vanished faster than a body lying still fades.
        moved_on = (lying is not None and abs(middle - landed_middle) > STAY_MAX_DRIFT * body) or \
            (t - person.down_since <= FADE_MIN_S and lower < VANISHED * landed_lower)
        if upper > UPPER_EMPTIED * person.standing_upper or moved_on:
            # Up again (moving pixels back in the upper part) or moved on: no fall.
            if self._down is not None and self._down.track == person.id:
                self._down = None
            person.down_since, person.lying, person.landed, person.fallen = None, None, None, False
            return
        # A body lying still fades into the background: no moving pixels left is still down.  Pixels
        # away from where they stood are someone else's (a passer-by's feet), not the body's.
        if lying is not None and abs(lying.cx - (x + w / 2)) <= IN_PLACE * w:
            person.lying = lying
        if not person.fallen and t - person.down_since >= STAY_DOWN_S:
            person.fallen = True
        if person.fallen:
            self._down = self._sighting(person, t, "collapsed among other movers and stayed down")

    def _parts(self, person: _Person, mask: np.ndarray) -> _Parts:
        """Moving shares of the person's upper and lower parts, and where the lower part's moving pixels are.

        Both parts reach sideways beyond the box (a body laid out or bent over is wider than it
        stood).  Other people are left out: beside this person's box, their whole box; inside it,
        the middle of theirs (the detector pads its window, and people overlap in the image).
        """
        mh, mw = mask.shape[:2]
        x, y, w, h = person.box
        top, body = y + BODY_TOP * h, (BODY_BOTTOM - BODY_TOP) * h

        def rows(a: float, b: float) -> tuple[int, int]:
            return max(0, int(a * mh)), min(mh, int(np.ceil(b * mh)))

        def cols(a: float, b: float) -> tuple[int, int]:
            return max(0, int(a * mw)), min(mw, int(np.ceil(b * mw)))

        r0, r1 = rows(top, top + (1.0 + LOWER_BELOW) * body)
        c0, c1 = cols(x - WIDEN * w, x + (1.0 + WIDEN) * w)
        region = mask[r0:r1, c0:c1].astype(bool)
        if region.size == 0:
            return _Parts(0.0, 0.0, None, x + w / 2)
        keep = np.ones_like(region)
        own = np.zeros_like(region)
        a0, a1 = cols(x, x + w)
        own[:, max(0, a0 - c0):max(0, a1 - c0)] = True
        for other in self._people:
            if other.id == person.id or other.down_since is not None or other.fallen:
                continue
            ox, oy, ow, oh = other.box
            theirs = np.zeros_like(region)
            b0, b1 = rows(oy, oy + oh)
            a0, a1 = cols(ox, ox + ow)
            theirs[max(0, b0 - r0):max(0, b1 - r0), max(0, a0 - c0):max(0, a1 - c0)] = True
            core = np.zeros_like(region)
            b0, b1 = rows(oy + BODY_TOP * oh, oy + BODY_BOTTOM * oh)
            a0, a1 = cols(ox + (1.0 - CORE_WIDTH) / 2 * ow, ox + (1.0 + CORE_WIDTH) / 2 * ow)
            core[max(0, b0 - r0):max(0, b1 - r0), max(0, a0 - c0):max(0, a1 - c0)] = True
            keep &= ~np.where(own, core, theirs)
        moving = region & keep
        split_upper = int(round(UPPER_PART * body * mh))
        split_lower = int(round(LOWER_FROM * body * mh))

        def share(a: np.ndarray, k: np.ndarray) -> float:
            return float(a.sum()) / max(1.0, float(k.sum()))

        upper_share = share(moving[:split_upper], keep[:split_upper])
        lower = moving[split_lower:]
        lower_share = share(lower, keep[split_lower:])
        ys, xs = np.nonzero(lower)
        if len(xs) == 0:
            return _Parts(upper_share, lower_share, None, x + w / 2)
        lx0, lx1 = c0 + xs.min(), c0 + xs.max() + 1
        ly0, ly1 = r0 + split_lower + ys.min(), r0 + split_lower + ys.max() + 1
        lying = Mover(x=lx0 / mw, y=ly0 / mh, w=(lx1 - lx0) / mw, h=(ly1 - ly0) / mh,
                      aspect=(ly1 - ly0) / max(1, lx1 - lx0), area=len(xs) / (mh * mw), track=person.id)
        return _Parts(upper_share, lower_share, lying, (c0 + float(xs.mean()) + 0.5) / mw)

    def _sighting(self, person: _Person, t: float, how: str) -> FallSighting:
        assert person.down_since is not None
        standing = person.standing()
        lying = person.lying or standing
        return FallSighting(track=person.id, onset=person.down_since, timestamp=t, how=how, standing=standing,
                            lying=lying, top_drop=round((lying.y - standing.y) / max(1e-6, standing.h), 3),
                            descent_s=round(person.down_since - person.last_seen, 3))


def _overlap(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    """Intersection of two boxes as a share of the smaller one."""
    w = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    h = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    return w * h / max(1e-9, min(a[2] * a[3], b[2] * b[3]))
