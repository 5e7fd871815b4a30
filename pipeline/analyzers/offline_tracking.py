"""Blob tracks of the offline student: what a mover is (person, vehicle, motion) and whether it fell.

A track is a chain of foreground blobs matched frame to frame by nearest centroid.  What it
is comes from evidence accumulated over its life: HOG hits on its region, an upright shape
at walking pace, or a size and speed no walker has.  When the evidence is thin it stays
``motion``.

A fall is a posture change of a track first seen as a person: upright, then — within
``FALL_WINDOW_S`` — a silhouette that is wider than tall, whose top dropped by a good share
of the standing height while its feet stayed on the same floor line, and that stays low in
the next analysed frame.  Bending and crouching keep the silhouette at least about as tall as
wide; sitting keeps it compact; walking away shrinks the whole figure and raises its feet;
leaving the frame cuts it at the border — none of these is a fall.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

from pipeline.analyzers.offline_vision import Blob

UPRIGHT_ASPECT = 1.35
LYING_ASPECT = 0.85
MIN_PERSON_HEIGHT = 0.12
FALL_WINDOW_S = 3.0
TRACK_TTL_S = 4.0
WALKER_MAX_SPEED = 1.5
"""Body sizes per second: a walker covers about one body height a second, a car several lengths."""
VEHICLE_MIN_AREA = 0.004
TOP_EDGE = 0.01
"""A blob whose top is within this share of the frame's top is cut by it."""


@dataclass
class Track:
    id: int
    samples: deque[tuple[float, Blob]] = field(default_factory=lambda: deque(maxlen=40))
    hog_hits: int = 0
    shape_votes: int = 0
    vehicle_votes: int = 0
    fallen_since: float | None = None
    fell: bool = False
    """The dense motion observer saw this mover fall: a person, whatever shape it takes later."""
    low_since: float | None = None
    """A fall candidate: the silhouette went low at this time; it is a fall once it stays low."""
    last_seen: float = 0.0

    @property
    def blob(self) -> Blob:
        return self.samples[-1][1]

    @property
    def is_person(self) -> bool:
        return (self.hog_hits >= 1 or (self.shape_votes >= 2 and self.vehicle_votes == 0)
                or self.fallen_since is not None or self.fell)

    @property
    def is_vehicle(self) -> bool:
        return self.hog_hits == 0 and not self.fell and self.vehicle_votes >= 2

    def velocity(self, span_s: float = 1.1) -> tuple[float, float]:
        """Centroid velocity in frame fractions per second over about the last ``span_s`` seconds."""
        if len(self.samples) < 2:
            return (0.0, 0.0)
        t1, b1 = self.samples[-1]
        t0, b0 = self.samples[-2]
        for ts, b in reversed(self.samples):
            if t1 - ts > span_s:
                break
            t0, b0 = ts, b
        dt = max(1e-3, t1 - t0)
        if t1 == t0:
            return (0.0, 0.0)
        return ((b1.cx - b0.cx) / dt, (b1.cy - b0.cy) / dt)

    def relative_speed(self) -> float:
        """Speed in body sizes per second (the blob's larger side)."""
        vx, vy = self.velocity()
        return math.hypot(vx, vy) / max(0.02, self.blob.w, self.blob.h)


def match_tracks(tracks: list[Track], blobs: list[Blob], t: float, next_id: int) -> tuple[list[Track], int]:
    """Greedy nearest-centroid matching; unmatched blobs start tracks; stale tracks are dropped."""
    unmatched = list(blobs)
    for track in sorted(tracks, key=lambda tr: -tr.blob.area):
        best, best_d = None, None
        last = track.blob
        for b in unmatched:
            d = math.hypot(b.cx - last.cx, b.cy - last.cy)
            # A fall moves the centroid about half a body height: the gate scales with size.
            limit = 0.9 * max(last.h, last.w, b.h, b.w) + 0.05
            if d <= limit and (best_d is None or d < best_d):
                best, best_d = b, d
        if best is not None:
            unmatched.remove(best)
            track.samples.append((t, best))
            track.last_seen = t
    for b in unmatched:
        tr = Track(id=next_id, last_seen=t)
        next_id += 1
        tr.samples.append((t, b))
        tracks.append(tr)
    return [tr for tr in tracks if t - tr.last_seen <= TRACK_TTL_S], next_id


def vote_kind(track: Track, hog_weight: float, hog_threshold: float) -> bool:
    """Add this frame's evidence of what the track is; returns whether the blob is upright."""
    blob = track.blob
    upright = blob.aspect >= UPRIGHT_ASPECT and blob.h >= MIN_PERSON_HEIGHT
    if hog_weight >= hog_threshold:
        track.hog_hits += 1
    speed = track.relative_speed()
    # A silhouette cut by the top of the frame but not reaching its bottom is the near end of
    # something that goes on beyond the far edge of the view (in a camera looking down on a
    # road, distant vehicles that merge on their way to the horizon): its shape says nothing
    # about being a person.  One that spans the whole frame height is close to the camera,
    # and what is in view is its shape.
    cut_at_far_edge = blob.y <= TOP_EDGE and blob.bottom < 1.0 - TOP_EDGE
    if upright and speed < WALKER_MAX_SPEED and not cut_at_far_edge:
        track.shape_votes += 1
    # A figure that drops from upright to low moves fast for a moment: falling, not driving.
    prev = track.samples[-2][1] if len(track.samples) >= 2 else blob
    dropping = prev.aspect >= UPRIGHT_ASPECT and blob.h < 0.7 * prev.h
    if hog_weight < hog_threshold and track.hog_hits == 0 and not dropping and blob.area >= VEHICLE_MIN_AREA and len(track.samples) >= 2:
        wide_and_moving = blob.aspect < 0.9 and speed >= 0.6
        if wide_and_moving or speed >= WALKER_MAX_SPEED:
            track.vehicle_votes += 1
    return upright


def update_fall(track: Track, t: float) -> None:
    """Advance the track's fall state with its newest sample (see module doc)."""
    blob = track.blob
    if track.fallen_since is not None:
        if blob.aspect >= 1.1 or track.relative_speed() > 1.0:
            track.fallen_since = None  # got up, or the region is something else now
        return
    if not (track.hog_hits or track.shape_votes >= 2) or track.vehicle_votes > track.shape_votes + track.hog_hits:
        return  # only a figure seen as a person can fall
    if blob.x <= 0.01 or blob.x + blob.w >= 0.99 or blob.y + blob.h >= 0.995:
        track.low_since = None
        return  # cut by the frame edge: a figure walking out of view, not lying down
    if blob.aspect > LYING_ASPECT:
        track.low_since = None
        return
    for ts, old in reversed(track.samples):
        if ts >= t:
            continue
        if t - ts > FALL_WINDOW_S:
            break
        if old.aspect >= UPRIGHT_ASPECT and old.h >= MIN_PERSON_HEIGHT:
            dropped = (blob.y - old.y) >= 0.3 * old.h and blob.h <= 0.65 * old.h
            same_floor = blob.bottom >= old.bottom - 0.25 * old.h
            if dropped and same_floor:
                if track.low_since is not None and track.low_since < t:
                    track.fallen_since = track.low_since
                else:
                    track.low_since = t
            return
    if track.low_since is not None and t - track.low_since <= FALL_WINDOW_S:
        # Still low after the drop: the fall is confirmed by staying down.
        track.fallen_since = track.low_since
