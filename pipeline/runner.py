"""The one module that wires the stages together.

capture → sampler → gate → encode → student pool → window → monitor (states) → escalation
policy → teacher queue → teacher → verdicts back into the monitor → event/decision sinks.

All stateful logic (window, monitor, policy) runs on the caller's thread; the student pool
and the teacher queue are the I/O stages behind bounded queues.  No other module knows this
order.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from pipeline.analyzers.base import Student, Teacher
from pipeline.analyzers.fallback import CircuitBreaker, FallbackStudent
from pipeline.capture import Sampler, open_source
from pipeline.clock import Clock, SystemClock
from pipeline.config import Settings
from pipeline.encode import encode_frame
from pipeline.escalation import EscalationPolicy, Thresholds
from pipeline.gate import ChangeGate
from pipeline.keyframes import build_escalation, pattern_onset
from pipeline.records import EncodedFrame, Event, FrameReport, GateReason, Priority, VerdictKind
from pipeline.sinks.files import JsonlWriter, SnapshotWriter, prepare_out_dir, write_json_atomically
from pipeline.student_pool import StudentPool
from pipeline.teacher_queue import TeacherQueue
from pipeline.window import SlidingWindow
from states.monitor import CameraMonitor, MonitorOutput

log = logging.getLogger("edgewatch.runner")

#: Monitor states in which a safety pattern is open and the gate may not starve the student.
_SAFETY_WATCH_STATES = frozenset({"suspicious", "escalated", "alert"})

EventCallback = Callable[[Event], None]
ProgressCallback = Callable[[int, int | None], None]


# --------------------------------------------------------------------------------------
# Choosing the models
# --------------------------------------------------------------------------------------


@dataclass
class Backends:
    student: Student
    teacher: Teacher
    notices: list[str] = field(default_factory=list)
    """Which backend plays each role, one line per role, for the log."""
    fallback: str | None = None
    """The one line the user must see when the offline analyzers stand in for unreachable models."""


def select_backends(settings: Settings, clock: Clock, *, probe_timeout_s: float = 1.5) -> Backends:
    """Pick the student and teacher: Ollama when its host answers with the model, else the offline analyzers.

    A fallback to the offline analyzers is always announced, in one line; it never stands in silently.
    With ``backend: ollama`` (not ``auto``) an unusable host is an error instead.
    """
    from pipeline.analyzers.offline import OfflineStudent, OfflineTeacher
    from pipeline.errors import ConfigError, EdgewatchError

    if settings.student.backend == "simulated" or settings.teacher.backend == "simulated":
        raise ConfigError("the 'simulated' backend exists only for evaluating routing policy, not for monitoring")

    chosen: dict[str, Any] = {
        "student": OfflineStudent(settings.offline, settings.zones, clock),
        "teacher": OfflineTeacher(settings.offline, settings.zones, clock),
    }
    endpoints = {"student": settings.student, "teacher": settings.teacher}
    fallbacks: list[str] = []  # why each role fell back to the offline analyzer
    notices: list[str] = []
    probes: dict[str, Any] = {}
    for role, endpoint in endpoints.items():
        if endpoint.backend == "offline":
            notices.append(f"{role}: the embedded offline analyzer ({chosen[role].model}), as configured")
            continue
        from pipeline.analyzers.ollama_client import mask_host, probe_host

        if endpoint.host not in probes:
            probes[endpoint.host] = probe_host(endpoint.host, probe_timeout_s)
        probe = probes[endpoint.host]
        host = mask_host(endpoint.host)
        if not probe.reachable:
            problem = f"no Ollama host answered at {host} ({probe.error})"
        elif not probe.has_model(endpoint.model):
            problem = f"Ollama at {host} does not have {endpoint.model} (run: ollama pull {endpoint.model})"
        else:
            chosen[role] = _ollama_analyzer(role, settings, clock, chosen[role])
            notices.append(f"{role}: {endpoint.model} on Ollama at {host}")
            continue
        if endpoint.backend == "ollama":
            raise EdgewatchError(f"{role} backend is 'ollama' but {problem}")
        fallbacks.append(f"{problem}: the {role} is the embedded offline analyzer ({chosen[role].model}), not {endpoint.model}")
    fallback = "; ".join(fallbacks) + " — results come from OpenCV rules, not from Gemma" if fallbacks else None
    return Backends(student=chosen["student"], teacher=chosen["teacher"], notices=notices, fallback=fallback)


def _ollama_analyzer(role: str, settings: Settings, clock: Clock, offline: Any) -> Any:
    from pipeline.analyzers.ollama_client import OllamaStudent, OllamaTeacher
    from pipeline.analyzers.prompts import STUDENT_PROMPT, TEACHER_PROMPT

    if role == "teacher":
        return OllamaTeacher(settings.teacher, TEACHER_PROMPT, clock)
    primary = OllamaStudent(settings.student, STUDENT_PROMPT, clock)
    primary.warm_up()
    # The offline analyzer stands by: the breaker switches to it (and back) with an event each time.
    return FallbackStudent(primary, offline, CircuitBreaker(clock=clock), on_switch=None)


# --------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------


@dataclass
class RunSummary:
    source: str
    camera: str
    student: str
    teacher: str
    frames_read: int = 0
    bad_frames: int = 0
    frames_sampled: int = 0
    gate: dict[str, int] = field(default_factory=dict)
    frames_analysed: int = 0
    student_failures: int = 0
    student_stale_dropped: int = 0
    backend_switches: int = 0
    student_latency_ms_mean: float = 0.0
    events_by_type: dict[str, int] = field(default_factory=dict)
    alerts_by_review: dict[str, int] = field(default_factory=dict)
    escalations_by_reason: dict[str, int] = field(default_factory=dict)
    verdicts: dict[str, int] = field(default_factory=dict)
    queue: dict[str, Any] = field(default_factory=dict)
    ollama_timings_ms: dict[str, float] = field(default_factory=dict)
    source_seconds: float = 0.0
    wall_seconds: float = 0.0
    stopped_early: str | None = None
    out_dir: str = ""

    @property
    def fps(self) -> float:
        return self.frames_read / self.wall_seconds if self.wall_seconds > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        data = {k: v for k, v in self.__dict__.items()}
        data["frames_per_second"] = round(self.fps, 2)
        data["wall_seconds"] = round(self.wall_seconds, 3)
        return data

    def render(self) -> str:
        gate = ", ".join(f"{k} {v}" for k, v in sorted(self.gate.items())) or "-"
        events = ", ".join(f"{k} {v}" for k, v in sorted(self.events_by_type.items())) or "none"
        esc = ", ".join(f"{k} {v}" for k, v in sorted(self.escalations_by_reason.items())) or "none"
        verdicts = ", ".join(f"{k} {v}" for k, v in sorted(self.verdicts.items())) or "none"
        lines = [
            f"summary for {self.source} (camera {self.camera})",
            f"  student: {self.student}",
            f"  teacher: {self.teacher}",
            f"  frames read {self.frames_read} (bad {self.bad_frames}), sampled {self.frames_sampled}, "
            f"analysed {self.frames_analysed} (failed {self.student_failures}, stale dropped {self.student_stale_dropped})",
            f"  gate: {gate}",
            f"  events: {events}",
            f"  escalations: {esc}; verdicts: {verdicts}",
            f"  teacher queue: max depth {self.queue.get('depth_max', 0)}, sheds {self.queue.get('sheds', 0)}, merges {self.queue.get('merges', 0)}",
            f"  {self.source_seconds:.1f} s of video in {self.wall_seconds:.2f} s wall time, {self.fps:.1f} frames/s read",
        ]
        if self.stopped_early:
            lines.append(f"  stopped early: {self.stopped_early}")
        lines.append(f"  output: {self.out_dir}")
        return "\n".join(lines)


class Runner:
    """Runs one source through the whole pipeline."""

    def __init__(
        self,
        settings: Settings,
        backends: Backends,
        *,
        clock: Clock | None = None,
        on_event: EventCallback | None = None,
        on_progress: ProgressCallback | None = None,
        stop: threading.Event | None = None,
        display: Any | None = None,
        policy_factory: Callable[[Settings, str], Any] | None = None,
    ) -> None:
        self.settings = settings
        self.backends = backends
        self.clock = clock or SystemClock()
        self.on_event = on_event
        self.on_progress = on_progress
        self.stop = stop or threading.Event()
        self.display = display
        # Evaluation swaps in baseline routing policies (same interface as EscalationPolicy:
        # evaluate, suppress, thresholds_in_force); monitoring always uses ours.
        self.policy_factory = policy_factory or (lambda settings, camera: EscalationPolicy(Thresholds.from_config(settings.escalation)))

    def run(self, source_spec: str, *, max_frames: int | None = None) -> RunSummary:
        s = self.settings
        out_dir = prepare_out_dir(Path(s.output.out_dir))
        camera = s.camera_id
        source = open_source(source_spec, camera_id=camera, cfg=s.capture, clock=self.clock)
        replay = not source.is_live and not s.capture.realtime

        events_log = JsonlWriter(out_dir / "events.jsonl")
        decisions_log = JsonlWriter(out_dir / "decisions.jsonl")
        snapshots = SnapshotWriter(out_dir / "snapshots")
        summary = RunSummary(
            source=source.description,
            camera=camera,
            student=_describe_backend(self.backends.student),
            teacher=_describe_backend(self.backends.teacher),
            out_dir=str(out_dir),
        )
        for notice in [self.backends.fallback, *self.backends.notices]:
            if notice:
                decisions_log.write({"kind": "notice", "message": notice})

        sampler = Sampler(s.capture.sample_fps)
        gate = ChangeGate(s.gate)
        window = SlidingWindow(camera, s.window.window_s)
        monitor = CameraMonitor(
            camera,
            s.states,
            safety_triggers=s.escalation.safety_triggers,
            suppress_s=s.escalation.suppress_after_dismiss_s,
            rearm_after_s=s.escalation.rearm_after_s,
        )
        policy = self.policy_factory(s, camera)
        student_concurrency = s.student.max_concurrent if self.backends.student.backend != "offline" else 1
        pool = StudentPool(self.backends.student, student_concurrency, drop_stale=not replay)
        queue = TeacherQueue(self.backends.teacher, s.teacher, self.clock)

        run = _RunState(summary=summary, events_log=events_log, decisions_log=decisions_log, snapshots=snapshots, on_event=self.on_event)
        latencies: list[float] = []
        ollama_timings: Counter[str] = Counter()
        escalation_counter = 0
        safety_watch: Counter[str] = Counter()  # skip reason -> frames the safety watch sent on anyway
        last_ts = 0.0
        wall_start = self.clock.monotonic()

        def handle_reports(ready: list[tuple[EncodedFrame, FrameReport]]) -> None:
            nonlocal escalation_counter, last_ts
            for item, report in ready:
                summary.frames_analysed += 1
                latencies.append(report.latency_ms)
                for key, value in report.timings.items():
                    ollama_timings[key] += value
                if report.error:
                    summary.student_failures += 1
                last_ts = max(last_ts, report.timestamp)
                run.current_item = item
                stats = window.add(report, item)
                run.apply(monitor.update(stats))
                decision = policy.evaluate(stats, queue.state())
                record = {
                    "kind": "decision",
                    "camera": camera,
                    "t": round(report.timestamp, 3),
                    "frame": report.frame_index,
                    "escalate": decision.escalate,
                    "reason": decision.reason,
                    "priority": decision.priority.name if decision.priority is not None else None,
                    "flags": sorted(decision.flags),
                    "thresholds": policy.thresholds_in_force(),
                    "queue_depth": queue.state().depth,
                    "student": report.to_json(),
                }
                decisions_log.write(record)
                if not decision.escalate:
                    continue
                escalation_counter += 1
                safety = decision.priority == Priority.SAFETY
                incident_id = monitor.open_incident_id or f"{camera}-inc-{escalation_counter:05d}"
                escalation = build_escalation(
                    escalation_id=f"{camera}-esc-{escalation_counter:05d}",
                    camera=camera,
                    incident_id=incident_id,
                    decision=decision,
                    entries=window.entries(),
                    max_keyframes=s.teacher.max_keyframes,
                    created_at=report.timestamp,
                    pattern_start=pattern_onset(window.entries(), decision.flags, s.escalation.rearm_after_s),
                )
                summary.escalations_by_reason[decision.reason] = summary.escalations_by_reason.get(decision.reason, 0) + 1
                result = queue.submit(escalation)
                decisions_log.write({"kind": "escalation", "id": escalation.id, "camera": camera, "t": round(report.timestamp, 3),
                                     "reason": decision.reason, "priority": decision.priority.name if decision.priority else None,
                                     "incident_id": incident_id, "keyframes": [k.timestamp for k in escalation.keyframes],
                                     "queue": result.outcome, "into": result.into_id, "shed": result.shed_id,
                                     "queue_reason": result.reason})
                if decision.priority is not None and decision.priority > Priority.AUDIT:
                    run.apply(monitor.escalate(escalation.id, incident_id, decision.reason, decision.flags, report.timestamp, safety))
                if replay and s.teacher.wait_in_replay:
                    queue.wait_idle(timeout_s=max(5.0, s.teacher.timeout_ms / 1000.0 * 2))
                handle_verdicts()

        def handle_verdicts() -> None:
            for result in queue.poll():
                verdict = getattr(result, "verdict", None)
                if verdict is None:
                    decisions_log.write({"kind": "shed", **_shed_json(result)})
                    continue
                summary.verdicts[verdict.kind.value] = summary.verdicts.get(verdict.kind.value, 0) + 1
                for key, value in verdict.timings.items():
                    ollama_timings[f"teacher_{key}"] += value
                decisions_log.write({"kind": "verdict", "t": round(last_ts, 3), "wait_s": round(result.wait_s, 3),
                                     "service_s": round(result.service_s, 3), **verdict.to_json()})
                if verdict.kind == VerdictKind.DISMISSED:
                    policy.suppress(result.escalation.flags, last_ts + s.escalation.suppress_after_dismiss_s, reason=result.escalation.reason)
                run.apply(monitor.apply_verdict(verdict, last_ts))

        switches: list[Any] = []
        switch_lock = threading.Lock()

        def on_switch(event: Any) -> None:  # called on a student worker thread
            with switch_lock:
                switches.append(event)

        if isinstance(self.backends.student, FallbackStudent):
            self.backends.student.set_on_switch(on_switch)

        def handle_switches() -> None:
            with switch_lock:
                pending, switches[:] = list(switches), []
            for sw in pending:
                summary.backend_switches += 1
                log.warning("%s: student switched %s -> %s (%s)", camera, sw.from_backend, sw.to_backend, sw.reason)
                decisions_log.write({"kind": "backend_switch", "camera": camera, "t": round(sw.timestamp, 3),
                                     "from": sw.from_backend, "to": sw.to_backend, "reason": sw.reason})

        frames = source.frames(sampler=sampler)
        try:
            for frame in frames:
                if self.stop.is_set():
                    summary.stopped_early = "interrupted"
                    break
                summary.frames_sampled += 1
                if self.on_progress is not None:
                    self.on_progress(frame.index, source.frame_count)
                decision = gate.check(frame)
                if not decision.passed and monitor.state in _SAFETY_WATCH_STATES:
                    # While a safety pattern is open the student keeps looking, so persistence
                    # is judged on fresh frames rather than on one frame and silence.
                    safety_watch[decision.reason.value] += 1
                    decision = replace(decision, passed=True, reason=GateReason.SAFETY_WATCH)
                if decision.passed:
                    item = encode_frame(frame, decision, s.encode)
                    pool.submit(item)
                    if replay and student_concurrency == 1:
                        handle_reports(pool.drain())
                else:
                    last_ts = max(last_ts, frame.timestamp)
                    run.apply(monitor.tick(frame.timestamp))
                handle_reports(pool.completed())
                handle_verdicts()
                handle_switches()
                if self.display is not None:
                    self.display.show(frame, monitor.state, window.stats() if summary.frames_analysed else None)
                if max_frames is not None and summary.frames_sampled >= max_frames:
                    summary.stopped_early = f"--max-frames {max_frames}"
                    break
            handle_reports(pool.drain())
            handle_switches()
            queue.close(drain=True, timeout_s=max(10.0, s.teacher.timeout_ms / 1000.0 * (queue.state().depth + 1)))
            handle_verdicts()
            end_ts = max(last_ts, source.stats.last_timestamp if hasattr(source.stats, "last_timestamp") else last_ts)
            run.apply(monitor.close(end_ts))
        finally:
            pool.close()
            queue.close(drain=False, timeout_s=1.0)
            self.backends.student.close()
            self.backends.teacher.close()
            source.close()
            summary.frames_read = source.stats.frames_grabbed
            summary.bad_frames = source.stats.bad_frames
            summary.gate = {k: int(v) for k, v in gate.counters.items()}
            for skipped_as, n in safety_watch.items():
                # Frames the gate skipped but the safety watch sent on count as passed, not skipped.
                summary.gate[skipped_as] -= n
                summary.gate[GateReason.SAFETY_WATCH.value] = summary.gate.get(GateReason.SAFETY_WATCH.value, 0) + n
            summary.student_stale_dropped = pool.stats.stale_dropped
            summary.student_latency_ms_mean = round(sum(latencies) / len(latencies), 2) if latencies else 0.0
            summary.queue = queue.summary()
            summary.ollama_timings_ms = {k: round(v, 1) for k, v in ollama_timings.items()}
            summary.source_seconds = last_ts
            summary.wall_seconds = self.clock.monotonic() - wall_start
            events_log.close()
            decisions_log.write({"kind": "summary", **summary.to_json()})
            decisions_log.close()
            write_json_atomically(out_dir / "summary.json", summary.to_json())
        return summary


@dataclass
class _RunState:
    """Turns monitor output into event lines, snapshots and callbacks."""

    summary: RunSummary
    events_log: JsonlWriter
    decisions_log: JsonlWriter
    snapshots: SnapshotWriter
    on_event: EventCallback | None
    current_item: EncodedFrame | None = None
    _snapshot_by_event: dict[str, str] = field(default_factory=dict)

    def apply(self, output: MonitorOutput) -> None:
        for tr in output.transitions:
            # The decision log says why every state change happened, with the figures behind it.
            self.decisions_log.write({"kind": "transition", "camera": tr.camera, "t": round(tr.timestamp, 3),
                                      "from": tr.source, "to": tr.dest, "trigger": tr.trigger,
                                      "reason": tr.reason, "figures": tr.figures})
        for event in output.events:
            if event.phase == "new":
                self.summary.events_by_type[event.type] = self.summary.events_by_type.get(event.type, 0) + 1
                if self.current_item is not None and self.snapshots is not None:
                    path = self.snapshots.save(event, self.current_item)
                    if path:
                        self._snapshot_by_event[event.id] = path
            snapshot = self._snapshot_by_event.get(event.id)
            if snapshot and event.snapshot is None:
                event = replace(event, snapshot=snapshot)
            if event.phase == "end" and event.severity == "alert":
                key = event.review.value
                self.summary.alerts_by_review[key] = self.summary.alerts_by_review.get(key, 0) + 1
            self.events_log.write(event.to_json())
            if self.on_event is not None:
                self.on_event(event)


def _describe_backend(analyzer: Student | Teacher) -> str:
    return f"{analyzer.backend} ({analyzer.model})"


def _shed_json(result: Any) -> dict[str, Any]:
    return {k: v for k, v in getattr(result, "__dict__", {}).items() if isinstance(v, (str, int, float, type(None)))}
