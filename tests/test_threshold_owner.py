"""One owner of the thresholds in force: the camera's ThresholdController.  The policy reads them
from it at every decision, and a SIGHUP reload goes through it — with adaptive thresholds on (the
default), a reloaded value is the one later decisions use."""

from __future__ import annotations

import json
from pathlib import Path

from helpers_video import frame_of, numbered_frame

from pipeline.clock import ManualClock
from pipeline.config.loading import settings_from_dict
from pipeline.config.settings import Settings
from pipeline.incidents.escalation import EscalationPolicy, Thresholds
from pipeline.records import EncodedFrame, Escalation, FrameReport, StudentAnswer, Verdict
from pipeline.analyzers.backends import Backends
from pipeline.camera_pipeline import CameraPipeline
from pipeline.sinks.outputs import Outputs
from pipeline.runner import Runner
from pipeline.teacher.queue import TeacherQueue


class ScriptedStudent:
    """A fake student (named so): the same calm answer at confidence 0.5 on every frame."""

    backend, model, prompt_version = "fake", "scripted", "fake/1"

    def analyze(self, item: EncodedFrame) -> FrameReport:
        answer = StudentAnswer(observations=["an empty room"], safetyFlags=[], confidence=0.5)
        return FrameReport.from_answer(answer, frame=item.frame, backend=self.backend, model=self.model,
                                       prompt_version=self.prompt_version, latency_ms=1.0)

    def close(self) -> None:
        pass


class SilentTeacher:
    """A fake teacher (named so): every review is unverified."""

    backend, model = "fake", "silent"

    def review(self, escalation: Escalation) -> Verdict:
        return Verdict.unverified(escalation, backend=self.backend, model=self.model, latency_ms=0.0, why="fake teacher")

    def close(self) -> None:
        pass


def _decisions(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "decisions.jsonl").read_text().splitlines() if line.strip()]


def test_a_reload_reaches_the_decisions_with_adaptive_thresholds_on(tmp_path: Path) -> None:
    clock = ManualClock()
    settings = settings_from_dict({"output": {"out_dir": str(tmp_path), "snapshots": False},
                                   "escalation": {"min_confidence": 0.72},
                                   "adaptive": {"state_file": str(tmp_path / "state.json")}})
    assert settings.adaptive.enabled, "the defect only showed with adaptive thresholds on, the default"
    backends = Backends(student=ScriptedStudent(), teacher=SilentTeacher())
    runner = Runner(settings, backends, clock=clock)
    outputs = Outputs(tmp_path)
    queue = TeacherQueue(backends.teacher, settings.teacher, clock)
    pipe = CameraPipeline("cam", settings, backends, queue, outputs, policy=EscalationPolicy(Thresholds.from_config(settings.escalation)),
                          replay=True, description="test", clock=clock)
    pipe.gate.cfg = pipe.gate.cfg.model_copy(update={"enabled": False})
    for i in range(4):
        pipe.process(frame_of(numbered_frame(i), i, i * 0.5, "cam"))
    before = [d for d in _decisions(tmp_path) if d.get("kind") == "decision"]
    assert before and all(d["thresholds"]["min_confidence"] == 0.72 for d in before)

    reloaded = settings.model_copy(update={"escalation": settings.escalation.model_copy(update={"min_confidence": 0.31})})
    runner.request_reload(reloaded)
    runner._apply_reload({"cam": pipe})
    for i in range(4, 8):
        pipe.process(frame_of(numbered_frame(i), i, i * 0.5, "cam"))
    outputs.close()
    queue.close(drain=True, timeout_s=5)

    after = [d for d in _decisions(tmp_path) if d.get("kind") == "decision" and d["t"] >= 2.0]
    assert after and all(d["thresholds"]["min_confidence"] == 0.31 for d in after)
    # confidence 0.5 was low against 0.72 and is not against 0.31: the reload changed the decisions
    assert all(d["reason"] != "low_confidence" for d in after)
    change = [d for d in _decisions(tmp_path) if d.get("kind") == "threshold_change" and d["cause"] == "reload"]
    assert [(c["name"], c["old"], c["new"]) for c in change] == [("min_confidence", 0.72, 0.31)]


def test_the_policy_holds_no_thresholds_of_its_own() -> None:
    clock = ManualClock()
    settings = Settings()
    from pipeline.incidents.thresholds import ThresholdController

    owner = ThresholdController(settings, "cam", clock, Path("/nonexistent/state.json"))
    policy = EscalationPolicy(Thresholds.from_config(settings.escalation))
    policy.follow(owner)
    owner.reload(settings.model_copy(update={"escalation": settings.escalation.model_copy(update={"persistence_k": 3})}), 1.0)
    assert policy.thresholds.persistence_k == 3
    assert policy.thresholds_in_force()["persistence"] == "3/3"
