"""A cheap dense motion observer: what moves, and whether a tracked upright mover fell.

The student sees about two frames a second, and only those the gate passes; a fall takes
half a second.  This observer looks at many more frames (every decoded frame up to
``motion.fps``) on a small grey copy (``motion.width`` pixels wide): OpenCV's MOG2
background subtractor, foreground blobs grouped into movers, and movers tracked frame to
frame.  Each observed frame yields a `MotionRecord` (immutable) that the pipeline attaches
to the next frame it sends to the student, and that travels with it into escalations.

A fall, physically: a mover that stood steadily upright (clearly taller than wide, its height
not flickering, at walking pace, whole in the frame) and then, within ``FALL_MAX_DESCENT_S``,
turns into a silhouette that is clearly wider than tall, much lower and wider than it stood,
with about the same moving area (the same body, laid out), its bottom on the same floor line,
having lost height fast (``FALL_MIN_SHRINK_RATE`` standing heights a second) — and that stays
down without rising again for ``STAY_DOWN_S``, or ``FLAT_STAY_DOWN_S`` when flat on the floor (or
fades into the background right where it landed, lying still; or is still down when the video ends).  Bending and sitting keep the
silhouette compact, or come back up within a second or two, the top of the silhouette rising
first; lying down on purpose is slow; walking away shrinks the whole figure and raises its
feet; leaving the frame cuts it at the border; a flame flickers.  None of those is a fall.

What it cannot do: separate people who overlap in the image (a fall beside another walker
merges with them: `pipeline.frames.collapse` follows the people a detector finds instead), or see
a fall of someone who was already in view, standing still, when the observer started (they are
part of the learnt background until they move).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field, replace

import cv2
import numpy as np

from pipeline.frames.camera_motion import ViewAligner
from pipeline.frames.collapse import CollapseWatch, PeopleFinder
from pipeline.records import FallSighting, MotionRecord, Mover

#: Seconds of history of the background model: a thing that stops moving joins the
#: background after roughly a tenth of this (MOG2's default background ratio of 0.9).
BACKGROUND_HISTORY_S = 40.0
MOG2_VAR_THRESHOLD = 16.0
#: A moving share of the frame above this is a global change (camera moved, lights): re-learn.
GLOBAL_CHANGE_FRACTION = 0.5
#: Blobs smaller than this share of the frame are noise.
MIN_BLOB_AREA = 0.0015
#: Blobs this close (share of frame width, and of their own size) are parts of one mover.
GROUP_GAP = 0.02
GROUP_GAP_OF_SIZE = 0.15

UPRIGHT_ASPECT = 1.3
"""Height over width (pixels) from which a silhouette is upright."""
STANDING_ASPECT = 1.5
"""A mover counts as a standing figure (a person's shape) from this height over width."""
MIN_UPRIGHT_SIGHTINGS = 3
STEADY_HEIGHT = 0.8
"""Those sightings' heights stay within this ratio of each other (a person does not flicker)."""
"""Observed frames a mover must have stood upright at walking pace before it can fall."""
LYING_ASPECT = 0.8
"""Height over width at or below which a silhouette is lying (clearly wider than tall)."""
MIN_UPRIGHT_HEIGHT = 0.15
"""Share of the frame height an upright mover must span to count as a person-sized figure."""
WALKER_MAX_SPEED = 1.5
"""Body heights per second: faster upright movers are not walking people."""
FALL_MAX_HEIGHT = 0.75
"""The lying silhouette is at most this share of the standing height..."""
FALL_MIN_TOP_DROP = 0.1
"""...its top at least this share of the standing height lower..."""
FALL_MIN_WIDENING = 1.3
"""...at least this many times as wide (the body laid out)..."""
FALL_MAX_FOOT_RISE = 0.35
"""...and its bottom risen by at most this share (on the same floor, not walking away)."""
FALL_MIN_AREA_KEPT = 0.4
FALL_MAX_AREA_GAIN = 3.0
"""The lying silhouette's moving area, as a share of the standing one's: the same body."""
FALL_MIN_SHRINK_RATE = 0.5
"""...losing height at least this share of the standing height per second."""
FALL_MAX_DESCENT_S = 1.5
"""From the last upright sighting to the first lying one: a fall is fast, lying down is not."""
FALL_UPRIGHT_MEMORY_S = 4.0
"""How far back an upright sighting may be to stand for the standing height."""
STAY_DOWN_S = 2.0
"""A lying silhouette must stay down this long to be a fall: someone who bends over, lunges or
stumbles comes back up within a second or two (a deep bend held 0.8 s is low for about 1.5 s);
someone who fell stays down.  A video that ends sooner is decided by `MotionObserver.finish`."""
FLAT_HEIGHT = 0.3
FLAT_LENGTH = 0.7
FLAT_STAY_DOWN_S = 0.5
FLAT_SETTLED_S = 0.25
"""A silhouette down for ``FLAT_STAY_DOWN_S`` and flat on the floor for the last ``FLAT_SETTLED_S`` —
at most ``FLAT_HEIGHT`` of the standing height (lower than any bend, crouch or kneel keeps its top)
and at least ``FLAT_LENGTH`` of it long (the body laid out, not the remnant of a figure fading into
the background while it holds still) — is a fall without the longer wait."""
RISING = 0.3
"""Standing heights by which the silhouette's top climbs back above, and its height grows back
beyond, the lowest it was since it landed: getting up, or straightening from a bend."""
STILL_SPEED = 0.5
"""Body heights per second below which a mover that faded away was lying still, not leaving."""
RISEN_HEIGHT = 0.35
"""Taller than wide again at this share of the standing height: sitting or getting up (or it never fell)."""
STAY_MAX_DRIFT = 0.6
"""While down, the silhouette's centre moves at most this many standing heights from where it landed."""
DOWN_HOLD_S = 30.0
"""A fallen mover that stops moving joins the background; it is still reported down this long."""
TRACK_TTL_S = 1.5


@dataclass
class _Track:
    id: int
    samples: deque[tuple[float, Mover]] = field(default_factory=lambda: deque(maxlen=120))
    upright_seen: int = 0
    last_seen: float = 0.0
    low_since: float | None = None
    standing: Mover | None = None
    """The upright sighting the current descent is measured against."""
    descent_s: float = 0.0
    fallen_at: float | None = None

    @property
    def box(self) -> Mover:
        return self.samples[-1][1]

    def speed(self, span_s: float = 0.8, height: float | None = None) -> float:
        """Centroid speed in body heights (``height``, else the box's own) per second over about the last ``span_s`` seconds."""
        t1, b1 = self.samples[-1]
        t0, b0 = t1, b1
        for ts, b in reversed(self.samples):
            if t1 - ts > span_s:
                break
            t0, b0 = ts, b
        if t1 <= t0:
            return 0.0
        return math.hypot(b1.cx - b0.cx, b1.cy - b0.cy) / (t1 - t0) / max(0.05, height or max(b1.h, b0.h))


class MotionObserver:
    """Per-camera dense observer; one thread (the runner's) calls `observe` in frame order."""

    def __init__(self, *, width: int = 192, fps: float = 12.5, people: PeopleFinder | None = None) -> None:
        self.width = int(width)
        self.fps = float(fps)
        self.period = 1.0 / self.fps
        self._next_due: float | None = None
        self._background: _Background | None = None
        self._tracks: list[_Track] = []
        self._next_id = 1
        self._down: FallSighting | None = None
        self._record: MotionRecord | None = None
        # Falls among merged movers: people followed by a person detector (`pipeline.frames.collapse`).
        self._collapse = CollapseWatch(people)

    @property
    def latest(self) -> MotionRecord | None:
        """The record of the newest observed frame."""
        return self._record

    def wants(self, timestamp: float) -> bool:
        """Whether a frame at ``timestamp`` is due for observation (at most ``fps`` per second)."""
        if self._next_due is None or timestamp >= self._next_due - 1e-9 or timestamp < self._next_due - 2.0 - self.period:
            return True
        return False

    def observe(self, image: np.ndarray, timestamp: float) -> MotionRecord:
        """Look at one decoded BGR frame; returns (and keeps) its record."""
        self._next_due = timestamp + self.period
        grey = self._small_grey(image)
        if self._background is None or self._background.shape != grey.shape:
            self._reset()
            self._background = _Background(grey, self.fps)
            self._record = MotionRecord(timestamp=timestamp, moving_fraction=0.0, movers=())
            return self._record
        moving = self._background.apply(grey)
        fraction = float(moving.mean())
        if fraction >= GLOBAL_CHANGE_FRACTION or self._background.view_lost:
            # The whole view changed (or the camera moved too far from the learnt view): no mover
            # can be told apart; learn the new view from here.
            self._reset()
            self._background = _Background(grey, self.fps)
            self._record = MotionRecord(timestamp=timestamp, moving_fraction=fraction, movers=(), fall=None,
                                        view_reset=True)
            return self._record
        movers = _movers(moving)
        self._match(movers, timestamp)
        fall = self._judge_falls(timestamp)
        collapse = self._collapse.observe(image, moving, movers, timestamp)
        fall = fall or collapse
        self._record = MotionRecord(
            timestamp=timestamp,
            moving_fraction=fraction,
            movers=tuple(tr.box for tr in self._tracks if tr.last_seen == timestamp),
            fall=fall,
        )
        return self._record

    def finish(self, timestamp: float) -> MotionRecord | None:
        """The video ended at ``timestamp``: a mover still low after a fast drop counts as fallen."""
        for tr in self._tracks:
            if tr.fallen_at is None and tr.low_since is not None and tr.standing is not None:
                tr.fallen_at = tr.low_since
                self._down = _sighting(tr, timestamp, "fell as the video ended")
        self._down = self._down or self._collapse.finish(timestamp)
        if self._record is not None and self._down is not None and self._record.fall != self._down:
            self._record = MotionRecord(timestamp=max(timestamp, self._record.timestamp),
                                        moving_fraction=self._record.moving_fraction,
                                        movers=self._record.movers, fall=self._down)
        return self._record

    # ----------------------------------------------------------------------------------

    def _small_grey(self, image: np.ndarray) -> np.ndarray:
        h, w = image.shape[:2]
        width = min(self.width, w)
        height = max(1, int(round(h * width / w)))
        small = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA) if width != w else image
        grey = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY) if small.ndim == 3 else small
        return cv2.GaussianBlur(grey, (3, 3), 0)

    def _reset(self) -> None:
        self._background = None
        self._tracks.clear()
        self._down = None
        self._collapse.reset()

    def _match(self, movers: list[Mover], t: float) -> None:
        """Best pairs first: a mover continues the track its box overlaps most, recent tracks preferred."""
        pairs = []
        for ti, tr in enumerate(self._tracks):
            last = tr.box
            for mi, m in enumerate(movers):
                score = _overlap(last, m)
                if score == 0.0:
                    d = math.hypot(m.cx - last.cx, m.cy - last.cy)
                    limit = 0.5 * max(last.h, last.w, m.h, m.w)
                    score = 0.5 * (1.0 - d / limit) if d < limit else 0.0
                if score > 0.0:
                    pairs.append((score - 0.3 * (t - tr.last_seen) / TRACK_TTL_S, ti, mi))
        taken_tracks: set[int] = set()
        taken_movers: set[int] = set()
        for _, ti, mi in sorted(pairs, reverse=True):
            if ti in taken_tracks or mi in taken_movers:
                continue
            taken_tracks.add(ti)
            taken_movers.add(mi)
            tr = self._tracks[ti]
            tr.samples.append((t, replace(movers[mi], track=tr.id)))
            tr.last_seen = t
        for mi, m in enumerate(movers):
            if mi in taken_movers:
                continue
            tr = _Track(id=self._next_id, last_seen=t)
            self._next_id += 1
            tr.samples.append((t, replace(m, track=tr.id)))
            self._tracks.append(tr)
        # A mover that came down and faded into the background at once is kept until it has been down long enough.
        self._tracks = [tr for tr in self._tracks if t - tr.last_seen <= TRACK_TTL_S or tr.fallen_at is not None
                        or (tr.low_since is not None and t - tr.low_since <= STAY_DOWN_S + TRACK_TTL_S)]

    def _judge_falls(self, t: float) -> FallSighting | None:
        for tr in self._tracks:
            if tr.last_seen != t:
                if tr.fallen_at is None and tr.low_since is not None and self._got_up_there(tr, t):
                    self._clear(tr)  # it faded while bent over; rising, it is a new mover
                    continue
                if tr.fallen_at is None and tr.low_since is not None and t - tr.low_since >= STAY_DOWN_S \
                        and tr.standing is not None and tr.speed(height=tr.standing.h) <= STILL_SPEED:
                    # Lying still, it faded into the background right where it landed.
                    tr.fallen_at = tr.low_since
                    self._down = _sighting(tr, t, "came down fast and lay still")
                continue
            box = tr.box
            if box.aspect >= STANDING_ASPECT and box.h >= MIN_UPRIGHT_HEIGHT and tr.speed() <= WALKER_MAX_SPEED \
                    and not box.touches_bottom:
                tr.upright_seen += 1
            if tr.fallen_at is not None:
                if not self._still_down(tr, box):
                    self._clear(tr)  # got up again
                continue
            if tr.low_since is not None:
                if not self._still_down(tr, box):
                    self._clear(tr)
                elif t - tr.low_since >= STAY_DOWN_S or (t - tr.low_since >= FLAT_STAY_DOWN_S
                                                          and _flat_since(tr, t - FLAT_SETTLED_S)):
                    tr.fallen_at = tr.low_since
                    self._down = _sighting(tr, t, "came down fast and stayed down")
                continue
            standing, descent = self._fast_drop(tr, box, t)
            if standing is not None:
                tr.low_since = t
                tr.standing = standing
                tr.descent_s = descent
        if self._down is not None and t - self._down.timestamp > DOWN_HOLD_S:
            self._down = None
        return self._down

    def _clear(self, tr: _Track) -> None:
        tr.fallen_at = tr.low_since = tr.standing = None
        if self._down is not None and self._down.track == tr.id:
            self._down = None

    def _got_up_there(self, tr: _Track, t: float) -> bool:
        """A mover seen now rises where this unseen low one lay: it got up, and its blob, faded while
        it held still, came back as a new mover whose top climbs."""
        ref, since = tr.standing, [b for ts, b in tr.samples if tr.low_since is not None and ts >= tr.low_since]
        assert ref is not None
        x0, x1 = min(b.x for b in since), max(b.x + b.w for b in since)
        return any(other is not tr and other.last_seen == t and other.box.x < x1 and other.box.x + other.box.w > x0
                   and _climbed(other, tr.low_since) >= RISING * ref.h for other in self._tracks)

    @staticmethod
    def _still_down(tr: _Track, box: Mover) -> bool:
        """Still down where it fell: not upright again nor rising, not travelling (a fallen person does not walk on).

        What is left of a person lying still fades into the background piece by piece; a small
        remnant is still down.
        """
        ref = tr.standing
        assert ref is not None and tr.low_since is not None
        since = [b for ts, b in tr.samples if ts >= tr.low_since]
        drift = math.hypot(box.cx - since[0].cx, box.cy - since[0].cy) / max(1e-6, ref.h)
        up_again = box.aspect >= UPRIGHT_ASPECT and box.h >= RISEN_HEIGHT * ref.h
        rising = box.y <= max(b.y for b in since) - RISING * ref.h and box.h >= min(b.h for b in since) + RISING * ref.h
        return not up_again and not rising and drift <= STAY_MAX_DRIFT and not box.touches_bottom

    @staticmethod
    def _fast_drop(tr: _Track, box: Mover, t: float) -> tuple[Mover | None, float]:
        """The upright sighting this lying box fell from (and the descent time), if it is a fall's shape."""
        if tr.upright_seen < MIN_UPRIGHT_SIGHTINGS or box.aspect > LYING_ASPECT or box.touches_bottom:
            return None, 0.0
        if not _stood_steadily(tr, t):
            return None, 0.0
        last_upright_t = None
        for ts, old in reversed(tr.samples):
            if ts >= t:
                continue
            if t - ts > FALL_UPRIGHT_MEMORY_S:
                break
            if old.aspect >= UPRIGHT_ASPECT and old.h >= MIN_UPRIGHT_HEIGHT and not old.touches_bottom \
                    and not old.touches_side:
                if last_upright_t is None and old.aspect >= STANDING_ASPECT:
                    last_upright_t = ts  # clearly standing: the descent is timed from here
                if last_upright_t is None:
                    continue
                if t - last_upright_t > FALL_MAX_DESCENT_S:
                    return None, 0.0
                lower = box.h <= FALL_MAX_HEIGHT * old.h and box.y >= old.y + FALL_MIN_TOP_DROP * old.h
                wider = box.w >= FALL_MIN_WIDENING * old.w
                same_floor = box.bottom >= old.bottom - FALL_MAX_FOOT_RISE * old.h
                # The same body, laid out: about as much moving area as when it stood (a flame
                # that shrinks, or a figure that vanishes behind furniture, loses most of it).
                same_body = FALL_MIN_AREA_KEPT * old.area <= box.area <= FALL_MAX_AREA_GAIN * old.area
                # Fast: the silhouette loses height at a good share of its standing height per second.
                fast = (old.h - box.h) / old.h >= FALL_MIN_SHRINK_RATE * (t - ts)
                if lower and wider and same_floor and same_body and fast:
                    return old, t - last_upright_t
        return None, 0.0


def _stood_steadily(tr: _Track, t: float) -> bool:
    """The last few upright sightings before ``t`` kept their height: a body, not a flickering flame."""
    heights = [b.h for ts, b in tr.samples if ts < t and b.aspect >= STANDING_ASPECT][-MIN_UPRIGHT_SIGHTINGS:]
    return len(heights) >= MIN_UPRIGHT_SIGHTINGS and min(heights) >= STEADY_HEIGHT * max(heights)


def _flat_since(tr: _Track, since: float) -> bool:
    """Every sighting since ``since`` (and since it came down) is flat on the floor."""
    assert tr.standing is not None and tr.low_since is not None
    if since < tr.low_since:
        return False
    ref = tr.standing
    # Lengths in pixels: the box's width over the standing height, through its own aspect.
    return all(b.h <= FLAT_HEIGHT * ref.h and b.h >= FLAT_LENGTH * b.aspect * ref.h
               for ts, b in tr.samples if ts >= since)


def _climbed(tr: _Track, since: float | None) -> float:
    """How far (frame fractions) the track's top has climbed above its lowest since ``since``."""
    return max(b.y for ts, b in tr.samples if since is None or ts >= since) - tr.box.y


def _sighting(tr: _Track, t: float, how: str) -> FallSighting:
    assert tr.standing is not None and tr.fallen_at is not None
    box = tr.box
    return FallSighting(track=tr.id, onset=tr.fallen_at, timestamp=t, how=how,
                        standing=tr.standing, lying=box,
                        top_drop=round((box.y - tr.standing.y) / max(1e-6, tr.standing.h), 3),
                        descent_s=round(tr.descent_s, 3))


_K3 = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))
_K5 = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))


def _movers(mask: np.ndarray) -> list[Mover]:
    """Foreground blobs, joined into movers when they are parts of one (limbs, a torso split by a dark coat)."""
    h, w = mask.shape
    n, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    min_px = MIN_BLOB_AREA * h * w
    boxes = [[int(v) for v in stats[i]] for i in range(1, n) if stats[i][4] >= max(2.0, 0.25 * min_px)]
    parent = list(range(len(boxes)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, a in enumerate(boxes):
        for j in range(i + 1, len(boxes)):
            b = boxes[j]
            gap = GROUP_GAP * w + GROUP_GAP_OF_SIZE * min(max(a[2], a[3]), max(b[2], b[3]))
            if a[0] - gap <= b[0] + b[2] and b[0] - gap <= a[0] + a[2] and a[1] - gap <= b[1] + b[3] and b[1] - gap <= a[1] + a[3]:
                parent[find(i)] = find(j)
    groups: dict[int, list[int]] = {}
    for i, box in enumerate(boxes):
        r = find(i)
        g = groups.setdefault(r, [box[0], box[1], box[0] + box[2], box[1] + box[3], 0])
        g[0], g[1] = min(g[0], box[0]), min(g[1], box[1])
        g[2], g[3] = max(g[2], box[0] + box[2]), max(g[3], box[1] + box[3])
        g[4] += box[4]
    movers = []
    for x0, y0, x1, y1, area in groups.values():
        if area < min_px:
            continue
        movers.append(Mover(x=x0 / w, y=y0 / h, w=(x1 - x0) / w, h=(y1 - y0) / h,
                            aspect=(y1 - y0) / max(1, x1 - x0), area=area / (h * w)))
    movers.sort(key=lambda m: -m.area)
    return movers


def _overlap(a: Mover, b: Mover) -> float:
    """Intersection over union of two boxes (0..1): when two movers merge, the larger one keeps the merged box."""
    ix = min(a.x + a.w, b.x + b.w) - max(a.x, b.x)
    iy = min(a.y + a.h, b.y + b.h) - max(a.y, b.y)
    if ix <= 0 or iy <= 0:
        return 0.0
    inter = ix * iy
    return inter / max(1e-9, a.w * a.h + b.w * b.h - inter)


class _Background:
    """OpenCV's MOG2 background subtractor on the small grey frames, plus mask cleaning.

    MOG2 learns at 1/n over its first n frames (up to its history), so what is in view when
    it starts, and anything that stops moving, joins the background within about a tenth of
    the frames seen so far: ghosts and parked things fade; a person lying still fades too,
    which `MotionObserver` reads as "stayed down" when it happens right where they fell.

    When the camera moves, each frame is first put back onto the view the model learnt
    (`ViewAligner`), so the static scene stays background and only what moves in it shows.
    """

    def __init__(self, grey: np.ndarray, fps: float) -> None:
        self._mog = cv2.createBackgroundSubtractorMOG2(
            history=max(10, int(BACKGROUND_HISTORY_S * fps)), varThreshold=MOG2_VAR_THRESHOLD, detectShadows=False)
        self._mog.apply(grey)
        self.shape = grey.shape
        self._aligner = ViewAligner(grey)
        self.view_lost = False
        """The camera moved too far from the learnt view to put frames back on it."""

    def apply(self, grey: np.ndarray) -> np.ndarray:
        inside = None
        shift = self._aligner.measure(grey)
        if shift is not None and shift.moved:
            put_back = self._aligner.confirms(grey, shift)
            if put_back is not None:
                self.view_lost = self._aligner.too_far(shift)
                if not self.view_lost:
                    grey, inside = put_back
        mask = (self._mog.apply(grey) == 255).astype(np.uint8)
        if inside is not None:
            mask &= inside & self._aligner.beyond_jitter(grey, self._mog.getBackgroundImage())
        mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, _K3)
        return cv2.morphologyEx(mask, cv2.MORPH_CLOSE, _K5)
