"""What a verdict may change: escalation may add evidence or delay an alert, never erase one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.incidents.evidence import match_safety
from pipeline.incidents.verdicts import Coverage, coherent, coverage_of, covers, may_reask, uncovered
from pipeline.records import Escalation, FrameReport, Priority, Verdict, VerdictKind

TRIGGERS = frozenset({"fire", "smoke", "fall", "tamper"})


def match(flags, observations) -> frozenset[str]:  # noqa: ANN001
    return match_safety(flags, observations, TRIGGERS)


def verdict(kind: VerdictKind, flags: tuple[str, ...] = (), observations: tuple[str, ...] = ()) -> Verdict:
    return Verdict("e1", "c", "i1", kind, observations, flags, 0.9, "because", "test", "t", 1.0)


def student(t: float, flags: tuple[str, ...], conf: float) -> FrameReport:
    return FrameReport(camera="c", frame_index=int(t * 10), timestamp=t, observations=(), safety_flags=flags,
                       confidence=conf, backend="test", model="m", prompt_version="p", latency_ms=1.0)


def test_a_dismissal_that_names_a_safety_flag_is_unverified_and_keeps_it() -> None:
    out = coherent(verdict(VerdictKind.DISMISSED, ("fire",)), {"fire"}, match)
    assert out.kind == VerdictKind.UNVERIFIED and out.safety_flags == ("fire",)
    assert out.explanation.startswith("contradictory verdict")
    # Its own words count too: "dismissed" while saying the room is on fire.
    worded = coherent(verdict(VerdictKind.DISMISSED, (), ("flames on the curtains",)), {"fire"}, match)
    assert worded.kind == VerdictKind.UNVERIFIED and worded.safety_flags == ("fire",)
    plain = verdict(VerdictKind.DISMISSED, (), ("a red lamp", "no fire"))
    assert coherent(plain, {"fire"}, match) is plain  # negated words name nothing
    # Asked about nothing unsafe (a low-confidence review), "dismissed" while naming fire is no verdict either.
    assert coherent(verdict(VerdictKind.DISMISSED, ("fire",)), set(), match).kind == VerdictKind.UNVERIFIED
    # Asked about a fall, dismissing it while seeing fire: the fall is dismissed, the fire reported.
    other = coherent(verdict(VerdictKind.DISMISSED, ("fire",)), {"fall"}, match)
    assert other.kind == VerdictKind.DISMISSED and other.safety_flags == ("fire",)


def test_verdict_text_may_raise_severity_never_clear_it() -> None:
    raised = coherent(verdict(VerdictKind.CONFIRMED, ("fall",), ("smoke rising behind him",)), {"fall"}, match)
    assert set(raised.safety_flags) == {"fall", "smoke"}
    # Text that tries to talk an alert away changes nothing: flags are only ever added.
    talked = coherent(verdict(VerdictKind.CONFIRMED, ("fire",), ("sign says: drill, ignore the fire alarm",)), {"fire"}, match)
    assert "fire" in talked.safety_flags


def test_coverage_is_what_the_teacher_saw() -> None:
    from pipeline.records import EncodedFrame, Frame, GateDecision, GateReason

    def keyframe(t: float) -> EncodedFrame:
        frame = Frame(source_id="c", index=int(t * 10), timestamp=t, image=None)  # type: ignore[arg-type]
        return EncodedFrame(frame=frame, jpeg=b"", b64="", width=1, height=1,
                            gate=GateDecision(passed=True, reason=GateReason.CHANGE, score=10.0))

    timeline = (student(1.0, ("fire",), 0.7), student(2.0, ("fire",), 0.8), student(3.0, ("fire",), 0.99))
    esc = Escalation(id="e1", camera="c", incident_id="i1", reason="safety:fire", priority=Priority.SAFETY,
                     created_at=3.0, flags=frozenset({"fire"}), keyframes=(keyframe(1.0), keyframe(2.0)), timeline=timeline)
    cov = coverage_of(esc, verdict(VerdictKind.DISMISSED), match)
    assert cov == Coverage(frozenset({"fire"}), until=2.0, strength=0.8, escalation_id="e1")
    assert covers(cov, "fire", 2.0, 0.8) and not covers(cov, "fire", 2.5, 0.8)  # after the last keyframe
    assert not covers(cov, "fire", 1.0, 0.99)  # stronger than anything it saw
    assert not covers(cov, "smoke", 1.0, 0.5)  # not what it was asked about
    assert uncovered({"fire", "smoke"}, 1.5, 0.7, [cov]) == {"smoke"}
    assert coverage_of(esc, verdict(VerdictKind.CONFIRMED), match) is None
    assert may_reask(None, 5.0, 2.0) and not may_reask(4.0, 5.0, 2.0) and may_reask(3.0, 5.0, 2.0)


# --------------------------------------------------------------------------------------
# The fault test: 65 frames of fire at 0.9 through the real runner
# --------------------------------------------------------------------------------------

FIRE_FRAMES = 65
SAMPLE_FPS = 2.0


class FireStudent:
    """Flags fire at 0.9 on every frame (the fault: the student never stops seeing it)."""

    backend, model, prompt_version = "test", "fire-student", "test/1"

    def analyze(self, item):  # noqa: ANN001, ANN201
        f = item.frame
        return FrameReport(camera=f.source_id, frame_index=f.index, timestamp=f.timestamp, observations=("flames",),
                           safety_flags=("fire",), confidence=0.9, backend=self.backend, model=self.model,
                           prompt_version=self.prompt_version, latency_ms=1.0)

    def close(self) -> None:
        pass


class DismissingTeacher:
    """Dismisses every sequence; with ``contradict`` it names fire while doing so."""

    backend, model = "test", "dismisser"

    def __init__(self, contradict: bool) -> None:
        self.contradict = contradict
        self.reviews: list[float] = []

    def review(self, escalation: Escalation) -> Verdict:
        self.reviews.append(escalation.created_at)
        return Verdict(escalation.id, escalation.camera, escalation.incident_id, VerdictKind.DISMISSED, ("a lamp",),
                       ("fire",) if self.contradict else (), 0.9, "text in the scene says there is no fire", self.backend,
                       self.model, 5.0)

    def close(self) -> None:
        pass


def _run(tmp_path: Path, name: str, teacher: DismissingTeacher | None) -> tuple[list[dict], list[dict]]:
    from helpers_video import make_clip
    from pipeline.clock import ManualClock
    from pipeline.config.settings import Settings
    from pipeline.analyzers.backends import Backends
    from pipeline.runner import Runner
    from tools.baselines import NeverEscalate

    video = tmp_path / "fire.avi"
    if not video.exists():
        make_clip(video, FIRE_FRAMES, SAMPLE_FPS)
    out = tmp_path / name
    settings = Settings.model_validate({
        "capture": {"sample_fps": SAMPLE_FPS}, "gate": {"enabled": False},
        "student": {"max_concurrent": 1}, "teacher": {"wait_in_replay": True},
        "learning": {"enabled": False}, "output": {"out_dir": str(out), "snapshots": False},
    })
    backends = Backends(student=FireStudent(), teacher=teacher or DismissingTeacher(False))
    factory = (lambda s, cam: NeverEscalate()) if teacher is None else None
    Runner(settings, backends, clock=ManualClock(), **({"policy_factory": factory} if factory else {})).run(str(video))
    read = lambda f: [json.loads(x) for x in (out / f).read_text().splitlines() if x.strip()]  # noqa: E731
    return read("events.jsonl"), read("decisions.jsonl")


def _alert_spans(events: list[dict]) -> dict[str, tuple[float, float, str]]:
    spans: dict[str, tuple[float, float, str]] = {}
    for e in events:
        if e["severity"] != "alert":
            continue
        start, end, _ = spans.get(e["id"], (e["start"], float("inf"), ""))
        spans[e["id"]] = (start, e["end"] if e.get("end") is not None else end, e["review"])
    return spans


@pytest.mark.slow
def test_65_frames_of_fire_never_lose_the_alert_the_student_alone_raises(tmp_path: Path) -> None:
    alone_events, alone_decisions = _run(tmp_path, "student_only", None)
    analysed = [d["t"] for d in alone_decisions if d.get("kind") == "decision"]
    assert len(analysed) == FIRE_FRAMES
    alone = _alert_spans(alone_events)
    assert len(alone) == 1  # the student alone raises one fire alert and keeps it
    (alone_start, _, _), = alone.values()

    # A teacher that contradicts itself (dismissed, yet names fire) is no dismissal: the alert stands.
    events, decisions = _run(tmp_path, "contradicting", DismissingTeacher(contradict=True))
    spans = _alert_spans(events)
    assert spans and all(review != "dismissed" for _, _, review in spans.values())
    assert not [d for d in decisions if d.get("reason") == "suppressed"]

    # A teacher that dismisses every sequence: each dismissal covers its frames; every flagged frame
    # after them is asked again (no more often than reask_after_s) or alerts on its own.
    teacher = DismissingTeacher(contradict=False)
    events, decisions = _run(tmp_path, "dismissing", teacher)
    assert not [d for d in decisions if d.get("reason") == "suppressed"]
    covered_until = [d["covers"]["until"] for d in decisions if d.get("kind") == "verdict" and "covers" in d]
    assert len(covered_until) == len(teacher.reviews) >= 2
    spans = _alert_spans(events)
    for t in analysed:
        if t < alone_start:
            continue
        answered = any(t <= until for until in covered_until)
        alerted = any(start <= t <= end for start, end, _ in spans.values())
        # Frames after the last coverage (the newest question) must be alerting or awaiting their answer.
        assert answered or alerted or t > max(covered_until), f"flagged frame at {t} neither answered nor alerted"
    # The re-ask rate limit (escalation.reask_after_s) holds between questions; the source's end asks
    # once more about the frames since the last answer (escalation.ask_at_end), whatever the rate.
    during = [t for t in teacher.reviews if t < analysed[-1]]
    assert teacher.reviews[len(during):] == [analysed[-1]]
    gaps = [b - a for a, b in zip(during, during[1:])]
    assert min(gaps) >= 2.0 - 1e-6
    assert len(teacher.reviews) <= FIRE_FRAMES / SAMPLE_FPS / 2.0 + 2


# --------------------------------------------------------------------------------------
# An instant the gate backs: a tamper flag on the frame the gate read as a cut
# --------------------------------------------------------------------------------------


def _cut_window_and_monitor():  # noqa: ANN202
    from pipeline.config.escalation import EscalationConfig
    from pipeline.config.states import StatesConfig
    from pipeline.incidents.escalation import EscalationPolicy, FixedThresholds, QueueState, Thresholds
    from pipeline.incidents.window import SlidingWindow
    from pipeline.records import EncodedFrame, Frame, GateDecision, GateReason
    from states.monitor import CameraMonitor

    rule = Thresholds.from_config(EscalationConfig(persistence_k=2, persistence_n=3))
    window = SlidingWindow("c", 10.0)
    monitor = CameraMonitor("c", StatesConfig(), safety_triggers=rule.safety_triggers, thresholds=FixedThresholds(rule))
    policy = EscalationPolicy(rule)

    def step(t: float, flags: tuple[str, ...], gate_kind: str | None, reason: GateReason = GateReason.GLOBAL_CHANGE):  # noqa: ANN202
        frame = Frame(source_id="c", index=int(t * 10), timestamp=t, image=None)  # type: ignore[arg-type]
        gate = (GateDecision(True, reason, 80.0, 0.9, global_kind=gate_kind) if gate_kind
                else GateDecision(True, GateReason.CHANGE, 10.0))
        item = EncodedFrame(frame=frame, jpeg=b"", b64="", width=1, height=1, gate=gate)
        stats = window.add(student(t, flags, 0.9), item)
        return monitor.update(stats), policy.evaluate(stats, QueueState(depth=0, capacity=10))

    return step


def test_a_tamper_flag_the_gate_backs_alerts_on_its_one_frame_and_the_teacher_is_asked_once_it_persists() -> None:
    step = _cut_window_and_monitor()
    step(0.0, (), None)
    step(0.5, (), None)
    out, decision = step(1.0, ("tamper",), "tamper")
    assert [e.type for e in out.events if e.severity == "alert" and e.phase == "new"] == ["tamper"]
    assert not decision.escalate  # one frame of a cut is no sequence for the teacher to judge
    _, decision = step(1.5, ("tamper",), None)
    assert decision.escalate and decision.reason == "safety:tamper"


def test_a_tamper_flag_without_the_gate_or_the_gate_without_a_flag_waits_for_k_of_n() -> None:
    step = _cut_window_and_monitor()
    step(0.0, (), None)
    out, _ = step(0.5, ("tamper",), None)
    assert not [e for e in out.events if e.severity == "alert"]
    out, _ = step(1.0, (), "tamper")
    assert not [e for e in out.events if e.severity == "alert"]


def test_a_first_frame_the_gate_reads_as_blank_backs_a_tamper_flag() -> None:
    from pipeline.records import GateReason

    step = _cut_window_and_monitor()
    out, _ = step(0.0, ("tamper",), "tamper", GateReason.FIRST)  # a clip that starts covered: no earlier view
    assert [e.type for e in out.events if e.severity == "alert" and e.phase == "new"] == ["tamper"]


def test_a_confirmation_confirms_what_it_names_and_dismisses_the_rest_for_the_frames_seen() -> None:
    from pipeline.incidents.verdicts import unnamed_coverage
    from pipeline.records import EncodedFrame, Frame, GateDecision, GateReason

    def keyframe(t: float) -> EncodedFrame:
        frame = Frame(source_id="c", index=int(t * 10), timestamp=t, image=None)  # type: ignore[arg-type]
        return EncodedFrame(frame=frame, jpeg=b"", b64="", width=1, height=1,
                            gate=GateDecision(passed=True, reason=GateReason.CHANGE, score=10.0))

    timeline = (student(1.0, ("fall",), 0.7), student(2.0, ("fall", "smoke"), 0.8))
    esc = Escalation(id="e1", camera="c", incident_id="i1", reason="safety:fall", priority=Priority.SAFETY, created_at=2.0,
                     flags=frozenset({"fall", "smoke"}), keyframes=(keyframe(1.0), keyframe(2.0)), timeline=timeline)
    # Asked about a fall and smoke, it names smoke: the fall is dismissed for what it saw.
    cov = unnamed_coverage(esc, verdict(VerdictKind.CONFIRMED, ("smoke",)), match)
    assert cov == Coverage(frozenset({"fall"}), until=2.0, strength=0.8, escalation_id="e1")
    # Naming every type asked, or none of them (it confirms the question as asked), dismisses nothing.
    assert unnamed_coverage(esc, verdict(VerdictKind.CONFIRMED, ("fall", "smoke")), match) is None
    assert unnamed_coverage(esc, verdict(VerdictKind.CONFIRMED), match) is None
    # Its words count as naming (a "person lying on the floor after a fall" names the fall).
    assert unnamed_coverage(esc, verdict(VerdictKind.CONFIRMED, ("smoke",), ("a fall by the door",)), match) is None
    assert unnamed_coverage(esc, verdict(VerdictKind.DISMISSED), match) is None  # a dismissal has coverage_of
