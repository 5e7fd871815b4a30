"""The one module that wires the stages together.

capture → sampler → gate → encode → student pool → window → monitor (states) → escalation
policy → teacher queue → teacher → verdicts back into the monitor → event/decision sinks.

All stateful logic (window, monitor, policy) runs on the caller's thread; the student pool
and the teacher queue are the I/O stages behind bounded queues.  No other module knows this
order.
"""

from __future__ import annotations

import logging
import random
import threading
from collections import Counter, deque
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from pipeline.analyzers.base import Student, Teacher
from pipeline.analyzers.fallback import CircuitBreaker, FallbackStudent
from pipeline.analyzers.offline import OfflineStudent, OfflineTeacher
from pipeline.analyzers.skill_files import load_active_prompt
from pipeline.analyzers.student_pool import StudentPool
from pipeline.clock import Clock, SystemClock
from pipeline.config import CameraConfig, Settings
from pipeline.errors import ConfigError, EdgewatchError, SourceError, UsageError
from pipeline.frames.budget import BudgetDecision, KeyframeBudget
from pipeline.frames.encode import encode_frame, slim_encoded
from pipeline.frames.gate import ChangeGate
from pipeline.frames.motion import MotionObserver
from pipeline.incidents.escalation import EscalationPolicy, Thresholds
from pipeline.incidents.evidence import EvidenceReader, match_safety
from pipeline.incidents.keyframes import build_escalation, pattern_onset
from pipeline.incidents.thresholds import ThresholdController
from pipeline.incidents.periods import mean_luma
from pipeline.incidents.verdicts import coherent, coverage_of
from pipeline.incidents.window import SlidingWindow
from pipeline.learning.agreement_store import StoreError
from pipeline.learning.calibration_map import Learner
from pipeline.records import EncodedFrame, Event, Frame, FrameReport, GateDecision, GateReason, Priority, VerdictKind
from pipeline.sinks.decision_log import (BackendSwitch, DecisionLog, DecisionRecord, EscalationSent, FrameDecision, Notice, Reload,
                                         RunStarted, RunSummaryLine, Shed, SourceChange, StateTransition, ThresholdChangeLine,
                                         VerdictReceived)
from pipeline.sinks.disk_guard import DiskGuard, prune_folder
from pipeline.sinks.files import JsonlWriter, SnapshotWriter, new_run_id, prepare_out_dir, write_json_atomically
from pipeline.sinks.keyframe_archive import KeyframeArchive
from pipeline.sources.capture import Sampler, open_source
from pipeline.sources.live import LiveGrabber
from pipeline.teacher.queue import TeacherQueue
from states.monitor import CameraMonitor, MonitorOutput

log = logging.getLogger("edgewatch.runner")

#: Lag samples kept per camera for the summary: the most recent ones (about 3 hours at 2 fps).
_MAX_LAG_SAMPLES = 20_000
#: Snapshots saved between two retention sweeps of the snapshot folder.
_PRUNE_EVERY = 100
#: Monitor states in which a safety pattern is open and the gate may not starve the student.
_SAFETY_WATCH_STATES = frozenset({"suspicious", "escalated", "alert"})

EventCallback = Callable[[Event], None]
ProgressCallback = Callable[[int, int | None, float, float], None]
"""(frame index, frame count or None, frame timestamp, the source's fps), once per decoded frame of a file."""


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

    if settings.student.backend == "simulated" or settings.teacher.backend == "simulated":
        raise ConfigError("the 'simulated' backend exists only for evaluating routing policy, not for monitoring")

    chosen: dict[str, Any] = {
        "student": OfflineStudent(settings.offline, settings.zones, clock),
        "teacher": OfflineTeacher(settings.offline, settings.zones, clock),
    }
    endpoints = {"student": settings.student, "teacher": settings.teacher}
    fallbacks: dict[str, list[str]] = {}  # problem -> roles that fell back to the offline analyzer because of it
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
        fallbacks.setdefault(problem, []).append(f"{role} ({endpoint.model})")
    fallback = None
    if fallbacks:
        # One line, whatever the number of roles: each distinct problem once, then who stands in.
        parts = [f"{problem}: the {' and the '.join(roles)} {'is' if len(roles) == 1 else 'are'} played by the embedded offline analyzer"
                 for problem, roles in fallbacks.items()]
        fallback = "; ".join(parts) + " — results come from OpenCV rules, not from Gemma"
    return Backends(student=chosen["student"], teacher=chosen["teacher"], notices=notices, fallback=fallback)


def _ollama_analyzer(role: str, settings: Settings, clock: Clock, offline: Any) -> Any:
    from pipeline.analyzers.ollama_client import OllamaStudent, OllamaTeacher
    from pipeline.analyzers.prompts import TEACHER_PROMPT
    if role == "teacher":
        teacher = OllamaTeacher(settings.teacher, TEACHER_PROMPT, clock)
        teacher.warm_up_in_background()
        return teacher
    # The student's system prompt is the active skill version (skills/active_skill.json), never
    # edited by hand; every report records that version.
    primary = OllamaStudent(settings.student, load_active_prompt("student", settings.skills.dir), clock)
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
    budget: dict[str, Any] = field(default_factory=dict)
    thresholds: dict[str, Any] = field(default_factory=dict)
    lag_s: dict[str, float] = field(default_factory=dict)
    """How far analysis ran behind the newest frame (source seconds): p50, p95, max."""
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
    source_truncated: str | None = None
    """Why the source ended before its end (truncated or damaged file, lost stream), else None."""
    reports_by_backend: dict[str, int] = field(default_factory=dict)
    """Student reports by the backend that produced them (``FrameReport.backend``)."""
    disk: dict[str, Any] = field(default_factory=dict)
    run_id: str = ""
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
            f"summary for {self.source} (camera {self.camera}), run {self.run_id}",
            f"  student: {self.student}{_render_backend_counts(self.reports_by_backend)}",
            f"  teacher: {self.teacher}",
            f"  frames read {self.frames_read} (bad {self.bad_frames}), sampled {self.frames_sampled}, "
            f"analysed {self.frames_analysed} (failed {self.student_failures}, stale dropped {self.student_stale_dropped})",
            f"  gate: {gate}",
            *([_render_budget(self.budget)] if self.budget else []),
            f"  events: {events}",
            f"  escalations: {esc}; verdicts: {verdicts}",
            f"  teacher queue: max depth {self.queue.get('depth_max', 0)}, sheds {self.queue.get('sheds', 0)}, merges {self.queue.get('merges', 0)}",
            f"  {self.source_seconds:.1f} s of video in {self.wall_seconds:.2f} s wall time, {self.fps:.1f} frames/s read",
        ]
        in_force = self.thresholds.get("in_force") if self.thresholds else None
        if isinstance(in_force, dict) and isinstance(in_force.get("thresholds"), dict):
            shown = ("min_confidence", "persistence", "audit_every", "bar")
            figures = ", ".join(f"{k} {v}" for k, v in in_force["thresholds"].items() if k in shown)
            per_flag = in_force.get("persistence_k_by_flag") or {}
            if per_flag:
                figures += ", per flag " + ", ".join(f"{f} {k}" for f, k in sorted(per_flag.items()))
            lines.append(f"  thresholds in force (period {in_force.get('period', 'default')}): {figures}")
        if self.lag_s:
            lines.append(f"  analysis lag behind newest frame: p50 {self.lag_s['p50']:.2f} s, max {self.lag_s['max']:.2f} s")
        if self.stopped_early:
            lines.append(f"  stopped early: {self.stopped_early}")
        if self.source_truncated:
            lines.append(f"  source ended early: {self.source_truncated}")
        skipped = self.disk.get("skipped") if self.disk else None
        if skipped or (self.disk and (self.disk.get("lines_buffered_max") or self.disk.get("lines_lost"))):
            lines.append(f"  disk low: skipped {', '.join(f'{k} {v}' for k, v in sorted((skipped or {}).items())) or 'nothing'}; "
                         f"log lines held in memory at most {self.disk.get('lines_buffered_max', 0)}, "
                         f"dropped {self.disk.get('lines_lost', 0)}, not on disk at the end {self.disk.get('lines_unwritten', 0)}")
        lines.append(f"  output: {self.out_dir}")
        return "\n".join(lines)


class Outputs:
    """Where everything the pipeline says goes: JSONL logs, snapshots, MQTT, metrics, the CLI's callback."""

    def __init__(
        self,
        out_dir: Path,
        *,
        on_event: EventCallback | None = None,
        mqtt: Any | None = None,
        metrics: Any | None = None,
        run_id: str = "",
        guard: DiskGuard | None = None,
        retain_bytes: int | None = None,
        retain_s: float | None = None,
        wall: Callable[[], float] | None = None,
    ) -> None:
        self.run_id = run_id
        self.guard = guard
        self.events_log = JsonlWriter(out_dir / "events.jsonl")
        self.decisions_log = DecisionLog(out_dir / "decisions.jsonl")
        self.snapshots = SnapshotWriter(out_dir / "snapshots", root=out_dir, run_id=run_id, guard=guard)
        self.keyframes = KeyframeArchive(out_dir / "keyframes")
        self.on_event = on_event
        self.mqtt = mqtt
        self.metrics = metrics
        self._snapshot_by_event: dict[str, str] = {}
        self._retention = (retain_bytes, retain_s, wall) if retain_bytes is not None and retain_s is not None and wall else None
        self.snapshots_pruned = 0
        self.prune_snapshots()

    def prune_snapshots(self) -> None:
        """Retention: snapshots beyond ``output.retain_mb`` or older than ``output.retain_days`` go, oldest first."""
        if self._retention is None:
            return
        max_bytes, max_age_s, wall = self._retention
        pruned = prune_folder(self.snapshots.folder, max_bytes=max_bytes, max_age_s=max_age_s, now_wall=wall())
        if pruned:
            self.snapshots_pruned += pruned
            log.info("retention: deleted %d old snapshot(s) in %s", pruned, self.snapshots.folder)

    def disk_summary(self) -> dict[str, Any]:
        logs = (self.events_log, self.decisions_log.writer)
        return {**(self.guard.summary() if self.guard is not None else {}),
                "snapshots_pruned": self.snapshots_pruned,
                "lines_buffered_max": max(w.buffered_max for w in logs) if any(w.buffered_max > 1 for w in logs) else 0,
                "lines_lost": sum(w.dropped for w in logs),
                # Lines still held when the summary is made: written if the disk frees up before exit, else lost.
                "lines_unwritten": sum(w.buffered for w in logs)}

    def decision(self, record: DecisionRecord) -> None:
        self.decisions_log.write(record)

    def event(self, event: Event, item: EncodedFrame | None) -> Event:
        if event.phase == "new" and item is not None:
            path = self.snapshots.save(event, item)
            if path:
                self._snapshot_by_event[event.id] = path
                if self.snapshots.saved % _PRUNE_EVERY == 0:
                    self.prune_snapshots()
        snapshot = self._snapshot_by_event.get(event.id)
        if snapshot and event.snapshot is None:
            event = replace(event, snapshot=snapshot)
        if event.phase == "end":
            self._snapshot_by_event.pop(event.id, None)
        line = event.to_json()  # once per event line: the log and MQTT send the same JSON
        self.events_log.write(line)
        if self.mqtt is not None:
            self.mqtt.publish_event(event, line)
        if self.metrics is not None:
            self.metrics.event(event.camera, event.phase)
        if self.on_event is not None:
            self.on_event(event)
        return event

    def state(self, camera: str, state: str, flags: list[str], explanation: str) -> None:
        if self.mqtt is not None:
            self.mqtt.publish_state(camera, state, {"flags": flags, "explanation": explanation})

    def close(self) -> None:
        self.events_log.close()
        self.decisions_log.close()


class CameraPipeline:
    """One camera's stages and state: sampler → gate → encode → student pool → window → monitor → policy.

    Escalations go to the shared teacher queue; the `Runner` routes verdicts back through
    `apply_result`.  Everything here runs on the runner's thread.
    """

    def __init__(
        self,
        camera: str,
        settings: Settings,
        backends: Backends,
        queue: TeacherQueue,
        outputs: Outputs,
        *,
        policy: Any,
        replay: bool,
        description: str,
        sample_fps: float | None = None,
        settle_verdicts: Callable[[], None] | None = None,
        clock: Clock | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        s = settings
        self.camera = camera
        self.stop = stop
        self.settings = settings
        self.backends = backends
        self.queue = queue
        self.outputs = outputs
        self.policy = policy
        self.replay = replay
        self.settle_verdicts = settle_verdicts
        self.sampler = Sampler(sample_fps or s.capture.sample_fps)
        self.gate = ChangeGate(s.gate)
        # With the budget, the gate sees every decoded frame and the budget picks student frames.
        self.budget = KeyframeBudget(s.budget, sample_fps or s.capture.sample_fps) if s.budget.enabled else None
        # The dense observer sees decoded frames between samples; its record rides on the frames the student gets.
        self.motion = MotionObserver(width=s.motion.width, fps=s.motion.fps) if s.motion.enabled else None
        self._observed: Frame | None = None
        """The newest decoded frame, with the observer's record, until the student has seen it."""
        self._falls_looked_at: set[tuple[int, float]] = set()
        self.student_concurrency = s.student.max_concurrent if backends.student.backend != "offline" else 1
        self.pool = StudentPool(backends.student, self.student_concurrency, drop_stale=not replay)
        self.summary = RunSummary(
            source=description,
            camera=camera,
            student=_describe_backend(backends.student),
            teacher=_describe_backend(backends.teacher),
        )
        self.last_ts = 0.0
        self.last_frame_wall: float | None = None
        self._latency_total_ms = 0.0
        self._reports_by_backend: Counter[str] = Counter()
        self._timings: Counter[str] = Counter()
        self._safety_watch: Counter[str] = Counter()  # skip reason -> frames the safety watch sent on anyway
        self._escalations = 0
        self._current_item: EncodedFrame | None = None
        self._explanation = ""
        # The newest frame the gate passed and the budget held back: the budget's final look at the end.
        self._held: tuple[Frame, GateDecision] | None = None
        self.newest_frame_ts = 0.0
        self.lags: deque[float] = deque(maxlen=_MAX_LAG_SAMPLES)
        self.learner: Any | None = None
        """Shared agreement store + calibration (`tools.calibration.Learner`), set by the runner."""
        # The one owner of the thresholds in force (static, or following the time of day, load and
        # the teacher's verdicts); the policy reads them from it, a reload goes through it.  Baseline
        # policies under evaluation have their own fixed knobs.
        self.thresholds = ThresholdController(s, camera, clock or SystemClock(), live=not replay)
        if isinstance(policy, EscalationPolicy):
            policy.follow(self.thresholds)
        # Each report's safety evidence is read once, as it enters the window; the monitor and the
        # policy read that record, and the same persistence rule from the same thresholds.
        self.window = SlidingWindow(camera, s.window.window_s, reader=EvidenceReader(s.escalation.safety_triggers))
        self.monitor = CameraMonitor(
            camera,
            s.states,
            safety_triggers=s.escalation.safety_triggers,
            rearm_after_s=s.escalation.rearm_after_s,
            thresholds=self.thresholds,
        )

    # -- frames in ------------------------------------------------------------------------

    @property
    def capture_sampler(self) -> Sampler | None:
        """The sampler capture applies before decoding (none with the budget: the gate sees every frame;
        none with the motion observer: it sees frames between samples)."""
        return None if (self.budget is not None or self.motion is not None) else self.sampler

    def offer(self, frame: Frame) -> bool:
        """A decoded frame; returns whether it was sampled.  Sampling happens in capture for files without the observer."""
        self.newest_frame_ts = max(self.newest_frame_ts, frame.timestamp)
        frame, look = self._observe(frame)
        if self.budget is None and not self.sampler.accept(frame.timestamp) and not look:
            return False
        self.process(frame, look=look)
        return True

    def _observe(self, frame: Frame) -> tuple[Frame, bool]:
        """Run the dense observer when due; the frame carries its newest record.  True when the observer
        has just seen a fall: the student looks at this frame now rather than at the next sample."""
        if self.motion is None:
            return frame, False
        if self.motion.wants(frame.timestamp):
            self.motion.observe(frame.image, frame.timestamp)
        record = self.motion.latest
        frame = replace(frame, motion=record)
        self._observed = frame
        fall = record.fall if record is not None else None
        if fall is None or (fall.track, fall.onset) in self._falls_looked_at:
            return frame, False
        self._falls_looked_at.add((fall.track, fall.onset))
        return frame, True

    def process(self, frame: Frame, *, look: bool = False) -> None:
        """A sampled frame: gate it, then encode and send it to the student, or let time pass."""
        self.summary.frames_sampled += 1
        self.newest_frame_ts = max(self.newest_frame_ts, frame.timestamp)
        decision = self.gate.check(frame)
        if self.budget is not None:
            admitted = self.budget.admit(decision, frame.timestamp, safety_active=self.monitor.state in _SAFETY_WATCH_STATES)
            if admitted.send:
                self._held = None
            elif decision.passed:
                self._held = (frame, decision)
            decision = _as_sent(decision, admitted)
        elif not decision.passed and (look or self.monitor.state in _SAFETY_WATCH_STATES):
            # While a safety pattern is open the student keeps looking, so persistence is
            # judged on fresh frames rather than on one frame and silence.
            self._safety_watch[decision.reason.value] += 1
            decision = replace(decision, passed=True, reason=GateReason.SAFETY_WATCH)
        if self.outputs.metrics is not None:
            # outcome = the gate's verdict on the sampled frame (change, static, heartbeat, ...)
            self.outputs.metrics.frame(self.camera, decision.reason.value if decision.passed else "skipped_" + decision.reason.value)
        if decision.passed:
            self._observed = None
            self.pool.submit(encode_frame(frame, decision, self.settings.encode))
            if self.replay and self.student_concurrency == 1:
                self._handle_reports(self.pool.drain())
        else:
            self.last_ts = max(self.last_ts, frame.timestamp)
            self._apply(self.monitor.tick(frame.timestamp))
        self.pump()

    def pump(self) -> None:
        """Handle whatever student reports are ready, in frame order."""
        self._handle_reports(self.pool.completed())

    # -- reports → window → monitor → policy ------------------------------------------------

    def _handle_reports(self, ready: list[tuple[EncodedFrame, FrameReport]]) -> None:
        s = self.settings
        for item, report in ready:
            self.summary.frames_analysed += 1
            self._latency_total_ms += report.latency_ms
            self._reports_by_backend[report.backend] += 1
            for key, value in report.timings.items():
                self._timings[key] += value
            if report.error:
                self.summary.student_failures += 1
            if self.outputs.metrics is not None:
                self.outputs.metrics.student_latency(report.latency_ms / 1000.0)
                self.outputs.metrics.frame(self.camera, "analysed" if not report.error else "failed")
            self.last_ts = max(self.last_ts, report.timestamp)
            # How far the analysis runs behind the newest frame the camera gave (source seconds).
            self.lags.append(max(0.0, self.newest_frame_ts - report.timestamp))
            full_item, item = item, slim_encoded(item)  # the window keeps what the model saw, not the full decode
            self._current_item = item
            if self.learner is not None:
                report = self.learner.calibrate(report)  # unchanged unless learning.calibrate and enough examples
                if self.learner.applying and isinstance(self.policy, EscalationPolicy):
                    # The policy reads its thresholds on the scale the reports are now on (docs/LEARNING.md).
                    self.policy.confidence_calibrated = True
            stats = self.window.add(report, item)
            # Alerts left unreviewed since an earlier frame (raised over gate-skipped frames, or on
            # one frame the gate backed) go to the teacher with this one.
            unreviewed = self.monitor.unreviewed_alerts()
            # The frame's event lines wait for the policy: an alert it sends to the teacher on this
            # frame is written once, pending_review from its first line (`MonitorOutput.then`).
            frame_out = self.monitor.update(stats)
            self._apply(MonitorOutput(frame_out.transitions))
            queue_state = self.queue.state()
            self._adapt(report, full_item, queue_state)
            decision = self.policy.evaluate(stats, queue_state, unreviewed & self.monitor.unreviewed_alerts())
            self.outputs.decision(FrameDecision(
                camera=self.camera, t=round(report.timestamp, 3), frame=report.frame_index, escalate=decision.escalate,
                reason=decision.reason, priority=decision.priority.name if decision.priority is not None else None,
                flags=sorted(decision.flags), thresholds=self.policy.thresholds_in_force(), queue_depth=queue_state.depth,
                student=report.to_json(), gate_hint=stats.scene_change_kind,
            ))
            sent = self._escalate(decision, report) if decision.escalate else MonitorOutput()
            self._apply(MonitorOutput(events=frame_out.events).then(sent))
            if decision.escalate:
                self._await_verdict()

    def _adapt(self, report: FrameReport, item: EncodedFrame, queue_state: Any) -> None:
        if not self.settings.adaptive.enabled:
            return
        in_force, changes = self.thresholds.update(
            report.timestamp,
            brightness=mean_luma(item.frame.image),
            queue=queue_state,
            student_lag_s=max(0.0, self.newest_frame_ts - report.timestamp),
        )
        for change in changes:
            self.outputs.decision(ThresholdChangeLine.of(change))
        if in_force.sample_fps != self.sampler.sample_fps:
            self.sampler.sample_fps, self.sampler.period = in_force.sample_fps, 1.0 / in_force.sample_fps
        if in_force.gate_block_min_change != self.gate.cfg.block_min_change:
            # The period's noise floor (a grainy night image needs a higher one); the gate reads it per frame.
            self.gate.cfg = self.gate.cfg.model_copy(update={"block_min_change": in_force.gate_block_min_change})

    def _escalate(self, decision: Any, report: FrameReport) -> MonitorOutput:
        """Send the window to the teacher; the monitor's output for it (applied by the caller)."""
        s = self.settings
        self._escalations += 1
        incident_id = self.monitor.open_incident_id or f"{self.camera}-inc-{self._escalations:05d}"
        escalation = build_escalation(
            escalation_id=f"{self.camera}-esc-{self._escalations:05d}",
            camera=self.camera,
            incident_id=incident_id,
            decision=decision,
            entries=self.window.entries(),
            max_keyframes=s.teacher.max_keyframes,
            created_at=report.timestamp,
            pattern_start=pattern_onset(self.window.entries(), decision.flags, s.escalation.rearm_after_s),
        )
        counts = self.summary.escalations_by_reason
        counts[decision.reason] = counts.get(decision.reason, 0) + 1
        if self.outputs.metrics is not None:
            self.outputs.metrics.escalation(decision.reason)
        if self.outputs.guard is None or self.outputs.guard.allow("keyframe_archive"):
            self.outputs.keyframes.save(escalation)  # what the teacher saw, for the review page
        result = self.queue.submit(escalation)
        self.outputs.decision(EscalationSent(
            id=escalation.id, camera=self.camera, t=round(report.timestamp, 3), reason=decision.reason,
            priority=decision.priority.name if decision.priority else None, incident_id=incident_id,
            keyframes=[k.timestamp for k in escalation.keyframes], queue=result.outcome, into=result.into_id,
            shed=result.shed_id, queue_reason=result.reason,
        ))
        if decision.priority is None or decision.priority <= Priority.AUDIT:
            return MonitorOutput()
        return self.monitor.escalate(escalation.id, incident_id, decision.reason, decision.flags, report.timestamp,
                                     decision.priority == Priority.SAFETY)

    def _await_verdict(self) -> None:
        """A replay waits for the verdict so that it is applied at the same frame every run."""
        s = self.settings
        if self.replay and s.teacher.wait_in_replay:
            self.queue.wait_idle(timeout_s=max(5.0, s.teacher.timeout_ms / 1000.0 * 2), stop=self.stop)
            if self.settle_verdicts is not None:
                self.settle_verdicts()

    # -- verdicts and switches back in ------------------------------------------------------

    def apply_result(self, result: Any) -> None:
        verdict = getattr(result, "verdict", None)
        if verdict is None:
            self.outputs.decision(Shed.of(result))
            if self.outputs.metrics is not None:
                self.outputs.metrics.shed()
            return
        # What a verdict may change (pipeline/incidents/verdicts.py): a self-contradicting one is
        # unverified, and a dismissal covers only the frames the teacher saw.
        verdict = coherent(verdict, self._match_safety(result.escalation.flags, ()), self._match_safety)
        coverage = coverage_of(result.escalation, verdict, self._match_safety)
        kind = verdict.kind.value
        self.summary.verdicts[kind] = self.summary.verdicts.get(kind, 0) + 1
        for key, value in verdict.timings.items():
            self._timings[f"teacher_{key}"] += value
        if self.outputs.metrics is not None:
            self.outputs.metrics.verdict(kind)
        self.outputs.decision(VerdictReceived(t=round(self.last_ts, 3), wait_s=round(result.wait_s, 3),
                                              service_s=round(result.service_s, 3), verdict=verdict.to_json(),
                                              covers=coverage.to_json() if coverage is not None else None))
        if verdict.kind == VerdictKind.DISMISSED:
            self.policy.suppress(result.escalation.flags, self.last_ts + self.settings.escalation.suppress_after_dismiss_s,
                                 reason=result.escalation.reason)
            if coverage is not None:
                self.policy.cover(coverage)
        if verdict.explanation:
            self._explanation = verdict.explanation
        if self.learner is not None:
            # Every verdict is a labelled example for calibration and fine-tuning data — when the disk has room.
            self._record_example(result.escalation, verdict)
        if self.settings.adaptive.enabled:
            self.thresholds.record_verdict(result.escalation.flags, result.escalation.reason, verdict.kind.value,
                                         self.last_ts, verdict.safety_flags)
        self._apply(self.monitor.apply_verdict(verdict, self.last_ts, coverage))

    def _match_safety(self, flags: Any, observations: Any) -> frozenset[str]:
        return match_safety(flags, observations, self.window.reader.triggers)

    def _record_example(self, escalation: Any, verdict: Any) -> None:
        guard = self.outputs.guard
        if verdict.kind != VerdictKind.UNVERIFIED and guard is not None and not guard.allow("agreement_store"):
            return
        try:
            self.learner.record(escalation, verdict, thresholds=self.policy.thresholds_in_force(),
                                skill_version=self.backends.student.prompt_version)
        except StoreError as exc:  # a full or broken disk costs the example, never the monitoring
            if guard is not None:
                guard.note_skipped("agreement_store")
            log.warning("%s: verdict not kept in the agreement store: %s", self.camera, exc)

    def backend_switch(self, switch: Any) -> None:
        self.summary.backend_switches += 1
        log.warning("%s: student switched %s -> %s (%s)", self.camera, switch.from_backend, switch.to_backend, switch.reason)
        self.outputs.decision(BackendSwitch(camera=self.camera, t=round(switch.timestamp, 3), from_backend=switch.from_backend,
                                            to_backend=switch.to_backend, reason=switch.reason))

    def source_event(self, event: Any) -> None:
        self.outputs.decision(SourceChange(event=event.kind, camera=event.camera, t=round(event.timestamp, 3),
                                           wall=round(event.wall, 3), detail=event.detail))
        if self.outputs.metrics is not None:
            self.outputs.metrics.source_event(self.camera, event.kind)
        log.warning("%s: %s %s", self.camera, event.kind, event.detail)

    # -- the end ----------------------------------------------------------------------------

    def end_of_source(self) -> None:
        """The source ended (or stopped): the budget's final look, then every outstanding student report."""
        if self.budget is not None and self._held is not None:
            frame, decision = self._held
            self._held = None
            final = self.budget.finish()
            if final.send:
                self.pool.submit(encode_frame(frame, _as_sent(decision, final), self.settings.encode))
        self._final_motion_look()
        self._handle_reports(self.pool.drain())

    def _final_motion_look(self) -> None:
        """The video ended while the observer still sees someone down (or falling): the student looks at
        the last frame, so a fall in the last second of a clip can still raise its alert."""
        if self.motion is None or self._observed is None:
            return
        record = self.motion.finish(self._observed.timestamp)
        if record is None or record.fall is None:
            return
        frame, self._observed = replace(self._observed, motion=record), None
        self.process(frame, look=True)

    def finish(self, end_ts: float) -> None:
        self._apply(self.monitor.close(max(self.last_ts, end_ts)))
        self.pool.close()
        s = self.summary
        s.gate = {k: int(v) for k, v in self.gate.counters.items()}
        for skipped_as, n in self._safety_watch.items():
            # Frames the gate skipped but the safety watch sent on count as passed, not skipped.
            s.gate[skipped_as] -= n
            s.gate[GateReason.SAFETY_WATCH.value] = s.gate.get(GateReason.SAFETY_WATCH.value, 0) + n
        if self.budget is not None:
            s.budget = self.budget.counters
        if self.settings.adaptive.enabled:
            self.thresholds.save()
            s.thresholds = self.thresholds.summary()
        s.student_stale_dropped = self.pool.stats.stale_dropped
        s.student_latency_ms_mean = round(self._latency_total_ms / s.frames_analysed, 2) if s.frames_analysed else 0.0
        s.reports_by_backend = dict(self._reports_by_backend)
        s.ollama_timings_ms = {k: round(v, 1) for k, v in self._timings.items()}
        if self.lags:
            ordered = sorted(self.lags)
            s.lag_s = {"p50": round(ordered[len(ordered) // 2], 3), "p95": round(ordered[int(len(ordered) * 0.95)], 3),
                       "max": round(ordered[-1], 3)}
        s.source_seconds = self.last_ts

    def health(self) -> dict[str, Any]:
        return {"state": self.monitor.state, "backend": self.backends.student.backend,
                "analysed": self.summary.frames_analysed, "source_t": round(self.last_ts, 3)}

    def _apply(self, output: MonitorOutput) -> None:
        for tr in output.transitions:
            # The decision log says why every state change happened, with the figures behind it.
            self.outputs.decision(StateTransition.of(tr))
        for event in output.events:
            if event.phase == "new":
                counts = self.summary.events_by_type
                counts[event.type] = counts.get(event.type, 0) + 1
            if event.phase == "end" and event.severity == "alert":
                key = event.review.value
                self.summary.alerts_by_review[key] = self.summary.alerts_by_review.get(key, 0) + 1
            self.outputs.event(event, self._current_item)
        if output.transitions or output.events:
            flags = sorted(self.window.stats().active_flags) if self.summary.frames_analysed else []
            self.outputs.state(self.camera, self.monitor.state, flags, self._explanation)


def _render_backend_counts(counts: dict[str, int]) -> str:
    """`` — reports: ollama 6, offline 59 after the breaker opened``: who really answered, from the reports."""
    if not counts:
        return ""
    if len(counts) == 1:
        return f" — {next(iter(counts.values()))} reports"
    ordered = sorted(counts.items(), key=lambda kv: (kv[0] == "offline", kv[0]))
    parts = [f"{backend} {n}" + (" after the breaker opened" if backend == "offline" else "") for backend, n in ordered]
    return " — reports: " + ", ".join(parts)


def _render_budget(counters: dict[str, Any]) -> str:
    def pairs(key: str) -> str:
        return ", ".join(f"{k} {v}" for k, v in sorted(counters.get(key, {}).items())) or "none"

    return f"  keyframe budget: sent {counters.get('frames_sent', 0)} ({pairs('sent')}); held back: {pairs('budget_dropped')}"


def _as_sent(decision: GateDecision, admitted: BudgetDecision) -> GateDecision:
    """The gate's decision as the budget settled it: passed only when sent, and a global change the budget
    held back (it goes with a later frame) still marked as one, so the window hears of it."""
    if admitted.send and admitted.global_kind is not None:
        return replace(decision, passed=True, reason=GateReason.GLOBAL_CHANGE, global_kind=admitted.global_kind)
    return replace(decision, passed=admitted.send)


class Runner:
    """Runs sources through the pipeline: one recorded file or stream (`run`), or several live cameras (`run_cameras`)."""

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
        self._pending_settings: Settings | None = None
        self.learner: Any | None = None
        self._reload_lock = threading.Lock()
        self.run_id = new_run_id(self.clock.wall())
        """This run's id: in the summary, the decision log's first line and snapshot names that would collide."""

    # -- shared parts -------------------------------------------------------------------------

    def request_reload(self, settings: Settings) -> None:
        """SIGHUP: new thresholds, zones and states take effect at the next frame; cameras keep running."""
        with self._reload_lock:
            self._pending_settings = settings

    def _apply_reload(self, pipelines: dict[str, CameraPipeline]) -> None:
        with self._reload_lock:
            new, self._pending_settings = self._pending_settings, None
        if new is None:
            return
        for pipe in pipelines.values():
            for change in pipe.thresholds.reload(new, pipe.last_ts):
                pipe.outputs.decision(ThresholdChangeLine.of(change))
            pipe.monitor.cfg = new.states
            pipe.settings = pipe.settings.model_copy(update={"escalation": new.escalation, "states": new.states, "zones": new.zones})
        for analyzer in (self.backends.student, self.backends.teacher):
            book = getattr(analyzer, "zones", None)
            if book is not None and hasattr(book, "set_default"):
                book.set_default(new.zones)
        if isinstance(self.backends.student, FallbackStudent) and hasattr(self.backends.student.primary, "set_prompt"):
            # The active skill may have changed (`skills promote` / `rollback`): load it again.
            try:
                self.backends.student.primary.set_prompt(load_active_prompt("student", new.skills.dir))
            except Exception as exc:  # a broken skills folder keeps the prompt in use
                log.error("reload: active skill not loaded, keeping %s: %s", self.backends.student.prompt_version, exc)
        self.settings = self.settings.model_copy(update={"escalation": new.escalation, "states": new.states, "zones": new.zones})
        log.warning("configuration reloaded: thresholds, states and zones updated for %d camera(s)", len(pipelines))
        for pipe in pipelines.values():
            pipe.outputs.decision(Reload(camera=pipe.camera, t=round(pipe.last_ts, 3),
                                         thresholds=pipe.policy.thresholds_in_force()))

    def _wire_switches(self, pipelines: dict[str, CameraPipeline]) -> Callable[[], None]:
        """Backend switches happen on student threads; they are handed to the runner's thread."""
        switches: list[Any] = []
        lock = threading.Lock()

        def on_switch(event: Any) -> None:
            with lock:
                switches.append(event)

        if isinstance(self.backends.student, FallbackStudent):
            self.backends.student.set_on_switch(on_switch)

        def handle() -> None:
            with lock:
                pending, switches[:] = list(switches), []
            for sw in pending:
                # A switch concerns the shared student; every camera's log records it.
                for pipe in pipelines.values():
                    pipe.backend_switch(sw)

        return handle

    def _open_outputs(self) -> tuple[Path, Outputs, Any, Any]:
        s = self.settings
        out_dir = prepare_out_dir(Path(s.output.out_dir))
        mqtt = metrics = server = None
        if s.mqtt.enabled:
            from pipeline.sinks.mqtt import MqttSink

            mqtt = MqttSink.from_config(s.mqtt, clock=self.clock)
        if s.metrics.enabled:
            from pipeline.sinks.metrics import Metrics

            metrics = Metrics()
        guard = DiskGuard(out_dir, s.output.min_free_mb, self.clock)
        if metrics is not None:
            guard.on_skip = metrics.disk_skipped
        outputs = Outputs(out_dir, on_event=self.on_event, mqtt=mqtt, metrics=metrics, run_id=self.run_id, guard=guard,
                          retain_bytes=int(s.output.retain_mb * 2**20), retain_s=s.output.retain_days * 86400.0, wall=self.clock.wall)
        outputs.decision(RunStarted(run_id=self.run_id, wall=round(self.clock.wall(), 3)))
        try:
            self.learner = Learner.open(s, self.clock, on_change=outputs.decision)
        except StoreError as exc:  # the store is optional; monitoring is not
            log.warning("learning off for this run: %s", exc)
            self.learner = None
        for notice in [self.backends.fallback, *self.backends.notices]:
            if notice:
                outputs.decision(Notice(message=notice))
        return out_dir, outputs, mqtt, metrics

    def _start_metrics_server(self, metrics: Any, health: Callable[[], dict[str, Any]]) -> Any:
        if metrics is None:
            return None
        from pipeline.sinks.metrics import MetricsServer

        server = MetricsServer(metrics, health, host=self.settings.metrics.host, port=self.settings.metrics.port)
        log.warning("metrics on %s/metrics, health on %s/healthz", server.url, server.url)
        return server

    def _teacher_queue(self, metrics: Any, pipelines: dict[str, CameraPipeline]) -> TeacherQueue:
        """The box's teacher queue; with ``fleet.redis_url`` the Redis bus in front of it (docs/FLEET.md)."""
        queue = TeacherQueue(self.backends.teacher, self.settings.teacher, self.clock)
        if not self.settings.fleet.redis_url:
            return queue
        from pipeline.fleet.edge import open_fleet_queue

        return open_fleet_queue(queue, self.settings, self.clock, metrics=metrics, pipelines=pipelines)  # type: ignore[return-value]

    def _route(self, queue: TeacherQueue, pipelines: dict[str, CameraPipeline]) -> None:
        for result in queue.poll():
            escalation = getattr(result, "escalation", None)
            camera = escalation.camera if escalation is not None else getattr(result, "camera", None)
            pipe = pipelines.get(camera) if camera is not None else None
            if pipe is None:
                log.warning("teacher result for unknown camera %r dropped", camera)
                continue
            pipe.apply_result(result)

    def _finish(self, queue: TeacherQueue, pipelines: dict[str, CameraPipeline], outputs: Outputs, out_dir: Path,
                end_ts: dict[str, float], wall_start: float, mqtt: Any, server: Any) -> None:
        s = self.settings
        if self.stop.is_set():
            # SIGTERM/SIGINT: drain for at most the grace period, then what is left is answered 'unverified'.
            queue.close(timeout_s=s.shutdown.grace_s, cancel=True)
        else:
            queue.close(drain=True, timeout_s=max(10.0, s.teacher.timeout_ms / 1000.0 * (queue.state().depth + 1)))
        self._route(queue, pipelines)
        for camera, pipe in pipelines.items():
            pipe.finish(end_ts.get(camera, pipe.last_ts))
            pipe.summary.queue = queue.summary()
            pipe.summary.wall_seconds = self.clock.monotonic() - wall_start
            pipe.summary.out_dir = str(out_dir)
            pipe.summary.run_id = self.run_id
            pipe.summary.disk = outputs.disk_summary()
        for analyzer in (self.backends.student, self.backends.teacher):
            try:
                analyzer.close()
            except Exception:  # closing a model client must not cost the summary
                log.exception("closing %s failed", analyzer.backend)
        if self.learner is not None:
            self.learner.close()
        summaries = [p.summary.to_json() for p in pipelines.values()]
        for summary in summaries:
            outputs.decision(RunSummaryLine(summary=summary))
        outputs.close()
        if not write_json_atomically(out_dir / "summary.json", summaries[0] if len(summaries) == 1 else {"cameras": summaries}):
            log.warning("summary.json not written in %s (the summary is printed on stdout)", out_dir)
        if mqtt is not None:
            mqtt.close()
        if server is not None:
            server.close()

    # -- one source ---------------------------------------------------------------------------

    def run(self, source_spec: str, *, max_frames: int | None = None) -> RunSummary:
        """One source.  Files and image folders are replayed; webcams and streams run live, with reconnects."""
        if is_live_spec(source_spec):
            # A stream that is not up yet (a box that boots before its cameras) is waited for: the
            # grabber retries with backoff and /healthz says the camera is waiting.  A webcam index
            # names a local device: an absent one is one clear error at once.
            if not is_stream_url(source_spec):
                open_source(source_spec, camera_id=self.settings.camera_id, cfg=self.settings.capture, clock=self.clock).close()
            camera = CameraConfig(id=self.settings.camera_id, source=source_spec)
            return self.run_cameras([camera], max_frames=max_frames)[0]
        s = self.settings
        camera = s.camera_id
        prepare_out_dir(Path(s.output.out_dir))  # before opening the source: fail fast on an unwritable folder
        source = open_source(source_spec, camera_id=camera, cfg=s.capture, clock=self.clock)
        out_dir, outputs, mqtt, metrics = self._open_outputs()
        replay = not s.capture.realtime
        pipelines: dict[str, CameraPipeline] = {}
        queue = self._teacher_queue(metrics, pipelines)
        pipe = CameraPipeline(camera, s, self.backends, queue, outputs, policy=self.policy_factory(s, camera),
                              replay=replay, description=source.description,
                              settle_verdicts=lambda: self._route(queue, pipelines), clock=self.clock, stop=self.stop)
        pipelines[camera] = pipe
        pipe.learner = self.learner
        if mqtt is not None:
            mqtt.announce([camera], sorted(pipe.monitor.triggers))
        server = self._start_metrics_server(metrics, lambda: {"cameras": {camera: {**pipe.health(), "stale": False}},
                                                              "queue_depth": queue.state().depth})
        switches = self._wire_switches(pipelines)
        wall_start = self.clock.monotonic()
        try:
            for frame in source.frames(sampler=pipe.capture_sampler):
                if self.stop.is_set():
                    pipe.summary.stopped_early = "interrupted"
                    break
                self._apply_reload(pipelines)
                if self.on_progress is not None:
                    self.on_progress(frame.index, source.frame_count, frame.timestamp, source.fps)
                if pipe.capture_sampler is None:
                    pipe.offer(frame)
                else:
                    pipe.process(frame)
                self._route(queue, pipelines)
                switches()
                if metrics is not None:
                    metrics.set_teacher_queue_depth(queue.state().depth)
                    if mqtt is not None:
                        metrics.set_mqtt_queue(len(mqtt.queue), mqtt.queue.stats.dropped_oldest)
                if self.display is not None:
                    self.display.show(frame, pipe.monitor.state, pipe.window.stats() if pipe.summary.frames_analysed else None)
                if max_frames is not None and pipe.summary.frames_sampled >= max_frames:
                    pipe.summary.stopped_early = f"--max-frames {max_frames}"
                    break
            pipe.end_of_source()
            switches()
        finally:
            source.close()
            pipe.summary.frames_read = source.stats.frames_grabbed
            pipe.summary.bad_frames = source.stats.bad_frames
            if source.stats.ended_early:
                pipe.summary.source_truncated = source.stats.end_reason or "ended early"
            self._finish(queue, pipelines, outputs, out_dir, {camera: source.stats.last_timestamp or 0.0},
                         wall_start, mqtt, server)
        if source.stats.frames_read == 0 and source.stats.bad_frames:
            raise SourceError(f"no readable frame in {source.description}: {source.stats.bad_frames} unreadable")
        return pipe.summary

    # -- several live cameras ------------------------------------------------------------------

    def run_cameras(self, cameras: list[Any], *, max_frames: int | None = None, duration_s: float | None = None) -> list[RunSummary]:
        """Live cameras together: a grabber thread each (newest frame wins, reconnects), one shared
        student and teacher queue (fair across cameras), all stateful logic on this thread."""
        s = self.settings
        if not cameras:
            raise UsageError("no cameras configured: give a SOURCE or a config with a cameras: list")
        out_dir, outputs, mqtt, metrics = self._open_outputs()
        pipelines: dict[str, CameraPipeline] = {}
        queue = self._teacher_queue(metrics, pipelines)
        grabbers: dict[str, Any] = {}
        rng = random.Random()
        for cam in cameras:
            capture_cfg = s.capture.model_copy(update={"realtime": True})  # a looped file plays like a live camera
            grabbers[cam.id] = LiveGrabber(
                cam.source, camera_id=cam.id, cfg=capture_cfg, clock=self.clock,
                stale_after_s=s.live.stale_after_s, backoff_initial_s=s.live.backoff_initial_s,
                backoff_max_s=s.live.backoff_max_s, rng=rng,
            )
            pipelines[cam.id] = CameraPipeline(
                cam.id, s, self.backends, queue, outputs, policy=self.policy_factory(s, cam.id), replay=False,
                description=grabbers[cam.id].health().get("source", cam.id), sample_fps=cam.sample_fps, clock=self.clock,
                stop=self.stop,
            )
            pipelines[cam.id].learner = self.learner
            if cam.zones is not None:
                for analyzer in (self.backends.student, self.backends.teacher):
                    book = getattr(analyzer, "zones", None)
                    if book is not None:
                        book.set_zones(cam.id, cam.zones)
        if mqtt is not None:
            triggers = sorted(next(iter(pipelines.values())).monitor.triggers)
            mqtt.announce(list(pipelines), triggers)

        def health() -> dict[str, Any]:
            return {"cameras": {cid: {**pipelines[cid].health(), **grabbers[cid].health()} for cid in pipelines},
                    "queue_depth": queue.state().depth}

        server = self._start_metrics_server(metrics, health)
        review = None
        if s.web.enabled:  # the review page (docs/REVIEW.md), live: feedback goes to these controllers
            from pipeline.web import start_review_server

            review = start_review_server(s, out_dir, clock=self.clock, health=health, mqtt=mqtt,
                                         latest_jpeg=lambda cid: getattr(pipelines[cid]._current_item, "jpeg", None),
                                         controllers={cid: p.thresholds for cid, p in pipelines.items()} if s.adaptive.enabled else {})
        switches = self._wire_switches(pipelines)
        wall_start = self.clock.monotonic()
        last_index = {cid: -1 for cid in grabbers}
        for grabber in grabbers.values():
            grabber.start()
        try:
            while not self.stop.is_set():
                self._apply_reload(pipelines)
                got = False
                for cid, grabber in grabbers.items():
                    pipe = pipelines[cid]
                    for event in grabber.poll():
                        pipe.source_event(event)
                    frame = grabber.latest(after_index=last_index[cid])
                    if frame is not None:
                        last_index[cid] = frame.index
                        got = True
                        pipe.offer(frame)
                    pipe.pump()
                self._route(queue, pipelines)
                switches()
                if metrics is not None:
                    metrics.set_teacher_queue_depth(queue.state().depth)
                    if mqtt is not None:
                        metrics.set_mqtt_queue(len(mqtt.queue), mqtt.queue.stats.dropped_oldest)
                if max_frames is not None and all(p.summary.frames_sampled >= max_frames for p in pipelines.values()):
                    for p in pipelines.values():
                        p.summary.stopped_early = f"--max-frames {max_frames}"
                    break
                if duration_s is not None and self.clock.monotonic() - wall_start >= duration_s:
                    break
                if not got:
                    self.stop.wait(0.005)  # nothing new from any camera: don't spin
            if self.stop.is_set():
                for p in pipelines.values():
                    p.summary.stopped_early = "interrupted"
        finally:
            for grabber in grabbers.values():
                grabber.close()
            for cid, pipe in pipelines.items():
                pipe.end_of_source()
                stats = grabbers[cid].stats
                pipe.summary.frames_read = stats.frames_received
                pipe.summary.student_stale_dropped += stats.frames_overwritten
            switches()
            if review is not None:
                review.close()
            self._finish(queue, pipelines, outputs, out_dir, {}, wall_start, mqtt, server)
        return [p.summary for p in pipelines.values()]


def is_stream_url(spec: str) -> bool:
    """A network stream (rtsp://, http://, ...), waited for when it is not up yet."""
    return "://" in spec and not spec.strip().lower().startswith("file://")


def is_live_spec(spec: str) -> bool:
    """A webcam index or a stream URL (not a file or folder)."""
    return spec.strip().isdigit() or "://" in spec


def _describe_backend(analyzer: Student | Teacher) -> str:
    return f"{analyzer.backend} ({analyzer.model})"

