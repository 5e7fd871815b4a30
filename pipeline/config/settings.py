"""The root model: every section composed into one `Settings`."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from pipeline.config.adaptive import AdaptiveConfig
from pipeline.config.base import Section
from pipeline.config.budget import BudgetConfig
from pipeline.config.cameras import CameraConfig, CameraId
from pipeline.config.capture import CaptureConfig
from pipeline.config.cost import CostConfig
from pipeline.config.encode import EncodeConfig
from pipeline.config.escalation import EscalationConfig
from pipeline.config.evaluation import EvaluationConfig
from pipeline.config.fleet import FleetConfig
from pipeline.config.gate import GateConfig
from pipeline.config.learning import LearningConfig
from pipeline.config.live import LiveConfig
from pipeline.config.metrics import MetricsConfig
from pipeline.config.models import StudentConfig, TeacherConfig
from pipeline.config.motion import MotionConfig
from pipeline.config.mqtt import MqttConfig
from pipeline.config.offline import OfflineConfig
from pipeline.config.output import OutputConfig
from pipeline.config.shutdown import ShutdownConfig
from pipeline.config.skills import SkillsConfig
from pipeline.config.states import StatesConfig
from pipeline.config.web import WebConfig
from pipeline.config.window import WindowConfig
from pipeline.config.zones import Zone


class Settings(Section):
    """All of edgewatch's settings.  YAML keys are the field names; unknown keys are errors."""

    camera_id: CameraId = Field("cam0", description="Camera id used in events when the source does not name one (1 to 64 letters, digits, _ . -).")
    capture: CaptureConfig = Field(default_factory=CaptureConfig)
    gate: GateConfig = Field(default_factory=GateConfig)
    budget: BudgetConfig = Field(default_factory=BudgetConfig)
    encode: EncodeConfig = Field(default_factory=EncodeConfig)
    student: StudentConfig = Field(default_factory=StudentConfig)
    teacher: TeacherConfig = Field(default_factory=TeacherConfig)
    window: WindowConfig = Field(default_factory=WindowConfig)
    escalation: EscalationConfig = Field(default_factory=EscalationConfig)
    states: StatesConfig = Field(default_factory=StatesConfig)
    zones: list[Zone] = Field(default_factory=list, description="Polygons where a person is an intrusion.")
    offline: OfflineConfig = Field(default_factory=OfflineConfig)
    motion: MotionConfig = Field(default_factory=MotionConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)
    shutdown: ShutdownConfig = Field(default_factory=ShutdownConfig)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    cost: CostConfig = Field(default_factory=CostConfig)
    skills: SkillsConfig = Field(default_factory=SkillsConfig)
    adaptive: AdaptiveConfig = Field(default_factory=AdaptiveConfig)
    cameras: list[CameraConfig] = Field(default_factory=list, description="Live cameras to watch together (run `edgewatch --config FILE` with no SOURCE).")
    live: LiveConfig = Field(default_factory=LiveConfig)
    mqtt: MqttConfig = Field(default_factory=MqttConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    fleet: FleetConfig = Field(default_factory=FleetConfig)
    learning: LearningConfig = Field(default_factory=LearningConfig)
    web: WebConfig = Field(default_factory=WebConfig)
    log_format: Literal["auto", "text", "json"] = Field("auto", description="'auto': text on a terminal, JSON lines otherwise (journald, containers).")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("WARNING", description="Logging level on stderr (state transitions are logged at INFO; they are always in decisions.jsonl).")
