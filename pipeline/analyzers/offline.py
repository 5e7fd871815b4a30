"""The embedded offline analyzers: an OpenCV student and teacher that need no model server.

They are the default backends when no Ollama host answers, so the main command works on a
fresh machine.  They are honest computer vision, nothing else: background subtraction and
blob tracks, OpenCV's HOG people detector, fire-colour masks that must flicker, soft grey
regions that grow (smoke), posture changes of a tracked figure (fall), foot points in zone
polygons (intrusion), and whole-frame statistics (covered, moved, defocused, dark).

The student sees one frame at a time and keeps per-camera state (background, tracks,
recent fire masks).  The teacher looks at a whole escalated sequence of keyframes at once
and can disagree with the student.
"""

from __future__ import annotations

import logging
import math
import threading
from collections import deque
from dataclasses import dataclass, field

import cv2
import numpy as np

from pipeline.analyzers.offline_vision import (
    Blob,
    HogPeople,
    WorkImage,
    clean_mask,
    find_blobs,
    fire_mask,
    foreground,
    point_in_polygon,
    prepare,
    region_name,
    intensity_similarity,
    smoke_mask,
    structure_similarity,
    uniform_share,
)
from pipeline.clock import Clock
from pipeline.config import OfflineConfig, Zone
from pipeline.records import (
    MODEL_ERROR_FLAG,
    EncodedFrame,
    Escalation,
    FrameReport,
    GateReason,
    StudentAnswer,
    TeacherAnswer,
    Verdict,
    normalise_flag,
)

log = logging.getLogger(__name__)

BACKEND = "offline"
STUDENT_MODEL = "opencv-offline-student/1"
TEACHER_MODEL = "opencv-offline-teacher/1"
PROMPT_VERSION = "offline-rules/1"

# Thresholds, in work-image units (grey 0..255, 320 px wide).  Named so the rules read plainly.
FG_THRESHOLD = 22.0
COVERED_STD = 7.0
"""Std of the blurred grey below which the view is uniform: covered, blank or blinded."""
COVERED_SHARPNESS = 2.0
DARK_MEAN = 40.0
VIEW_CHECK_FRACTION = 0.3
"""Share of changed pixels from which the frame's structure is compared with the background's."""
VIEW_CHANGED_SIMILARITY = 0.4
"""Structure correlation with the background below which a global change is a new view, not lighting."""
DEFOCUS_RATIO = 0.2
UPRIGHT_ASPECT = 1.35
LYING_ASPECT = 0.85
MIN_PERSON_HEIGHT = 0.12
HOG_PERSON_WEIGHT = 0.5
FIRE_MIN_AREA = 0.0015
FIRE_FLICKER = 0.15
SMOKE_MIN_AREA = 0.005
SMOKE_SOFTNESS = 0.16
"""Mean edge gradient of the difference over its mean: smoke's haze is soft, objects are crisp."""
SMOKE_VEIL = 0.8
"""Detail (Laplacian) inside a smoke region must fall below this share of the background's there."""
FALL_WINDOW_S = 3.0
TRACK_TTL_S = 4.0
ABSORB_AFTER_S = 10.0


# --------------------------------------------------------------------------------------
# Per-camera state of the student
# --------------------------------------------------------------------------------------


@dataclass
class _Track:
    id: int
    samples: deque[tuple[float, Blob]] = field(default_factory=lambda: deque(maxlen=40))
    hog_hits: int = 0
    shape_votes: int = 0
    fallen_since: float | None = None
    last_seen: float = 0.0

    @property
    def blob(self) -> Blob:
        return self.samples[-1][1]

    @property
    def is_person(self) -> bool:
        return self.hog_hits >= 1 or self.shape_votes >= 2 or self.fallen_since is not None

    def velocity(self) -> tuple[float, float]:
        """Centroid velocity in frame fractions per second over the last two samples."""
        if len(self.samples) < 2:
            return (0.0, 0.0)
        (t0, b0), (t1, b1) = self.samples[-2], self.samples[-1]
        dt = max(1e-3, t1 - t0)
        return ((b1.cx - b0.cx) / dt, (b1.cy - b0.cy) / dt)


@dataclass
class _CameraState:
    camera: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)
    background: np.ndarray | None = None
    fg_since: np.ndarray | None = None
    """Per pixel: source time since which it has been foreground (inf when it is not)."""
    pending_view: np.ndarray | None = None
    sharp_baseline: float | None = None
    last_gain: float = 1.0
    last_t: float | None = None
    tracks: list[_Track] = field(default_factory=list)
    next_track_id: int = 1
    fire_history: deque[tuple[float, np.ndarray]] = field(default_factory=lambda: deque(maxlen=6))
    smoke_history: deque[tuple[float, float]] = field(default_factory=lambda: deque(maxlen=6))


@dataclass
class _Findings:
    """What one frame showed: observations, flags with their evidence strength, activity confidences."""

    observations: list[str] = field(default_factory=list)
    flags: dict[str, float] = field(default_factory=dict)
    activity: list[float] = field(default_factory=list)
    calm_confidence: float = 0.9

    def flag(self, name: str, strength: float) -> None:
        self.flags[name] = max(self.flags.get(name, 0.0), strength)

    def observe(self, text: str) -> None:
        if text not in self.observations and len(self.observations) < 20:
            self.observations.append(text)

    def answer(self) -> StudentAnswer:
        if self.flags:
            confidence = max(self.flags.values())
        elif self.activity:
            confidence = min(self.activity)
        else:
            confidence = self.calm_confidence
        observations = self.observations or ["no activity"]
        return StudentAnswer(observations=observations[:20], safety_flags=sorted(self.flags)[:10],
                             confidence=float(np.clip(confidence, 0.0, 1.0)))


def _fire_evidence(current: np.ndarray, previous: np.ndarray) -> tuple[float, bool]:
    """(flicker, anchored) of a fire-coloured mask against the previous analysed frame's.

    Flicker is the changed share of the union of the two masks; anchored means the region
    stayed in place (flames flicker where they are; an orange coat walks away).
    """
    cur, prev = current.astype(bool), previous.astype(bool)
    union = int((cur | prev).sum())
    if union == 0 or cur.sum() == 0 or prev.sum() == 0:
        return 0.0, False
    flicker = float((cur ^ prev).sum()) / union
    grown = cv2.dilate(prev.astype(np.uint8), np.ones((7, 7), np.uint8)).astype(bool)
    overlap = float((cur & grown).sum()) / float(cur.sum())
    ys_c, xs_c = np.nonzero(cur)
    ys_p, xs_p = np.nonzero(prev)
    shift = math.hypot(xs_c.mean() - xs_p.mean(), ys_c.mean() - ys_p.mean())
    size = math.sqrt(max(cur.sum(), prev.sum()))
    return flicker, overlap >= 0.5 and shift <= 0.6 * size


def _soft_grey_regions(work: WorkImage, diff: np.ndarray, fg: np.ndarray, fire: np.ndarray,
                       background: np.ndarray | None = None) -> tuple[float, float, np.ndarray]:
    """(area share, softness, region mask) of the largest changed region that is grey and soft-edged, like smoke."""
    cand = clean_mask(fg.astype(bool) & smoke_mask(work).astype(bool) & ~fire.astype(bool))
    n, labels, stats, _ = cv2.connectedComponentsWithStats(cand, connectivity=8)
    if n <= 1:
        return 0.0, 1.0, np.zeros(fg.shape, bool)
    i = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    region = labels == i
    area = float(region.mean())
    gx = cv2.Sobel(diff, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(diff, cv2.CV_32F, 0, 1, ksize=3)
    grad = cv2.magnitude(gx, gy)
    zone = cv2.dilate(region.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    mean_diff = float(diff[region].mean()) if region.any() else 0.0
    softness = float(grad[zone].mean()) / (8.0 * mean_diff) if mean_diff > 1e-3 else 1.0
    if background is not None:
        # Haze hides detail: the region's own edges must be weaker than the background's there.
        def detail(img: np.ndarray) -> float:
            return float(np.abs(cv2.Laplacian(img, cv2.CV_32F))[region].mean())
        bg_detail = detail(background)
        if bg_detail > 0.5 and detail(work.grey) > SMOKE_VEIL * bg_detail:
            softness = 1.0
    return area, softness, region


# --------------------------------------------------------------------------------------
# Student
# --------------------------------------------------------------------------------------


class ZoneBook:
    """Intrusion zones: the default list, and per-camera lists where a camera has its own."""

    def __init__(self, zones: list[Zone]) -> None:
        self._default = list(zones)
        self._by_camera: dict[str, list[Zone]] = {}

    def set_zones(self, camera: str, zones: list[Zone]) -> None:
        self._by_camera[camera] = list(zones)

    def set_default(self, zones: list[Zone]) -> None:
        self._default = list(zones)

    def for_camera(self, camera: str) -> list[Zone]:
        return self._by_camera.get(camera, self._default)


class OfflineStudent:
    """Per-frame OpenCV analysis with per-camera memory.  Thread-safe per camera; never raises from `analyze`."""

    backend = BACKEND
    model = STUDENT_MODEL
    prompt_version = PROMPT_VERSION

    def __init__(self, cfg: OfflineConfig, zones: list[Zone], clock: Clock) -> None:
        self._cfg = cfg
        self.zones = ZoneBook(zones)
        self._clock = clock
        self._states: dict[str, _CameraState] = {}
        self._states_lock = threading.Lock()
        self._hog = HogPeople() if cfg.hog_people else None

    def close(self) -> None:
        with self._states_lock:
            self._states.clear()

    def _state(self, source_id: str) -> _CameraState:
        with self._states_lock:
            return self._states.setdefault(source_id, _CameraState(camera=source_id))

    def analyze(self, item: EncodedFrame) -> FrameReport:
        started = self._clock.monotonic()
        frame = item.frame
        try:
            state = self._state(frame.source_id)
            with state.lock:
                answer = self._analyze(state, frame.image, frame.timestamp, item.gate.reason)
            return FrameReport.from_answer(
                answer, frame=frame, backend=self.backend, model=self.model, prompt_version=self.prompt_version,
                latency_ms=(self._clock.monotonic() - started) * 1000.0,
            )
        except Exception as exc:  # the contract: a failed analysis is a report, never an exception
            log.exception("offline student failed on %s frame %s", frame.source_id, frame.index)
            return FrameReport.failed(
                frame=frame, backend=self.backend, model=self.model, prompt_version=self.prompt_version,
                latency_ms=(self._clock.monotonic() - started) * 1000.0, error=f"{type(exc).__name__}: {exc}",
            )

    # ----------------------------------------------------------------------------------

    def _analyze(self, st: _CameraState, image: np.ndarray, t: float, gate_reason: GateReason) -> StudentAnswer:
        out = _Findings()
        if image is None or image.ndim < 2 or image.shape[0] < 8 or image.shape[1] < 8:
            out.observe("image too small to analyse")
            out.calm_confidence = 0.1
            return out.answer()
        work = prepare(image)
        if work.mean < DARK_MEAN:
            out.observe("scene dark")

        # Covered, blank or blinded: the whole view is near-uniform.
        if _is_covered(work):
            out.observe("camera view covered or blank")
            out.flag("tamper", 0.9 if work.std < 3.0 else 0.75)
            st.last_t = t
            return out.answer()

        if st.background is None or st.background.shape != work.grey.shape:
            self._reset_view(st, work)
            self._bootstrap_people(image, out)
            st.last_t = t
            return out.answer()

        # A change over most of the frame: lighting (same structure) or a new view (camera moved, cut).
        raw_changed = float((np.abs(work.grey - st.background) > 25).mean())
        if raw_changed >= VIEW_CHECK_FRACTION or gate_reason == GateReason.GLOBAL_CHANGE:
            similarity = max(structure_similarity(work.grey, st.background),
                             intensity_similarity(work.grey, st.background))
            if similarity < VIEW_CHANGED_SIMILARITY:
                out.observe("camera view changed suddenly")
                out.flag("tamper", 0.75)
                # Adopt the new view only once a second frame confirms it, so a hand passing
                # the lens does not replace the background.
                if st.pending_view is not None and max(structure_similarity(work.grey, st.pending_view),
                                                      intensity_similarity(work.grey, st.pending_view)) >= 0.5:
                    self._reset_view(st, work)
                else:
                    st.pending_view = work.grey.copy()
                st.last_t = t
                return out.answer()
            # Same structure: a lighting change or a large object; the gain test below tells which.
        st.pending_view = None

        # Defocus: sharpness collapses against its running baseline while the view is not covered.
        baseline = st.sharp_baseline or work.sharpness
        if baseline > 5.0 and work.sharpness < DEFOCUS_RATIO * baseline:
            out.observe("camera view blurred")
            out.flag("tamper", 0.6)
        else:
            st.sharp_baseline = 0.9 * baseline + 0.1 * work.sharpness

        fg, gain = foreground(work.grey, st.background, FG_THRESHOLD)
        if abs(gain - st.last_gain) > 0.08 * st.last_gain:
            out.observe("lighting changed")
            out.activity.append(0.8)
        st.last_gain = gain
        diff = np.abs(work.grey - st.background * gain)
        # Flames are new in the scene: a fire-coloured thing that was always there (a wooden
        # floor, a sunlit window) is not fire, whatever it does when people pass in front.
        fire = cv2.morphologyEx(fire_mask(work) & (diff > 0.5 * FG_THRESHOLD).astype(np.uint8),
                                cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))

        self._update_background(st, work, diff, t, gain)
        haze = self._smoke(st, t, work, diff, fg, fire, out)
        blobs = [b for b in find_blobs(fg, self._cfg.min_blob_area)
                 if not self._mostly_in(b, fire, 0.15) and not (haze is not None and self._mostly_in(b, haze, 0.5))]
        self._track(st, t, blobs, image, out)
        # Orange clothing (a hi-vis vest) moves with its wearer: fire-coloured pixels inside a
        # tracked person's box are not flames.
        for track in st.tracks:
            if track.last_seen == t and track.is_person:
                b = track.blob
                h, w = fire.shape
                fire[int(b.y * h):int(math.ceil((b.y + b.h) * h)), int(b.x * w):int(math.ceil((b.x + b.w) * w))] = 0
        self._fire(st, t, fire, out)
        st.last_t = t
        if len(blobs) > 6:
            out.calm_confidence = 0.7  # a busy, noisy foreground makes "nothing wrong" less certain
        return out.answer()

    # ----------------------------------------------------------------------------------

    @staticmethod
    def _reset_view(st: _CameraState, work: WorkImage) -> None:
        st.background = work.grey.copy()
        st.fg_since = np.full(work.grey.shape, np.inf, np.float32)
        st.pending_view = None
        st.sharp_baseline = work.sharpness
        st.last_gain = 1.0
        st.tracks.clear()
        st.fire_history.clear()
        st.smoke_history.clear()

    def _bootstrap_people(self, image: np.ndarray, out: _Findings) -> None:
        """First frame of a view: no background yet, so look for standing people with HOG on the whole frame."""
        if self._hog is None:
            return
        small = _fit_width(image, 480)
        hits = self._hog.detect(small, threshold=HOG_PERSON_WEIGHT)
        if hits:
            out.observe("person standing" if len(hits) == 1 else f"{len(hits)} persons standing")
            out.activity.append(0.7)

    @staticmethod
    def _update_background(st: _CameraState, work: WorkImage, diff: np.ndarray, t: float, gain: float) -> None:
        assert st.background is not None and st.fg_since is not None
        # Half the detection threshold protects an object's soft edges (glow, shadow) from
        # being learnt while it is there, which would leave a ring when it goes.
        moving = diff > 0.5 * FG_THRESHOLD
        st.fg_since = np.where(moving, np.minimum(st.fg_since, t), np.inf).astype(np.float32)
        # Follow lighting at once, the scene fast where nothing moves, slowly under objects
        # (a person lying still stays foreground for a while), and quickly again once an
        # object has sat still for ABSORB_AFTER_S (parked car, moved chair, a ghost).
        stale = (t - st.fg_since) > ABSORB_AFTER_S
        alpha = np.where(moving, np.where(stale, 0.25, 0.01), 0.2).astype(np.float32)
        bg = st.background * gain
        st.background = bg + alpha * (work.grey - bg)

    @staticmethod
    def _mostly_in(blob: Blob, mask: np.ndarray, share: float) -> bool:
        """Whether the blob's box holds at least ``share`` of the blob's area in ``mask`` pixels."""
        h, w = mask.shape
        x0, y0 = int(blob.x * w), int(blob.y * h)
        x1, y1 = int(math.ceil((blob.x + blob.w) * w)), int(math.ceil((blob.y + blob.h) * h))
        inside = float(np.count_nonzero(mask[y0:y1, x0:x1]))
        return inside >= share * blob.area * h * w

    def _fire(self, st: _CameraState, t: float, fire: np.ndarray, out: _Findings) -> None:
        area = float(fire.mean())
        previous = st.fire_history[-1] if st.fire_history else None
        if area < FIRE_MIN_AREA:
            st.fire_history.clear()
            return
        st.fire_history.append((t, fire))
        ys, xs = np.nonzero(fire)
        where = region_name(float(xs.mean()) / fire.shape[1])
        if previous is None or t - previous[0] > 5.0:
            out.observe(f"orange light at {where}")
            out.activity.append(0.6)
            return
        flicker, anchored = _fire_evidence(fire, previous[1])
        oldest_t, oldest = st.fire_history[0]
        growth = area / max(1e-6, float(oldest.mean())) if t - oldest_t >= 1.0 else 1.0
        if flicker >= FIRE_FLICKER and anchored:
            out.observe(f"flickering fire at {where}" + (", growing" if growth >= 1.3 else ""))
            out.flag("fire", 0.85 if growth >= 1.3 else 0.65)
        elif anchored:
            out.observe(f"steady orange light at {where}")
            out.activity.append(0.75)
        else:
            out.observe(f"orange object moving at {where}")
            out.activity.append(0.6)

    def _smoke(self, st: _CameraState, t: float, work: WorkImage, diff: np.ndarray, fg: np.ndarray,
               fire: np.ndarray, out: _Findings) -> np.ndarray | None:
        """Flag smoke when a soft grey region persists and grows; returns the region so blobs in it are not objects."""
        area, softness, region = _soft_grey_regions(work, diff, fg, fire, st.background)
        if area < SMOKE_MIN_AREA or softness > SMOKE_SOFTNESS:
            st.smoke_history.clear()
            return None
        st.smoke_history.append((t, area))
        if len(st.smoke_history) < 3:
            # Smoke must persist and spread over three analysed frames; a grey coat passes by.
            out.observe("grey haze")
            out.activity.append(0.55)
            return region
        first_t, first_area = st.smoke_history[0]
        areas = [a for _, a in st.smoke_history]
        steady_or_growing = all(b >= 0.9 * a for a, b in zip(areas[-3:], areas[-2:]))
        growing = steady_or_growing and (area >= 1.15 * first_area or area >= 0.03)
        if growing:
            out.observe("smoke rising" if area < 0.03 else "smoke spreading")
            out.flag("smoke", 0.7 if area >= 0.02 else 0.6)
        else:
            out.observe("grey haze")
            out.activity.append(0.55)
        return region

    def _track(self, st: _CameraState, t: float, blobs: list[Blob], image: np.ndarray, out: _Findings) -> None:
        # Greedy nearest-centroid matching; a fall moves the centroid about half a body
        # height, so the gate scales with the object's size.
        unmatched = list(blobs)
        for track in sorted(st.tracks, key=lambda tr: -tr.blob.area):
            best, best_d = None, None
            last = track.blob
            for b in unmatched:
                d = math.hypot(b.cx - last.cx, b.cy - last.cy)
                limit = 0.9 * max(last.h, last.w, b.h, b.w) + 0.05
                if d <= limit and (best_d is None or d < best_d):
                    best, best_d = b, d
            if best is not None:
                unmatched.remove(best)
                track.samples.append((t, best))
                track.last_seen = t
        for b in unmatched:
            tr = _Track(id=st.next_track_id, last_seen=t)
            st.next_track_id += 1
            tr.samples.append((t, b))
            st.tracks.append(tr)
        st.tracks = [tr for tr in st.tracks if t - tr.last_seen <= TRACK_TTL_S]

        hog_budget = 3
        for track in st.tracks:
            if track.last_seen != t:
                continue
            blob = track.blob
            upright = blob.aspect >= UPRIGHT_ASPECT and blob.h >= MIN_PERSON_HEIGHT
            hog_weight = 0.0
            if self._hog is not None and hog_budget > 0 and blob.aspect >= 1.1 and blob.h >= MIN_PERSON_HEIGHT:
                hog_budget -= 1
                hog_weight = self._hog.detect_in_roi(image, blob)
            if hog_weight >= HOG_PERSON_WEIGHT:
                track.hog_hits += 1
            if upright:
                track.shape_votes += 1
            self._describe_track(track, t, blob, upright, hog_weight, out, self.zones.for_camera(st.camera))

    def _describe_track(self, track: _Track, t: float, blob: Blob, upright: bool, hog_weight: float,
                        out: _Findings, zones: list[Zone] = ()) -> None:
        where = region_name(blob.cx)
        vx, _ = track.velocity()
        self._update_fall(track, t, blob)
        if track.fallen_since is not None:
            out.observe("person lying on the floor")
            out.flag("fall", 0.8 if track.hog_hits else 0.7)
        elif track.is_person or upright:
            strength = 0.85 if hog_weight >= HOG_PERSON_WEIGHT or track.hog_hits else (0.65 if track.is_person else 0.5)
            if abs(vx) >= 0.03:
                out.observe(f"person walking {'right' if vx > 0 else 'left'}")
            else:
                out.observe("person standing" if upright else "person bending or crouching")
            out.activity.append(strength)
        elif blob.aspect < 0.9 and abs(vx) >= 0.1 and blob.area >= 0.004:
            out.observe(f"vehicle moving {'right' if vx > 0 else 'left'}")
            out.activity.append(0.6)
            return
        else:
            out.observe(f"motion at {where}")
            out.activity.append(0.6)
            return
        for zone in zones:
            if point_in_polygon(blob.foot, list(zone.points)):
                out.observe(f"person in zone {zone.name}")
                out.flag("intrusion", 0.8 if track.hog_hits else 0.65)

    @staticmethod
    def _update_fall(track: _Track, t: float, blob: Blob) -> None:
        speed = math.hypot(*track.velocity())
        if track.fallen_since is not None:
            if blob.aspect >= UPRIGHT_ASPECT or blob.aspect > 1.0 or speed > 0.1:
                track.fallen_since = None  # got up, or the region is something else now
            return
        if not (track.hog_hits or track.shape_votes >= 2) or speed > 0.15:
            return  # only a figure seen upright as a person can fall; a lying body does not race across
        if blob.aspect > LYING_ASPECT:
            return
        if blob.x <= 0.01 or blob.x + blob.w >= 0.99:
            return  # cut by the frame edge: a figure walking out of view, not lying down
        # Went from an upright posture to lying, quickly, with the top of the figure dropping.
        for ts, old in reversed(track.samples):
            if t - ts > FALL_WINDOW_S:
                break
            if old.aspect >= UPRIGHT_ASPECT and old.h >= MIN_PERSON_HEIGHT:
                dropped = (blob.y - old.y) >= 0.35 * old.h and blob.h <= 0.6 * old.h
                if dropped:
                    track.fallen_since = t
                return


def _fit_width(image: np.ndarray, width: int) -> np.ndarray:
    h, w = image.shape[:2]
    if w <= width:
        return image
    return cv2.resize(image, (width, max(1, int(round(h * width / w)))), interpolation=cv2.INTER_AREA)


# --------------------------------------------------------------------------------------
# Teacher
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Keyframe:
    t: float
    work: WorkImage
    image: np.ndarray
    covered: bool
    people: tuple[Blob, ...]
    """Upright people found by HOG on the whole frame (normalised boxes)."""
    blobs: tuple[Blob, ...]
    """Foreground regions against the sequence's median background."""
    fire: np.ndarray
    vs_first: tuple[Blob, ...] = ()
    """Regions that differ from the first keyframe (what arrived or changed since)."""
    vs_last: tuple[Blob, ...] = ()
    """Regions that differ from the last keyframe (what was there before and left or changed)."""


@dataclass
class _SequenceEvidence:
    flags: dict[str, float] = field(default_factory=dict)
    observations: list[str] = field(default_factory=list)
    notes: dict[str, str] = field(default_factory=dict)
    """Per concern, one sentence naming the measured evidence."""
    person_frames: int = 0
    motion_frames: int = 0


class OfflineTeacher:
    """Reviews a whole escalated sequence with slower, sequence-level OpenCV checks."""

    backend = BACKEND
    model = TEACHER_MODEL

    def __init__(self, cfg: OfflineConfig, zones: list[Zone], clock: Clock) -> None:
        self._cfg = cfg
        self.zones = ZoneBook(zones)
        self._clock = clock
        self._hog = HogPeople()

    def close(self) -> None:
        return None

    def review(self, escalation: Escalation) -> Verdict:
        started = self._clock.monotonic()
        try:
            if not escalation.keyframes:
                return Verdict.unverified(escalation, backend=self.backend, model=self.model,
                                          latency_ms=(self._clock.monotonic() - started) * 1000.0,
                                          why="no keyframes to review")
            answer = self._review(escalation)
            return Verdict.from_answer(answer, escalation=escalation, backend=self.backend, model=self.model,
                                       latency_ms=(self._clock.monotonic() - started) * 1000.0)
        except Exception as exc:
            log.exception("offline teacher failed on escalation %s", escalation.id)
            return Verdict.unverified(escalation, backend=self.backend, model=self.model,
                                      latency_ms=(self._clock.monotonic() - started) * 1000.0,
                                      why=f"offline teacher failed: {type(exc).__name__}: {exc}")

    # ----------------------------------------------------------------------------------

    def _keyframes(self, escalation: Escalation) -> list[_Keyframe]:
        items = sorted(escalation.keyframes, key=lambda k: k.frame.timestamp)
        works = []
        for it in items:
            img = it.frame.image
            if img is None or img.ndim < 2 or img.shape[0] < 8 or img.shape[1] < 8:
                continue
            works.append((it.frame.timestamp, prepare(img), img))
        if not works:
            return []
        shape = works[0][1].grey.shape
        same = [w for w in works if w[1].grey.shape == shape]
        # The per-pixel median of the sequence is the scene without whatever moves through it.
        median = np.median(np.stack([w[1].grey for w in same if not _is_covered(w[1])] or [same[0][1].grey]), axis=0)
        first, last = same[0][1].grey, same[-1][1].grey

        def regions(grey: np.ndarray, reference: np.ndarray) -> tuple[Blob, ...]:
            fg, _ = foreground(grey, reference, FG_THRESHOLD)
            return tuple(find_blobs(fg, self._cfg.min_blob_area))

        out = []
        for t, work, img in same:
            covered = _is_covered(work)
            blobs = regions(work.grey, median) if not covered else ()
            vs_first = regions(work.grey, first) if not covered and work.grey is not first else ()
            vs_last = regions(work.grey, last) if not covered and work.grey is not last else ()
            people: list[Blob] = []
            if not covered:
                # HOG needs a person at least one 128 px window tall: look at >= 640 px wide.
                small = _fit_width(img, 640) if img.shape[1] >= 640 else cv2.resize(
                    img, (640, max(1, int(round(img.shape[0] * 640 / img.shape[1])))), interpolation=cv2.INTER_LINEAR)
                H, W = small.shape[:2]
                for x, y, w, h, _ in self._hog.detect(small, threshold=HOG_PERSON_WEIGHT, scale=1.05):
                    # HOG boxes carry a margin around the body: keep the body's own extent.
                    bx, by, bw, bh = x + 0.3 * w, y + 0.1 * h, 0.4 * w, 0.8 * h
                    people.append(Blob(bx / W, by / H, bw / W, bh / H, bw * bh / (W * H), bh / max(1.0, bw)))
            fire = cv2.morphologyEx(fire_mask(work), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
            out.append(_Keyframe(t, work, img, covered, tuple(people), blobs, fire, vs_first, vs_last))
        return out

    def _review(self, escalation: Escalation) -> TeacherAnswer:
        frames = self._keyframes(escalation)
        ev = _SequenceEvidence()
        if frames:
            self._people(frames, ev)
            self._fall(frames, ev)
            self._fire(frames, ev)
            self._smoke(frames, ev)
            self._tamper(frames, ev)
            self._intrusion(frames, ev, self.zones.for_camera(escalation.camera))
        escalated = {normalise_flag(f) for f in escalation.flags} - {MODEL_ERROR_FLAG}
        seen = set(ev.flags)
        n = len(frames)
        evidence = " ".join(ev.notes[k] for k in sorted(ev.notes))
        if escalated:
            held = escalated & seen
            if held:
                verdict = "confirmed"
                confidence = max(ev.flags[f] for f in held)
                lead = f"Confirmed {', '.join(sorted(held))} over {n} keyframes."
            else:
                verdict = "dismissed"
                confidence = 0.75 if n >= 3 else 0.55
                lead = f"Dismissed {', '.join(sorted(escalated))}: the sequence of {n} keyframes does not hold it up."
            missing = escalated - seen
            if held and missing:
                lead += f" Not supported: {', '.join(sorted(missing))}."
        else:
            student_person = sum(1 for r in escalation.timeline if any("person" in o for o in r.observations))
            consistent = not (student_person >= max(2, len(escalation.timeline) // 2)
                              and ev.person_frames == 0 and ev.motion_frames == 0)
            verdict = "confirmed" if consistent else "dismissed"
            confidence = 0.7 if consistent else 0.6
            lead = (f"Reviewed {n} keyframes ({escalation.reason}); "
                    + ("the student's timeline is consistent with them." if consistent
                       else "the student reported a person but no keyframe shows one or any motion."))
            if seen:
                lead += f" The teacher sees {', '.join(sorted(seen))} that the student did not flag."
        if not frames:
            lead += " No keyframe could be analysed."
        explanation = (lead + " " + evidence).strip()[:2000]
        observations = ev.observations[:20] or ["no activity"]
        return TeacherAnswer(verdict=verdict, observations=observations, safetyFlags=sorted(seen)[:10],
                             confidence=float(np.clip(confidence, 0.0, 1.0)), explanation=explanation)

    # --- sequence checks ---------------------------------------------------------------

    @staticmethod
    def _people(frames: list[_Keyframe], ev: _SequenceEvidence) -> None:
        ev.person_frames = sum(1 for f in frames if f.people)
        ev.motion_frames = sum(1 for f in frames if f.blobs)
        if ev.person_frames:
            ev.observations.append(f"person visible in {ev.person_frames} of {len(frames)} keyframes")
        elif ev.motion_frames:
            ev.observations.append(f"motion in {ev.motion_frames} of {len(frames)} keyframes")
        ev.notes["a_people"] = (f"HOG found an upright person in {ev.person_frames} of {len(frames)} keyframes; "
                                f"moving regions in {ev.motion_frames}.")

    @staticmethod
    def _fall(frames: list[_Keyframe], ev: _SequenceEvidence) -> None:
        # Upright earlier (HOG or an upright region), lying later near where they stood, and staying down.
        # Before: against the last keyframe (the fallen body is a wide ghost, not upright).
        # After: against the first keyframe (the walker there is an upright ghost, not lying).
        def upright_of(f: _Keyframe) -> Blob | None:
            cands = list(f.people) + [b for b in f.vs_last if b.aspect >= UPRIGHT_ASPECT and b.h >= MIN_PERSON_HEIGHT]
            return max(cands, key=lambda b: b.h, default=None)

        def lying_near(f: _Keyframe, up: Blob) -> Blob | None:
            for b in f.vs_first:
                if b.aspect > LYING_ASPECT or b.w < 0.3 * up.h * (f.work.grey.shape[0] / f.work.grey.shape[1]):
                    continue
                near_x = b.x <= up.x + up.w + up.h and b.x + b.w >= up.x - up.h
                low = (b.y - up.y) >= 0.35 * up.h and abs(b.bottom - up.bottom) <= 0.5 * up.h
                if near_x and low:
                    return b
            return None

        best_note = "No upright-then-lying posture change was found."
        for i, f in enumerate(frames):
            up = upright_of(f)
            if up is None:
                continue
            for j in range(i + 1, len(frames)):
                g = frames[j]
                if upright_of(g) is not None and g.t - f.t < 1.0:
                    continue
                down = lying_near(g, up)
                if down is None:
                    continue
                later = frames[j + 1:]
                stays = all(lying_near(h, up) is not None for h in later)
                quick = g.t - f.t <= 4.0
                if stays and quick:
                    ev.flags["fall"] = 0.85 if later else 0.7
                    ev.observations.append("person lying on the floor")
                    ev.notes["fall"] = (f"Fall: upright figure at t={f.t:.1f}s (height {up.h:.2f} of frame), "
                                        f"lying figure (aspect {down.aspect:.2f}) at t={g.t:.1f}s"
                                        + (f", still down in {len(later)} later keyframes." if later else "."))
                    return
                best_note = (f"Posture changed from upright (t={f.t:.1f}s) to low (t={g.t:.1f}s) but "
                             + ("not quickly" if not quick else "the figure did not stay down") + ".")
        ev.notes["fall"] = "Fall: " + best_note

    @staticmethod
    def _fire(frames: list[_Keyframe], ev: _SequenceEvidence) -> None:
        areas = [float(f.fire.mean()) for f in frames]
        present = [f for f, a in zip(frames, areas) if a >= FIRE_MIN_AREA]
        if not present:
            ev.notes["fire"] = "Fire: no fire-coloured region in any keyframe."
            return
        flickers, anchored = [], 0
        for a, b in zip(present, present[1:]):
            fl, anc = _fire_evidence(b.fire, a.fire)
            flickers.append(fl)
            anchored += int(anc)
        stack = np.stack([f.fire.astype(np.float32) for f in present])
        union = stack.max(axis=0) > 0
        temporal_var = float(stack.var(axis=0)[union].mean()) if union.any() else 0.0
        present_areas = [float(f.fire.mean()) for f in present]
        growth = present_areas[-1] / max(1e-6, present_areas[0])
        flicker = float(np.median(flickers)) if flickers else 0.0
        summary = (f"fire-coloured region in {len(present)} of {len(frames)} keyframes, median flicker {flicker:.2f} "
                   f"(fire needs >= {FIRE_FLICKER}), mask temporal variance {temporal_var:.2f}, growth x{growth:.1f}")
        if len(present) >= 2 and flicker >= FIRE_FLICKER and anchored >= max(1, len(flickers) // 2):
            ev.flags["fire"] = 0.9 if growth >= 1.3 else 0.75
            ev.observations.append("flickering fire" + (", growing" if growth >= 1.3 else ""))
            ev.notes["fire"] = f"Fire: {summary}: flames flicker in place."
        else:
            why = "only one keyframe" if len(present) < 2 else "colour without flicker or growth"
            ev.observations.append("steady orange light" if len(present) >= 2 else "brief orange patch")
            ev.notes["fire"] = f"Fire: {summary}: {why}, so not fire."

    @staticmethod
    def _smoke(frames: list[_Keyframe], ev: _SequenceEvidence) -> None:
        usable = [f for f in frames if not f.covered]
        if len(usable) < 2:
            return
        base = usable[0].work.grey
        areas = []
        for f in usable[1:]:
            fg, gain = foreground(f.work.grey, base, FG_THRESHOLD)
            diff = np.abs(f.work.grey - base * gain)
            area, softness, _ = _soft_grey_regions(f.work, diff, fg, f.fire, base)
            areas.append(area if softness <= SMOKE_SOFTNESS else 0.0)
        present = [a for a in areas if a >= SMOKE_MIN_AREA]
        growing = len(present) >= 2 and present[-1] >= 1.15 * present[0]
        if growing:
            ev.flags["smoke"] = 0.75
            ev.observations.append("smoke spreading")
        ev.notes["smoke"] = (f"Smoke: soft grey region in {len(present)} of {len(areas)} later keyframes"
                             + (f", growing from {present[0]:.3f} to {present[-1]:.3f} of the frame." if present
                                else "."))

    @staticmethod
    def _tamper(frames: list[_Keyframe], ev: _SequenceEvidence) -> None:
        covered = sum(1 for f in frames if f.covered)
        cuts = 0
        for a, b in zip(frames, frames[1:]):
            if not a.covered and not b.covered and structure_similarity(a.work.grey, b.work.grey) < VIEW_CHANGED_SIMILARITY:
                cuts += 1
        if covered >= 2:
            ev.flags["tamper"] = 0.9
            ev.observations.append("camera view covered or blank")
        elif cuts >= 1 and len(frames) >= 3:
            # A new view that then holds: the camera was moved or replaced.
            last_two = frames[-2:]
            settled = structure_similarity(last_two[0].work.grey, last_two[1].work.grey) >= 0.7
            if settled:
                ev.flags["tamper"] = 0.7
                ev.observations.append("camera view changed")
        ev.notes["tamper"] = f"Tamper: {covered} of {len(frames)} keyframes covered or blank, {cuts} abrupt view changes."

    def _intrusion(self, frames: list[_Keyframe], ev: _SequenceEvidence, zones: list[Zone]) -> None:
        if not zones:
            return
        hits: dict[str, int] = {}
        for f in frames:
            cands = list(f.people) + [b for b in f.blobs if b.aspect >= UPRIGHT_ASPECT and b.h >= MIN_PERSON_HEIGHT]
            for zone in zones:
                if any(point_in_polygon(b.foot, list(zone.points)) for b in cands):
                    hits[zone.name] = hits.get(zone.name, 0) + 1
        inside = {z: n for z, n in hits.items() if n >= 2}
        if inside:
            ev.flags["intrusion"] = 0.8
            for z in inside:
                ev.observations.append(f"person in zone {z}")
        ev.notes["intrusion"] = "Intrusion: " + (", ".join(f"person's feet in zone {z} in {n} keyframes" for z, n in hits.items())
                                                 or "no person's feet inside a zone") + "."


def _is_covered(work: WorkImage) -> bool:
    """A near-uniform view: covered lens, blank feed, blinded sensor (a caption on it does not count)."""
    return (work.std < COVERED_STD and work.sharpness < COVERED_SHARPNESS) or uniform_share(work) >= 0.95
