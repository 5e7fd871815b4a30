"""The offline teacher: reviews a whole escalated keyframe sequence with evidence the student never used.

Per escalated flag it answers one of three things, and says which evidence decided:

* **held** — the sequence shows it by the teacher's own measure (dense optical flow between
  keyframes, silhouettes against the sequence's first/last keyframes, HOG on whole frames);
* **against** — the sequence shows something else (a steady light, an object moving as one
  body, an upright person, a view that never changed);
* **unknown** — the keyframes cannot tell (too few, nothing measurable).

The verdict is ``confirmed`` when a flag is held, ``dismissed`` when every flag is
contradicted, and ``unverified`` otherwise: the teacher never rubber-stamps a flag it could
not check, and never erases one it could not disprove.  On a sequence sent without flags it
adds a flag of its own only on strong evidence (``OWN_FLAG_STRENGTH``).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from pipeline.analyzers.offline_sequence import Keyframe, PairMotion, SequenceReader, pair_motion, region_flow
from pipeline.analyzers.offline_vision import Blob, overlap_share, point_in_polygon
from pipeline.analyzers.offline_zones import ZoneBook
from pipeline.clock import Clock
from pipeline.config.offline import OfflineConfig
from pipeline.config.zones import Zone
from pipeline.incidents.evidence import match_safety
from pipeline.records import MODEL_ERROR_FLAG, SAFETY_FLAGS, Escalation, Mover, TeacherAnswer, Verdict, normalise_flag

log = logging.getLogger(__name__)

BACKEND = "offline"
TEACHER_MODEL = "opencv-offline-teacher/2"

UPRIGHT_ASPECT = 1.35
LYING_ASPECT = 0.85
MIN_PERSON_HEIGHT = 0.12
FIRE_MIN_AREA = 0.0015
FIRE_PIXEL_STD = 18.0
"""Mean per-pixel brightness std (0..255) inside a flame-coloured region across keyframes: flames
change pixel by pixel; a lamp, a screen's steady colour or a painted sign does not."""
FIRE_COHERENT = 0.9
"""Flow coherence above which a flame-coloured region moves as one body (a ball, a coat, a car)."""
SMOKE_MIN_AREA = 0.004
OWN_FLAG_STRENGTH = 0.85
"""A flag the student did not send is added only with at least this strength."""


@dataclass
class _Evidence:
    held: dict[str, float] = field(default_factory=dict)
    against: set[str] = field(default_factory=set)
    observations: list[str] = field(default_factory=list)
    notes: dict[str, str] = field(default_factory=dict)
    person_frames: int = 0
    motion_frames: int = 0

    def hold(self, flag: str, strength: float, observation: str, note: str) -> None:
        self.held[flag] = max(self.held.get(flag, 0.0), strength)
        self.observe(observation)
        self.notes[flag] = note

    def contradict(self, flag: str, observation: str | None, note: str) -> None:
        self.against.add(flag)
        if observation:
            self.observe(observation)
        self.notes[flag] = note

    def observe(self, text: str) -> None:
        if text not in self.observations:
            self.observations.append(text)


class OfflineTeacher:
    """Reviews a whole escalated sequence with sequence-level OpenCV evidence (see module doc)."""

    backend = BACKEND
    model = TEACHER_MODEL

    def __init__(self, cfg: OfflineConfig, zones: list[Zone], clock: Clock) -> None:
        self._cfg = cfg
        self.zones = ZoneBook(zones)
        self._clock = clock
        self._reader = SequenceReader(cfg.min_blob_area)

    def close(self) -> None:
        return None

    def review(self, escalation: Escalation) -> Verdict:
        started = self._clock.monotonic()

        def elapsed() -> float:
            return (self._clock.monotonic() - started) * 1000.0

        try:
            frames = self._reader.read([(k.frame.timestamp, k.frame.image) for k in escalation.keyframes])
            if not frames:
                return Verdict.unverified(escalation, backend=self.backend, model=self.model, latency_ms=elapsed(),
                                          why="no keyframe could be analysed")
            answer, evidence = self._review(escalation, frames)
            if answer is None:
                open_flags = ", ".join(sorted(_escalated(escalation)))
                return Verdict.unverified(escalation, backend=self.backend, model=self.model, latency_ms=elapsed(),
                                          why=f"Unverified: the keyframes neither show nor rule out {open_flags}. "
                                              f"{evidence}"[:2000])
            return Verdict.from_answer(answer, escalation=escalation, backend=self.backend, model=self.model,
                                       latency_ms=elapsed())
        except Exception as exc:
            log.exception("offline teacher failed on escalation %s", escalation.id)
            return Verdict.unverified(escalation, backend=self.backend, model=self.model, latency_ms=elapsed(),
                                      why=f"offline teacher failed: {type(exc).__name__}: {exc}")

    # ----------------------------------------------------------------------------------

    def _review(self, escalation: Escalation, frames: list[Keyframe]) -> tuple[TeacherAnswer | None, str]:
        """The answer (None when the escalated flags can be neither held nor contradicted) and the evidence."""
        motions = [pair_motion(frames, i, i + 1) for i in range(len(frames) - 1)
                   if not frames[i].covered and not frames[i + 1].covered]
        ev = _Evidence()
        _people(frames, ev)
        _fall(frames, motions, ev, _fall_sites(escalation))
        _fire(frames, motions, ev)
        _smoke(frames, motions, ev)
        _tamper(frames, motions, ev)
        _intrusion(frames, ev, self.zones.for_camera(escalation.camera))
        escalated = _escalated(escalation)
        n = len(frames)
        evidence = " ".join(ev.notes[k] for k in sorted(ev.notes))
        observations = ev.observations[:20] or ["no activity"]
        if escalated:
            held = escalated & set(ev.held)
            if held:
                verdict, confidence = "confirmed", max(ev.held[f] for f in held)
                lead = f"Confirmed {', '.join(sorted(held))} over {n} keyframes."
                rest = escalated - held
                if rest:
                    lead += f" Not confirmed: {', '.join(sorted(rest))}."
            elif escalated <= ev.against:
                verdict, confidence = "dismissed", 0.75 if n >= 3 else 0.55
                lead = f"Dismissed {', '.join(sorted(escalated))}: the {n} keyframes show otherwise."
            else:
                return None, evidence
            flags = sorted(held | {f for f, s in ev.held.items() if s >= OWN_FLAG_STRENGTH})
        else:
            flags = sorted(f for f, s in ev.held.items() if s >= OWN_FLAG_STRENGTH)
            student_person = sum(1 for r in escalation.timeline if any("person" in o for o in r.observations))
            consistent = not (student_person >= max(2, len(escalation.timeline) // 2)
                              and ev.person_frames == 0 and ev.motion_frames == 0)
            verdict, confidence = ("confirmed", 0.7) if consistent else ("dismissed", 0.6)
            lead = (f"Reviewed {n} keyframes ({escalation.reason}); "
                    + ("the student's timeline is consistent with them." if consistent
                       else "the student reported a person but no keyframe shows one or any motion."))
            if flags:
                lead += f" The teacher sees {', '.join(flags)} that the student did not flag."
        explanation = (lead + " " + evidence).strip()[:2000]
        # An observation that names a hazard is a claim (the pipeline reads hazard words in a verdict's
        # observations as flags): keep only those the verdict asserts; the rest is in the explanation.
        observations = [o for o in observations if not (match_safety((), (o,), SAFETY_FLAGS) - set(flags))] or ["no activity"]
        return TeacherAnswer(verdict=verdict, observations=observations, safetyFlags=flags[:10],
                             confidence=float(np.clip(confidence, 0.0, 1.0)), explanation=explanation), evidence


def _escalated(escalation: Escalation) -> set[str]:
    return {normalise_flag(f) for f in escalation.flags} - {MODEL_ERROR_FLAG, ""}


# --- people ----------------------------------------------------------------------------


def _people(frames: list[Keyframe], ev: _Evidence) -> None:
    ev.person_frames = sum(1 for f in frames if f.people)
    ev.motion_frames = sum(1 for f in frames if f.blobs)
    if ev.person_frames:
        ev.observe(f"person visible in {ev.person_frames} of {len(frames)} keyframes")
    elif ev.motion_frames:
        ev.observe(f"motion in {ev.motion_frames} of {len(frames)} keyframes")
    ev.notes["a_people"] = (f"Whole-frame HOG found an upright person in {ev.person_frames} of {len(frames)} "
                            f"keyframes; moving regions in {ev.motion_frames}.")


# --- fall --------------------------------------------------------------------------------


def _upright_of(f: Keyframe) -> Blob | None:
    cands = list(f.people) + [b for b in f.vs_last if b.aspect >= UPRIGHT_ASPECT and b.h >= MIN_PERSON_HEIGHT]
    return max(cands, key=lambda b: b.h, default=None)


def _lying_near(f: Keyframe, up: Blob) -> Blob | None:
    ratio = f.work.grey.shape[0] / f.work.grey.shape[1]
    for b in f.vs_first:
        if b.aspect > LYING_ASPECT or b.w < 0.3 * up.h * ratio:
            continue
        near_x = b.x <= up.x + up.w + up.h and b.x + b.w >= up.x - up.h
        low = (b.y - up.y) >= 0.35 * up.h and abs(b.bottom - up.bottom) <= 0.5 * up.h
        if near_x and low:
            return b
    return None


def _downward_flow(motions: list[PairMotion], i: int, j: int, up: Blob) -> float:
    """Mean vertical flow (in body heights) inside the upright figure's box between keyframes i..j."""
    best = 0.0
    for m in motions:
        if m.a < i or m.b > j:
            continue
        fh, fw = m.flow.shape[:2]
        box = np.zeros((fh, fw), np.uint8)
        box[int(up.y * fh):int(math.ceil(up.bottom * fh)), int(up.x * fw):int(math.ceil((up.x + up.w) * fw))] = 1
        _, dy, _ = region_flow(m, box)
        best = max(best, dy / max(1.0, up.h * fh))
    return best


def _fall_sites(escalation: Escalation) -> list[Mover]:
    """Where the student's dense motion observer saw someone go down (boxes carried on the keyframes)."""
    sites = {}
    for k in escalation.keyframes:
        record = k.frame.motion
        if record is not None and record.fall is not None:
            sites[(record.fall.track, record.fall.onset)] = record.fall.lying
    return list(sites.values())


def _fall(frames: list[Keyframe], motions: list[PairMotion], ev: _Evidence, sites: list[Mover] | None = None) -> None:
    # Upright earlier (HOG or an upright region against the last keyframe), a wide low region
    # near where it stood later (against the first keyframe), staying down, and the flow in the
    # figure's box pointing down at the change.
    best_note = "no upright-then-lying posture change"
    for i, f in enumerate(frames):
        up = _upright_of(f)
        if up is None:
            continue
        for j in range(i + 1, len(frames)):
            g = frames[j]
            if _upright_of(g) is not None and g.t - f.t < 1.0:
                continue
            down = _lying_near(g, up)
            if down is None:
                continue
            later = frames[j + 1:]
            stays = all(_lying_near(h, up) is not None for h in later)
            quick = g.t - f.t <= 4.0
            if stays and quick:
                drop = _downward_flow(motions, i, j, up)
                strength = 0.7 + (0.05 if later else 0.0) + (0.05 if drop >= 0.05 else 0.0) + (0.1 if f.people else 0.0)
                ev.hold("fall", min(0.95, strength), "person lying on the floor",
                        f"Fall: upright figure at t={f.t:.1f}s (height {up.h:.2f}), lying figure (aspect "
                        f"{down.aspect:.2f}) at t={g.t:.1f}s, downward flow {drop:.2f} body heights"
                        + (f", still down in {len(later)} later keyframes." if later else "."))
                return
            best_note = (f"posture changed from upright (t={f.t:.1f}s) to low (t={g.t:.1f}s) but "
                         + ("not quickly" if not quick else "the figure did not stay down"))
    last = frames[-1]
    latest_people = [p for f in ([last] + (frames[-2:] if len(frames) >= 3 else [])) for p in f.people]
    if sites:
        # The student says someone went down at a place: only an upright person *there* rules it
        # out (someone else standing in view does not; neither does a detector hit elsewhere).
        latest_people = [p for p in latest_people if any(overlap_share(p, site) > 0.0 for site in sites)]
    if latest_people:
        ev.contradict("fall", None, f"Fall: {best_note}; an upright person is in the latest keyframes.")
    elif not any(f.vs_first or f.vs_last for f in frames):
        ev.contradict("fall", None, f"Fall: {best_note}; nothing moved in the sequence.")
    else:
        ev.notes["fall"] = f"Fall: {best_note}."


# --- fire and smoke ------------------------------------------------------------------------


def _fire(frames: list[Keyframe], motions: list[PairMotion], ev: _Evidence) -> None:
    present = [k for k, f in enumerate(frames) if float(f.fire.mean()) >= FIRE_MIN_AREA]
    if len(present) < 2:
        ev.contradict("fire", "brief orange patch" if present else None,
                      f"Fire: a flame-coloured region in {len(present)} of {len(frames)} keyframes.")
        return
    stack = np.stack([frames[k].work.hsv[..., 2].astype(np.float32) for k in present])
    union = np.stack([frames[k].fire for k in present]).max(axis=0) > 0
    pixel_std = float(stack.std(axis=0)[union].mean())
    # Where the region is from keyframe to keyframe: flames stay where they burn.
    centres = []
    for k in present:
        ys, xs = np.nonzero(frames[k].fire)
        centres.append((xs.mean() / frames[k].fire.shape[1], ys.mean() / frames[k].fire.shape[0]))
    size = math.sqrt(float(union.mean()))
    drift = max(math.hypot(x - centres[0][0], y - centres[0][1]) for x, y in centres)
    coherences = []
    for m in motions:
        if m.a in present and m.b in present:
            dx, dy, coh = region_flow(m, frames[m.a].fire | frames[m.b].fire)
            if math.hypot(dx, dy) >= 0.5:
                coherences.append(coh)
    moving_body = bool(coherences) and float(np.median(coherences)) >= FIRE_COHERENT
    summary = (f"flame-coloured region in {len(present)} of {len(frames)} keyframes, per-pixel brightness std "
               f"{pixel_std:.1f} (flames >= {FIRE_PIXEL_STD:g}), drift {drift:.2f} of the frame, flow coherence "
               + (f"{float(np.median(coherences)):.2f}" if coherences else "n/a (still)"))
    if moving_body or drift > max(0.15, 2.0 * size):
        ev.contradict("fire", "orange object moving", f"Fire: {summary}: it moves as one body, not flames.")
    elif pixel_std < FIRE_PIXEL_STD:
        ev.contradict("fire", "steady orange light", f"Fire: {summary}: steady, no flicker, so not fire.")
    elif len(present) >= 3:
        strength = 0.9 if len(present) >= 4 else 0.8
        ev.hold("fire", strength, "flickering fire", f"Fire: {summary}: flames flicker in place.")
    else:
        ev.notes["fire"] = f"Fire: {summary}: too few keyframes to tell."


def _smoke(frames: list[Keyframe], motions: list[PairMotion], ev: _Evidence) -> None:
    usable = [k for k, f in enumerate(frames) if not f.covered]
    if len(usable) < 3:
        ev.notes["smoke"] = "Smoke: fewer than three usable keyframes."
        return
    base = frames[usable[0]].work

    def detail(grey: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(np.abs(cv2.Laplacian(grey, cv2.CV_32F)), (0, 0), 3.0)

    base_detail = detail(base.grey)
    areas, rising = [], []
    for k in usable[1:]:
        f = frames[k]
        sat = f.work.hsv[..., 1]
        veiled = (detail(f.work.grey) < 0.6 * base_detail) & (base_detail > 2.0) & (sat <= 60) \
            & (np.abs(f.work.grey - base.grey) > 8.0) & (f.fire == 0)
        areas.append(float(veiled.mean()))
        for m in motions:
            if m.b == k and veiled.any():
                _, dy, _ = region_flow(m, veiled.astype(np.uint8))
                rising.append(dy)
    present = [a for a in areas if a >= SMOKE_MIN_AREA]
    up = bool(rising) and float(np.median(rising)) < -0.2
    grows = len(present) >= 2 and present[-1] >= 1.2 * present[0]
    note = (f"Smoke: a veiled (detail lost), grey region in {len(present)} of {len(areas)} later keyframes"
            + (f", from {present[0]:.3f} to {present[-1]:.3f} of the frame" if present else "")
            + (f", flow in it {float(np.median(rising)):+.2f} px (negative = rising)" if rising else "") + ".")
    # Smoke rises: a veiled grey patch that does not drift upward is haze, a shadow or a soft lens.
    if len(present) >= 2 and up:
        ev.hold("smoke", 0.8 if grows else 0.7, "smoke rising", note)
    elif not present:
        ev.contradict("smoke", None, note)
    else:
        ev.notes["smoke"] = note


# --- tamper ------------------------------------------------------------------------------


def _tamper(frames: list[Keyframe], motions: list[PairMotion], ev: _Evidence) -> None:
    covered = sum(1 for f in frames if f.covered)
    cuts = [m for m in motions if m.is_cut]
    note = (f"Tamper: {covered} of {len(frames)} keyframes covered or blank; {len(cuts)} of {len(motions)} "
            f"keyframe changes not explained by motion"
            + (f" (unexplained {max(m.unexplained for m in motions):.2f})" if motions else "") + ".")
    if covered >= 2:
        ev.hold("tamper", 0.9, "camera view covered or blank", note)
    elif cuts:
        # After the newest cut the new view holds (or the sequence ends on it).
        after = [m for m in motions if m.a >= cuts[-1].b]
        settled = all(not m.is_cut for m in after)
        ev.hold("tamper", 0.8 if after and settled else 0.7, "camera view changed", note)
    elif covered == 0 and len(motions) >= 2:
        ev.contradict("tamper", None, note + " The view stays the same camera's view.")
    elif covered == 1 and len(frames) >= 3 and not frames[-1].covered:
        ev.contradict("tamper", None, note + " One covered keyframe, then the view is back.")
    else:
        ev.notes["tamper"] = note


# --- intrusion -----------------------------------------------------------------------------


def _intrusion(frames: list[Keyframe], ev: _Evidence, zones: list[Zone]) -> None:
    if not zones:
        return
    hits: dict[str, int] = {}
    for f in frames:
        cands = list(f.people) + [b for b in f.blobs if b.aspect >= UPRIGHT_ASPECT and b.h >= MIN_PERSON_HEIGHT]
        for zone in zones:
            if any(point_in_polygon(b.foot, list(zone.points)) for b in cands):
                hits[zone.name] = hits.get(zone.name, 0) + 1
    inside = {z: n for z, n in hits.items() if n >= 2}
    note = "Intrusion: " + (", ".join(f"person's feet in zone {z} in {n} keyframes" for z, n in hits.items())
                            or "no person's feet inside a zone") + "."
    if inside:
        ev.hold("intrusion", 0.8, "; ".join(f"person in zone {z}" for z in inside), note)
    elif any(f.people or f.blobs for f in frames):
        ev.contradict("intrusion", None, note)
    else:
        ev.notes["intrusion"] = note
