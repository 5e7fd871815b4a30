"""One camera's chain, wired in data-flow order: sampler → gate → encode → student pool → window (one
SafetyEvidence per frame) → monitor → policy → keyframes → teacher queue; verdicts come back through
`apply_result`.  Everything here runs on the runner's thread; `pipeline.runner` drives one or several.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter, deque
from dataclasses import replace
from typing import Any, Callable
from pipeline.analyzers.student_pool import StudentPool
from pipeline.clock import Clock, SystemClock
from pipeline.config.settings import Settings
from pipeline.frames.budget import BudgetDecision, KeyframeBudget
from pipeline.frames.encode import encode_frame, slim_encoded
from pipeline.frames.gate import ChangeGate
from pipeline.frames.motion import MotionObserver
from pipeline.incidents.activity_review import activity_looks
from pipeline.incidents.escalation import EscalationPolicy
from pipeline.incidents.evidence import EvidenceReader, match_safety
from pipeline.incidents.keyframes import build_escalation, pattern_onset, unseen_start
from pipeline.incidents.thresholds import ThresholdController
from pipeline.incidents.periods import mean_luma
from pipeline.incidents.verdicts import coherent, coverage_of, seen_until, unnamed_coverage
from pipeline.incidents.window import SlidingWindow
from pipeline.learning.agreement_store import StoreError
from pipeline.records import EncodedFrame, Frame, FrameReport, GateDecision, GateReason, Priority, VerdictKind
from pipeline.sinks.decision_log import (BackendSwitch, EscalationSent, FrameDecision, Shed, SourceChange, StateTransition, ThresholdChangeLine,
                                         VerdictReceived)
from pipeline.sources.capture import Sampler
from pipeline.teacher.queue import TeacherQueue
from states.monitor import CameraMonitor
from states.monitor_records import MonitorOutput
from pipeline.analyzers.backends import Backends, describe_backend
from pipeline.sinks.outputs import Outputs
from pipeline.sinks.run_summary import RunSummary


log = logging.getLogger("edgewatch.runner")

#: Lag samples kept per camera for the summary: the most recent ones (about 3 hours at 2 fps).
_MAX_LAG_SAMPLES = 20_000



#: Monitor states in which a safety pattern is open and the gate may not starve the student.
_SAFETY_WATCH_STATES = frozenset({"suspicious", "escalated", "alert"})


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
            student=describe_backend(backends.student),
            teacher=describe_backend(backends.teacher),
        )
        self.last_ts = 0.0
        self.last_frame_wall: float | None = None
        self._latency_total_ms = 0.0
        self._reports_by_backend: Counter[str] = Counter()
        self._timings: Counter[str] = Counter()
        self._safety_watch: Counter[str] = Counter()  # skip reason -> frames the safety watch sent on anyway
        self._escalations = 0
        self._current_item: EncodedFrame | None = None
        self._last_report: FrameReport | None = None
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
            self._last_report = report
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
            pattern_start=self._pattern_start(decision.flags),
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

    def _pattern_start(self, flags: frozenset[str]) -> float | None:
        """Where the keyframes of a question about ``flags`` start: the pattern's onset, or with
        ``escalation.reask_unseen`` after a dismissal the first flagged frame the teacher has not seen."""
        entries = self.window.entries()
        onset = pattern_onset(entries, flags, self.settings.escalation.rearm_after_s)
        memory = getattr(self.policy, "memory", None)  # baseline policies under evaluation have none
        if not self.settings.escalation.reask_unseen or memory is None:
            return onset
        unseen = unseen_start(entries, flags, memory.coverages)
        return onset if unseen is None or (onset is not None and onset > unseen) else unseen

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
        if coverage is None and self.settings.escalation.confirm_named_only:
            coverage = unnamed_coverage(result.escalation, verdict, self._match_safety)
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
        elif verdict.kind == VerdictKind.CONFIRMED and hasattr(self.policy, "confirm"):  # baselines have no memory of it
            self.policy.confirm(self._match_safety(verdict.safety_flags, ()))
            if coverage is not None:  # asked types it did not name: dismissed for the frames it saw
                self.policy.cover(coverage)
        if verdict.explanation:
            self._explanation = verdict.explanation
        if self.learner is not None:
            # Every verdict is a labelled example for calibration and fine-tuning data — when the disk has room.
            self._record_example(result.escalation, verdict)
        if self.settings.adaptive.enabled:
            self.thresholds.record_verdict(result.escalation.flags, result.escalation.reason, verdict.kind.value,
                                         self.last_ts, verdict.safety_flags)
        self._apply(self.monitor.apply_verdict(verdict, self.last_ts, coverage, seen_until(result.escalation)))
        if self.settings.escalation.review_activity:
            self._apply(self.monitor.review_activity(activity_looks(result.escalation, verdict), self.last_ts,
                                                     f"teacher {verdict.kind.value} {verdict.escalation_id}"))

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
        self._ask_at_end()

    def _ask_at_end(self) -> None:
        """No frame follows: the policy's last decision (unanswered safety evidence is asked now)."""
        at_end = getattr(self.policy, "at_end", None)  # baseline policies under evaluation have none
        report = self._last_report
        if at_end is None or report is None:
            return
        decision = at_end(self.window.stats(), self.queue.state(), self.monitor.unreviewed_alerts())
        if not decision.escalate:
            return
        self._apply(self._escalate(decision, report))
        self._await_verdict()

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


def _as_sent(decision: GateDecision, admitted: BudgetDecision) -> GateDecision:
    """The gate's decision as the budget settled it: passed only when sent, and a global change the budget
    held back (it goes with a later frame) still marked as one, so the window hears of it."""
    if admitted.send and admitted.global_kind is not None:
        return replace(decision, passed=True, reason=GateReason.GLOBAL_CHANGE, global_kind=admitted.global_kind)
    return replace(decision, passed=admitted.send)
