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
from pathlib import Path
from typing import Any, Callable

from pipeline.analyzers.fallback import FallbackStudent
from pipeline.analyzers.skill_files import load_active_prompt
from pipeline.clock import Clock, SystemClock
from pipeline.config.cameras import CameraConfig
from pipeline.config.settings import Settings
from pipeline.errors import SourceError, UsageError
from pipeline.incidents.escalation import EscalationPolicy, Thresholds
from pipeline.learning.agreement_store import StoreError
from pipeline.learning.calibration_map import Learner
from pipeline.sinks.decision_log import (Notice, Reload,
                                         RunStarted, RunSummaryLine, ThresholdChangeLine)
from pipeline.sinks.disk_guard import DiskGuard
from pipeline.sinks.files import new_run_id, prepare_out_dir, write_json_atomically
from pipeline.sources.capture import FrameSource, open_source
from pipeline.sources.live import LiveGrabber
from pipeline.teacher.queue import TeacherQueue
from pipeline.analyzers.backends import Backends
from pipeline.camera_pipeline import CameraPipeline
from pipeline.sinks.outputs import EventCallback, Outputs
from pipeline.sinks.run_summary import RunSummary

log = logging.getLogger("edgewatch.runner")


ProgressCallback = Callable[[int, int | None, float, float], None]
"""(frame index, frame count or None, frame timestamp, the source's fps), once per decoded frame of a file."""


# --------------------------------------------------------------------------------------
# Choosing the models
# --------------------------------------------------------------------------------------








# --------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------














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
        mqtt = metrics = None
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

    def run(self, source_spec: str, *, max_frames: int | None = None, source: FrameSource | None = None,
            prepare: Callable[[CameraPipeline], None] | None = None) -> RunSummary:
        """One source.  Files and image folders are replayed; webcams and streams run live, with reconnects.

        ``source`` (an already open file source) and ``prepare`` (called on the camera's pipeline before the
        first frame) let the evaluation replay one decode of a clip to many runs (tools/evaluation/replay.py)."""
        if source is None and is_live_spec(source_spec):
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
        source = source or open_source(source_spec, camera_id=camera, cfg=s.capture, clock=self.clock)
        out_dir, outputs, mqtt, metrics = self._open_outputs()
        replay = not s.capture.realtime
        pipelines: dict[str, CameraPipeline] = {}
        queue = self._teacher_queue(metrics, pipelines)
        pipe = CameraPipeline(camera, s, self.backends, queue, outputs, policy=self.policy_factory(s, camera),
                              replay=replay, description=source.description,
                              settle_verdicts=lambda: self._route(queue, pipelines), clock=self.clock, stop=self.stop)
        pipelines[camera] = pipe
        if prepare is not None:
            prepare(pipe)
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



