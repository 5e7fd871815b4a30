"""The offline student: per-frame OpenCV analysis with per-camera memory, precision first.

It claims a safety flag only on evidence it can see (`offline_fire`, `offline_tracking` and
the whole-view checks here), and otherwise reports activity — ``person``, ``vehicle`` or
``motion`` — with an honest confidence.  Observations never use a safety word unless the
flag is set: the escalation policy reads observations too.
"""

from __future__ import annotations

import logging
import math
import threading
from dataclasses import dataclass, field

import cv2
import numpy as np

from pipeline.analyzers.offline_fire import FireState, judge_fire, judge_smoke
from pipeline.analyzers.offline_sequence import fit_width, is_covered
from pipeline.analyzers.offline_tracking import (
    MIN_PERSON_HEIGHT,
    Track,
    match_tracks,
    update_fall,
    vote_kind,
)
from pipeline.analyzers.offline_vision import (
    Blob,
    HogPeople,
    WorkImage,
    find_blobs,
    fire_mask,
    foreground,
    intensity_similarity,
    overlap_share,
    point_in_polygon,
    prepare,
    region_name,
    structure_similarity,
)
from pipeline.analyzers.offline_zones import ZoneBook
from pipeline.clock import Clock
from pipeline.config.offline import OfflineConfig
from pipeline.config.zones import Zone
from pipeline.records import EncodedFrame, FrameReport, GateReason, MotionRecord, Mover, StudentAnswer

log = logging.getLogger(__name__)

BACKEND = "offline"
STUDENT_MODEL = "opencv-offline-student/2"
PROMPT_VERSION = "offline-rules/2"

FG_THRESHOLD = 22.0
DARK_MEAN = 40.0
VIEW_CHECK_FRACTION = 0.3
"""Share of changed pixels from which the frame's structure is compared with the background's."""
VIEW_CHANGED_SIMILARITY = 0.4
"""Structure correlation below which a global change is a new view, not lighting."""
DEFOCUS_RATIO = 0.2
HOG_PERSON_WEIGHT = 0.5
FELL_OVERLAP = 0.3
"""A tracked blob is the mover the dense observer saw fall when their boxes share this much."""
ABSORB_AFTER_S = 10.0
GHOST_WINDOW_S = 2.0
"""Pixels that turned foreground this soon after a view was learnt, and are still, are its ghosts."""


@dataclass
class _CameraState:
    camera: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)
    background: np.ndarray | None = None
    fg_since: np.ndarray | None = None
    """Per pixel: source time since which it has been foreground (inf when it is not)."""
    previous: np.ndarray | None = None
    """Grey work image of the previous analysed frame."""
    pending_view: np.ndarray | None = None
    view_t: float = 0.0
    """Source time at which the current background was first learnt."""
    sharp_baseline: float | None = None
    last_gain: float = 1.0
    tracks: list[Track] = field(default_factory=list)
    next_track_id: int = 1
    fire: FireState = field(default_factory=FireState)


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


def _similar(a: np.ndarray, b: np.ndarray) -> float:
    return max(structure_similarity(a, b), intensity_similarity(a, b))


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
                answer = self._analyze(state, frame.image, frame.timestamp, item.gate.reason, frame.motion)
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

    def _analyze(self, st: _CameraState, image: np.ndarray, t: float, gate_reason: GateReason,
                 dense: MotionRecord | None = None) -> StudentAnswer:
        out = _Findings()
        if image is None or image.ndim < 2 or image.shape[0] < 8 or image.shape[1] < 8:
            out.observe("image too small to analyse")
            out.calm_confidence = 0.1
            return out.answer()
        work = prepare(image)
        if work.mean < DARK_MEAN:
            out.observe("scene dark")
        try:
            fallen = dense.fall.lying if dense is not None and dense.fall is not None else None
            answer = self._analyze_view(st, work, image, t, gate_reason, out, dense is not None, fallen)
        finally:
            st.previous = work.grey
        if dense is not None and dense.fall is not None:
            # The dense observer watched the fall itself (many frames a second): its finding stands
            # on its own, whatever this one frame shows.
            fall = dense.fall
            out.observe(f"person fell: {fall.how} (top dropped {fall.top_drop:.0%} of standing height "
                        f"in {fall.descent_s:.1f} s)")
            out.flag("fall", 0.8)
            answer = out.answer()
        return answer

    def _analyze_view(self, st: _CameraState, work: WorkImage, image: np.ndarray, t: float,
                      gate_reason: GateReason, out: _Findings, dense_falls: bool,
                      fallen: Mover | None = None) -> StudentAnswer:
        # Covered, blank or blinded: the whole view is near-uniform.
        if is_covered(work):
            out.observe("camera view covered or blank")
            out.flag("tamper", 0.9 if work.std < 3.0 else 0.75)
            return out.answer()

        if st.background is None or st.background.shape != work.grey.shape:
            self._reset_view(st, work, t)
            self._bootstrap_people(image, out)
            return out.answer()

        if self._view_changed(st, work, t, gate_reason, out):
            return out.answer()

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
        # Flames are new in the scene: a flame-coloured thing that was always there (a wooden
        # floor, a sunlit window) is not fire, whatever it does when people pass in front.
        fire = cv2.morphologyEx(fire_mask(work) & (diff > 0.5 * FG_THRESHOLD).astype(np.uint8),
                                cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
        background = st.background
        self._update_background(st, work, diff, t, gain)
        text, strength, is_smoke, haze = judge_smoke(st.fire, t, work, diff, fg, fire, background)
        if text:
            out.observe(text)
            (out.flag("smoke", strength) if is_smoke else out.activity.append(strength))
        blobs = [b for b in find_blobs(fg, self._cfg.min_blob_area)
                 if not _mostly_in(b, fire, 0.15) and not (haze is not None and _mostly_in(b, haze, 0.5))]
        self._track(st, t, blobs, image, out, dense_falls, fallen)
        # Orange clothing (a hi-vis vest) moves with its wearer: flame-coloured pixels inside a
        # tracked person's box are not flames.
        for track in st.tracks:
            if track.last_seen == t and (track.is_person or track.is_vehicle):
                b = track.blob
                h, w = fire.shape
                fire[int(b.y * h):int(math.ceil((b.y + b.h) * h)), int(b.x * w):int(math.ceil((b.x + b.w) * w))] = 0
        text, strength, is_fire = judge_fire(st.fire, t, work, fire)
        if text:
            out.observe(text)
            (out.flag("fire", strength) if is_fire else out.activity.append(strength))
        if len(blobs) > 6:
            out.calm_confidence = 0.7  # a busy, noisy foreground makes "nothing wrong" less certain
        return out.answer()

    # ----------------------------------------------------------------------------------

    def _view_changed(self, st: _CameraState, work: WorkImage, t: float, gate_reason: GateReason, out: _Findings) -> bool:
        """A change over most of the frame that is a new view (camera moved, cut), not lighting or motion.

        A new view differs from the learnt background *and* from the previous analysed frame:
        a scene that changes gradually (a spreading fire, a crowd gathering) is compared with
        a background that lags behind it, but each frame still resembles the one before.
        """
        assert st.background is not None
        raw_changed = float((np.abs(work.grey - st.background) > 25).mean())
        if raw_changed < VIEW_CHECK_FRACTION and gate_reason != GateReason.GLOBAL_CHANGE:
            st.pending_view = None
            return False
        if _similar(work.grey, st.background) >= VIEW_CHANGED_SIMILARITY:
            st.pending_view = None
            return False
        if st.pending_view is None and st.previous is not None and st.previous.shape == work.grey.shape \
                and _similar(work.grey, st.previous) >= VIEW_CHANGED_SIMILARITY + 0.2:
            # Like the frame before: the scene drifted away from a stale background; learn it again.
            self._reset_view(st, work, t)
            out.observe("scene changed gradually")
            out.activity.append(0.7)
            return True
        out.observe("camera view changed suddenly")
        out.flag("tamper", 0.75)
        # Adopt the new view only once a second frame confirms it, so a hand passing the lens
        # does not replace the background.
        if st.pending_view is not None and _similar(work.grey, st.pending_view) >= 0.5:
            self._reset_view(st, work, t)
        else:
            st.pending_view = work.grey.copy()
        return True

    def _reset_view(self, st: _CameraState, work: WorkImage, t: float) -> None:
        st.view_t = t
        st.background = work.grey.copy()
        st.fg_since = np.full(work.grey.shape, np.inf, np.float32)
        st.pending_view = None
        st.sharp_baseline = work.sharpness
        st.last_gain = 1.0
        st.tracks.clear()
        st.fire.clear()

    def _bootstrap_people(self, image: np.ndarray, out: _Findings) -> None:
        """First frame of a view: no background yet, so look for standing people with HOG on the whole frame."""
        if self._hog is None:
            return
        small = fit_width(image, 480)
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
        if st.previous is not None and st.previous.shape == work.grey.shape:
            # A ghost: foreground since the first moments of the view (what stood there when
            # the background was learnt has left) and not changing now.  Learn it quickly so
            # it does not join the movers.
            still = np.abs(work.grey - st.previous) < 0.5 * FG_THRESHOLD
            stale |= (st.fg_since <= st.view_t + GHOST_WINDOW_S) & still
        alpha = np.where(moving, np.where(stale, 0.25, 0.01), 0.2).astype(np.float32)
        bg = st.background * gain
        st.background = bg + alpha * (work.grey - bg)

    def _track(self, st: _CameraState, t: float, blobs: list[Blob], image: np.ndarray, out: _Findings,
               dense_falls: bool, fallen: Mover | None = None) -> None:
        """Sampled-frame tracks: what movers are; their falls only when no dense observer watches
        (two samples a second cannot see how fast a figure came down)."""
        st.tracks, st.next_track_id = match_tracks(st.tracks, blobs, t, st.next_track_id)
        hog_budget = 3
        for track in st.tracks:
            if track.last_seen != t:
                continue
            blob = track.blob
            hog_weight = 0.0
            if self._hog is not None and hog_budget > 0 and blob.aspect >= 1.1 and blob.h >= MIN_PERSON_HEIGHT:
                hog_budget -= 1
                hog_weight = self._hog.detect_in_roi(image, blob)
            upright = vote_kind(track, hog_weight, HOG_PERSON_WEIGHT)
            if fallen is not None and overlap_share(blob, fallen) >= FELL_OVERLAP:
                # The dense observer saw this mover come down: it is a person for as long as it is
                # tracked, however wide its silhouette looks on the floor or while getting up.
                track.fell = True
            if not dense_falls:
                update_fall(track, t)
            self._describe_track(track, blob, upright, hog_weight, out, self.zones.for_camera(st.camera))

    @staticmethod
    def _describe_track(track: Track, blob: Blob, upright: bool, hog_weight: float, out: _Findings,
                        zones: list[Zone]) -> None:
        where = region_name(blob.cx)
        vx, _ = track.velocity()
        if track.fallen_since is not None:
            out.observe("person lying on the floor")
            out.flag("fall", 0.8 if track.hog_hits else 0.7)
        elif track.is_person:
            strength = 0.85 if hog_weight >= HOG_PERSON_WEIGHT or track.hog_hits else 0.65
            if abs(vx) >= 0.03:
                out.observe(f"person walking {'right' if vx > 0 else 'left'}")
            else:
                out.observe("person standing" if upright else "person bending or crouching")
            out.activity.append(strength)
        elif track.is_vehicle:
            out.observe(f"vehicle moving at {where}")
            out.activity.append(0.75)
            return
        else:
            out.observe(f"motion at {where}")
            out.activity.append(0.6)
            return
        for zone in zones:
            if point_in_polygon(blob.foot, list(zone.points)):
                out.observe(f"person in zone {zone.name}")
                out.flag("intrusion", 0.8 if track.hog_hits else 0.65)


def _mostly_in(blob: Blob, mask: np.ndarray, share: float) -> bool:
    """Whether the blob's box holds at least ``share`` of the blob's area in ``mask`` pixels."""
    h, w = mask.shape
    x0, y0 = int(blob.x * w), int(blob.y * h)
    x1, y1 = int(math.ceil((blob.x + blob.w) * w)), int(math.ceil((blob.y + blob.h) * h))
    inside = float(np.count_nonzero(mask[y0:y1, x0:x1]))
    return inside >= share * blob.area * h * w
