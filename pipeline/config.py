"""The one configuration model.

Loaded from YAML, validated by pydantic: unknown keys and out-of-range values are errors
that name the key and the allowed range.  Every default equals the documented value
(README, "Configuration"), and ``config.example.yaml`` lists every key with its default.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pipeline.errors import ConfigError

DEFAULT_SAFETY_TRIGGERS = ["fire", "weapon", "fall", "intrusion", "smoke", "blood"]

_CAMERA_ID_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-")
CAMERA_ID_MAX_LENGTH = 64


def _camera_id(value: str) -> str:
    """Camera ids name files, MQTT topics and metric labels: a short, plain name, never a path."""
    if not 1 <= len(value) <= CAMERA_ID_MAX_LENGTH:
        raise ValueError(f"a camera id has 1 to {CAMERA_ID_MAX_LENGTH} characters (got {len(value)})")
    bad = sorted({c for c in value if c not in _CAMERA_ID_CHARS})
    if bad:
        raise ValueError(f"a camera id may hold only letters, digits, '_', '.' and '-' (got {''.join(bad)!r})")
    if value.strip(".") == "":
        raise ValueError("a camera id cannot be only dots")
    return value


#: The one camera-id type, for every source of ids (CLI --camera-id, YAML camera_id and cameras[].id, EDGEWATCH_*).
CameraId = Annotated[str, AfterValidator(_camera_id)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class CaptureConfig(_Section):
    sample_fps: float = Field(2.0, gt=0, le=60, description="Analyse at most this many frames per second of source time (before the gate).")
    realtime: bool = Field(False, description="Pace files to their own fps instead of reading as fast as possible.")
    open_timeout_ms: int = Field(3000, ge=100, le=60000, description="How long opening a stream or camera may take.")
    read_timeout_ms: int = Field(3000, ge=100, le=60000, description="How long one frame read from a stream may block.")
    max_bad_frames: int = Field(50, ge=1, le=100000, description="Consecutive unreadable frames after which a file is treated as ended.")


class GateConfig(_Section):
    enabled: bool = Field(True, description="Skip frames where nothing changed; false analyses every sampled frame.")
    width: int = Field(160, ge=32, le=640, description="Width of the grey thumbnail the gate compares (height keeps the aspect).")
    pixel_threshold: int = Field(18, ge=1, le=255, description="A thumbnail pixel counts as changed when it differs by more than this (0..255).")
    global_change_fraction: float = Field(0.6, gt=0.0, le=1.0, description="A change covering at least this share of the frame is a global change (lights, camera moved or covered).")
    max_skip_s: float = Field(10.0, gt=0, le=3600, description="Heartbeat: analyse at least one frame this often (source seconds) even when static.")
    grid_cols: int = Field(16, ge=2, le=64, description="Blocks across the thumbnail; each block learns its own baseline of normal change (rows follow the aspect).")
    lag_s: float = Field(0.5, gt=0, le=10, description="Motion is measured against the frame this many source seconds earlier.")
    baseline_s: float = Field(20.0, gt=0, le=3600, description="Time constant (source seconds) over which each block learns how much it normally changes.")
    block_sigma: float = Field(4.0, gt=0, le=100, description="A block stands out when its change exceeds its learned mean by this many standard deviations...")
    block_min_change: float = Field(4.0, gt=0, le=255, description="...and by at least this many grey levels (mean absolute difference in the block).")
    global_gain: float = Field(1.5, gt=1.0, le=100, description="A frame-wide brightness ratio jump of at least this much (either way) is a global lighting change.")


class BudgetConfig(_Section):
    enabled: bool = Field(False, description="Experimental: gate every decoded frame and let the keyframe budget pick student frames (instead of sampling to sample_fps first). See docs/GATE.md for what it measured.")
    max_calls_per_min: int = Field(24, ge=1, le=3600, description="Student calls per camera per minute at most, outside safety (the first frame, global changes and heartbeats always go).")
    min_spacing_s: float = Field(1.0, ge=0, le=3600, description="Source seconds between two budgeted student calls at least.")
    burst: int = Field(3, ge=1, le=600, description="Calls that may be saved up in quiet times and spent at once when something starts.")
    quiet_s: float = Field(2.0, gt=0, le=3600, description="A change after this many source seconds without one starts a new episode; its first frame is always sent (when the budget allows).")
    peak_factor: float = Field(3.0, gt=1.0, le=100, description="Within an episode, send a frame whose change is this many times stronger (salience, weighted toward the centre) than the strongest one sent so far in it.")
    refresh_s: float = Field(3.0, gt=0, le=3600, description="During a long episode, send a frame at least this often unless it is a near-duplicate or weak (see weak_ratio).")
    duplicate_iou: float = Field(0.5, ge=0.0, le=1.0, description="A changing region overlapping the last sent one by at least this much (intersection over union) is a near-duplicate.")
    onset_confirm_s: float = Field(0.4, ge=0, le=60, description="An episode's first frame is sent once its change has lasted this long (source seconds): the mover is in view, and flicker shorter than this sends nothing.")
    active_refresh_s: float = Field(2.0, gt=0, le=3600, description="While an episode's change stays strong (see active_ratio), send a frame at least this often even when its region is a near-duplicate: an event of a second or more inside busy motion (a fall mid-activity) gets a frame.")
    active_ratio: float = Field(0.5, ge=0.0, le=100, description="Change is strong when its quality is at least this share of the strongest frame sent in the episode.")
    weak_ratio: float = Field(0.2, ge=0.0, le=1.0, description="Change weaker than this share of the strongest frame sent in the episode gets no refresh (someone standing nearly still).")
    max_silence_s: float = Field(10.0, gt=0, le=3600, description="During an episode, send a changed frame at least this often whatever it shows (weak or near-duplicate): the episode's own heartbeat.")
    global_repeat_s: float = Field(1.5, ge=0, le=3600, description="After a global-change frame was sent, the next one waits at least this long (source seconds): a camera being moved or a shaky feed changes the whole view several times a second, and one look per interval follows it. A global change is never dropped, only held until then.")


class EncodeConfig(_Section):
    max_side: int = Field(896, ge=64, le=4096, description="Resize so the longest side is at most this many pixels before JPEG encoding.")
    jpeg_quality: int = Field(85, ge=10, le=100, description="JPEG quality of the image sent to models and saved as snapshots.")


class ModelEndpoint(_Section):
    backend: Literal["auto", "offline", "ollama", "simulated"] = Field(
        "auto",
        description="'auto' uses Ollama when the host answers, otherwise the embedded offline analyzer (announced). 'simulated' is for evaluating routing only.",
    )
    host: str = Field("http://127.0.0.1:11434", description="Ollama host URL.")
    model: str = Field(..., description="Ollama model name.")
    timeout_ms: int = Field(..., ge=100, le=600000, description="Per-call timeout.")
    first_call_timeout_ms: int = Field(120000, ge=100, le=1800000, description="Timeout of the first call, while the model loads.")
    keep_alive: str = Field("10m", description="How long Ollama keeps the model loaded after a call.")
    max_concurrent: int = Field(..., ge=1, le=64, description="Calls in flight at most.")
    num_predict: int = Field(..., ge=16, le=8192, description="Upper bound on generated tokens per answer.")
    temperature: float = Field(0.0, ge=0.0, le=2.0, description="Sampling temperature.")


class StudentConfig(ModelEndpoint):
    model: str = Field("gemma4:e2b", description="The small, fast vision model.")
    timeout_ms: int = Field(3000, ge=100, le=600000, description="Per-call timeout of the student.")
    max_concurrent: int = Field(4, ge=1, le=64, description="Student calls in flight at most.")
    num_predict: int = Field(256, ge=16, le=8192, description="Upper bound on the student's generated tokens.")


class TeacherConfig(ModelEndpoint):
    model: str = Field("gemma4:26b", description="The large vision model that reviews sequences.")
    timeout_ms: int = Field(60000, ge=100, le=600000, description="Per-call timeout of the teacher.")
    max_concurrent: int = Field(1, ge=1, le=16, description="Teacher calls in flight at most.")
    num_predict: int = Field(512, ge=16, le=8192, description="Upper bound on the teacher's generated tokens.")
    max_queue_depth: int = Field(15, ge=1, le=10000, description="Escalations waiting at most; beyond it the lowest priority is shed (safety is merged, never shed).")
    batch_window_ms: int = Field(2000, ge=0, le=60000, description="Escalations of the same camera and incident arriving within this window fold into one request.")
    max_keyframes: int = Field(3, ge=1, le=32, description="Keyframes per escalated sequence. 3 from the routing evaluation (docs/EVALUATION.md): with the simulated pair 1 keyframe scores the same for 20% fewer model-seconds, but the offline sequence teacher on the real clips needs 3 (with 1 it let a wrong fall alert through); 6 costs more for nothing measured.")
    wait_in_replay: bool = Field(True, description="For files read as fast as possible, wait for each verdict before the next analysed frame so a replay is deterministic.")


class WindowConfig(_Section):
    window_s: float = Field(10.0, gt=0, le=3600, description="The sliding window covers this many seconds of source time.")


class EscalationConfig(_Section):
    min_confidence: float = Field(0.5, ge=0.0, le=1.0, description="Student confidence below this, sustained over the window, escalates (0.5 from the routing evaluation: 0.6-0.72 cost 2-6 model-s more per run of the 17 shared clips and bought no event F1, docs/EVALUATION.md).")
    safety_triggers: list[str] = Field(default_factory=lambda: list(DEFAULT_SAFETY_TRIGGERS), description="Flags that are safety triggers (tamper always is one: a blinded camera sees no other hazard).")
    persistence_k: int = Field(2, ge=1, le=100, description="A safety trigger must be in k of the last n analysed frames to persist: it escalates to the teacher and, without a verdict, moves suspicious → alert (one rule for both).")
    persistence_n: int = Field(3, ge=1, le=100, description="See persistence_k.")
    audit_every: int = Field(480, ge=1, le=100000, description="Send a calm sequence to the teacher every this many analysed frames (samples silent misses; 480 = 4 min at 2 fps: the 120 measured before cost model-seconds and found nothing more, docs/EVALUATION.md).")
    flip_limit: int = Field(1000, ge=1, le=1000, description="A flag switching on/off at least this many times in the window escalates. The default (1000) never triggers: flickering safety flags are asked through persistence, re-asks and the end-of-source question, and flip escalations cost 6 model-s for 0.7 points of event F1 on the shared clips (docs/EVALUATION.md); set 4 to bring them back.")
    suppress_after_dismiss_s: float = Field(30.0, ge=0, le=86400, description="After the teacher dismisses a pattern, its low-confidence, flip and scene-change signals do not escalate again for this long (safety evidence is never suppressed: a dismissal covers only the frames the teacher saw).")
    reask_after_s: float = Field(2.0, ge=0, le=3600, description="A dismissed safety pattern that persists again on frames after the teacher's last keyframe is asked again at most this often (its alert stands meanwhile).")
    review_alerts: bool = Field(True, description="An alert the monitor raised on the student's word alone (a flag carried over gate-skipped frames, a tamper the gate backs) and still unreviewed at the next analysed frame goes to the teacher too, so no alert is left unreviewed while the teacher is reachable.")
    rearm_after_s: float = Field(2.0, ge=0, le=3600, description="A safety flag that returns after an analysed frame without it, and after being absent this long, is a new onset: earlier dismissals and escalations of it no longer hold it back.")
    reask_when_due: bool = Field(True, description="A dismissed safety type seen again while the re-ask rate limit holds is owed a question: asked as soon as reask_after_s allows, while its evidence is still in the window (not dropped when it stops persisting).")
    hold_confirmed: bool = Field(True, description="A safety type the teacher confirmed is not asked again while the student's evidence of it goes on; a new onset (absent rearm_after_s, then back) or a quiet spell re-arms it (instead of re-asking every window length).")
    ask_at_end: bool = Field(True, description="When a source ends, safety evidence of its last persistence_n frames that no verdict covers is asked of the teacher even if it never persisted (a flag on a clip's last frame, a scene cut just before a camera is lost).")

    @model_validator(mode="after")
    def _k_le_n(self) -> "EscalationConfig":
        if self.persistence_k > self.persistence_n:
            raise ValueError(f"persistence_k ({self.persistence_k}) must be <= persistence_n ({self.persistence_n})")
        return self


class StatesConfig(_Section):
    activity_min_confidence: float = Field(0.3, ge=0.0, le=1.0, description="Observations count as activity only at or above this confidence.")
    quiet_after_s: float = Field(4.0, ge=0, le=3600, description="Source seconds without activity or flags before observing/alert ends.")
    cooldown_s: float = Field(10.0, ge=0, le=86400, description="After an alert ends, wait this long before the camera returns to idle.")


class Zone(_Section):
    name: str = Field(..., min_length=1, description="Zone name, used in observations and events.")
    points: list[tuple[float, float]] = Field(..., min_length=3, description="Polygon vertices as fractions (0..1) of frame width and height.")

    @field_validator("points")
    @classmethod
    def _in_unit_square(cls, points: list[tuple[float, float]]) -> list[tuple[float, float]]:
        for x, y in points:
            if not (0.0 <= x <= 1.0 and 0.0 <= y <= 1.0):
                raise ValueError(f"zone point ({x}, {y}) must lie in 0..1 (fractions of width and height)")
        return points


class OfflineConfig(_Section):
    hog_people: bool = Field(True, description="Use OpenCV's HOG people detector for person evidence (slower, better); blob shape otherwise.")
    min_blob_area: float = Field(0.002, ge=0.0, le=0.5, description="Moving blobs smaller than this share of the frame are noise.")


class MotionConfig(_Section):
    enabled: bool = Field(True, description="Watch decoded frames between samples with a cheap dense motion observer (background subtraction and tracking on small grey frames) whose findings (a fall's speed) travel with the frames the student sees.")
    fps: float = Field(12.5, gt=0, le=60, description="The observer looks at most this many frames per second of source time.")
    width: int = Field(192, ge=64, le=640, description="Width of the grey copy the observer works on (height keeps the aspect).")


class OutputConfig(_Section):
    out_dir: Path = Field(Path("./edgewatch-out"), description="Folder for events.jsonl, decisions.jsonl, snapshots and summary.json.")
    snapshots: bool = Field(True, description="Save a JPEG snapshot for each alert.")
    min_free_mb: float = Field(100.0, ge=0, le=1_000_000, description="Free-space watermark of the output folder (MiB): below it snapshots and the agreement store stop writing (counted, warned once); events keep flowing.")
    retain_days: float = Field(30.0, gt=0, le=36500, description="Snapshots older than this many days are deleted (at start and as new ones are saved).")
    retain_mb: float = Field(2000.0, gt=0, le=10_000_000, description="Snapshots beyond this total size (MiB) are deleted, oldest first.")


class ShutdownConfig(_Section):
    grace_s: float = Field(10.0, gt=0, le=600, description="On SIGTERM/SIGINT, drain work in flight for at most this long, then cancel model calls (their reviews become 'unverified'), write the summary and exit. Keep it below the service manager's stop timeout (TimeoutStopSec=30 in docs/edgewatch.service).")


class EvaluationConfig(_Section):
    """Parameters of the *simulated* student/teacher used only by `evaluate` to compare routing policies."""

    student_accuracy: float = Field(0.68, ge=0.0, le=1.0, description="Simulated student: share of right answers on labelled edge cases (frames inside a labelled event or decoy).")
    teacher_accuracy: float = Field(0.94, ge=0.0, le=1.0, description="Simulated teacher: share of right answers on labelled edge cases.")
    student_calm_accuracy: float = Field(0.95, ge=0.0, le=1.0, description="Simulated student: share of right answers on frames where nothing is labelled.")
    teacher_calm_accuracy: float = Field(0.99, ge=0.0, le=1.0, description="Simulated teacher: share of right answers on frames where nothing is labelled.")
    error_burst_s: float = Field(3.0, ge=0.0, le=600, description="Correlation time (source seconds) of the simulated models' errors: errors come in bursts of about this length; 0 = independent per frame.")
    confidence_informativeness: float = Field(0.0, ge=0.0, le=1.0, description="0: wrong answers carry confidence from the same distribution as right ones (overconfident); 1: wrong answers always carry the low-confidence distribution.")
    student_latency_ms: float = Field(110.0, ge=0.0, le=600000, description="Latency reported (not slept) per simulated student call.")
    teacher_latency_ms: float = Field(820.0, ge=0.0, le=600000, description="Latency reported (not slept) per simulated teacher call.")
    match_tolerance_s: float = Field(2.0, ge=0.0, le=3600, description="An alert (or activity event) matches a labelled event of its type when it overlaps the event widened by this much on both sides.")


class CostConfig(_Section):
    """What a model call costs in model-seconds, for comparing routing policies (`evaluate`).

    A call's fixed part, a per-image prefill term (a vision model spends ~280 tokens per image),
    and a per-output-token term charged on the tokens a backend reports (none for offline/simulated)."""

    student_call_ms: float = Field(60.0, ge=0.0, le=600000, description="Student: fixed cost per call (ms).")
    student_image_ms: float = Field(50.0, ge=0.0, le=600000, description="Student: prefill cost per image (ms); 110 ms per 1-image call with the defaults.")
    student_output_token_ms: float = Field(10.0, ge=0.0, le=10000, description="Student: cost per output token the backend reports (ms).")
    teacher_call_ms: float = Field(540.0, ge=0.0, le=600000, description="Teacher: fixed cost per call (ms).")
    teacher_image_ms: float = Field(280.0, ge=0.0, le=600000, description="Teacher: prefill cost per image (ms); 820 ms per 1-image call, 2220 ms per 6-image sequence with the defaults.")
    teacher_output_token_ms: float = Field(25.0, ge=0.0, le=10000, description="Teacher: cost per output token the backend reports (ms).")

    def student_s(self, calls: float, images: float, tokens: float = 0.0) -> float:
        return (calls * self.student_call_ms + images * self.student_image_ms + tokens * self.student_output_token_ms) / 1000.0

    def teacher_s(self, calls: float, images: float, tokens: float = 0.0) -> float:
        return (calls * self.teacher_call_ms + images * self.teacher_image_ms + tokens * self.teacher_output_token_ms) / 1000.0


class SkillsConfig(_Section):
    dir: Path = Field(Path("skills"), description="Folder of versioned student prompts (skills) and active_skill.json; without it the built-in prompt student/1 is used.")
    embedding_model: str = Field("embeddinggemma", min_length=1, description="Ollama embedding model (on the student host) for the semantic score of `skills score`; skipped with a notice when missing.")
    promotion_margin: float = Field(0.02, ge=0.0, le=1.0, description="`skills promote` needs the candidate's held-out score to beat the active skill's by at least this much (0..1 scale).")
    judge: bool = Field(True, description="Let the teacher grade the student's answers with a fixed rubric during `skills score`.")


class LearningConfig(_Section):
    """The agreement store (teacher verdicts as labelled examples), calibration and fine-tune readiness (docs/LEARNING.md)."""

    enabled: bool = Field(True, description="Keep each reviewed escalation and audit (student reports, verdict, keyframes) in the agreement store.")
    store_path: Path | None = Field(None, description="SQLite file of the agreement store (keyframe JPEGs go in a folder beside it); unset = agreement.sqlite in output.out_dir.")
    max_records: int = Field(20000, ge=10, le=10_000_000, description="Records kept at most; beyond it the oldest are deleted with their keyframes.")
    retention_days: float = Field(90.0, gt=0, le=36500, description="Records older than this (wall-clock days since stored) are deleted with their keyframes.")
    dedupe_distance: int = Field(6, ge=0, le=64, description="A record whose newest keyframe's 64-bit perceptual hash is within this many bits of a recent record of the same camera and the same labels is a near-duplicate and not stored (a static scene does not flood the store).")
    dedupe_recent: int = Field(200, ge=1, le=100000, description="How many of the camera's newest records a new one is compared with for near-duplicates.")
    calibrate: bool = Field(False, description="Map the student's confidence through the calibration map fitted on the store once it has calibration_min_examples examples (off by default: fitted on escalations only, it raised teacher calls in docs/LEARNING.md).")
    calibration_min_examples: int = Field(50, ge=10, le=1_000_000, description="Labelled student reports needed before a calibration map (overall, or per flag) is fitted and applied.")
    readiness_min_examples: int = Field(100, ge=1, le=10_000_000, description="Good reviewed examples needed before `finetune-readiness` says ready.")
    plateau_k: int = Field(3, ge=2, le=100, description="Prompt scores have plateaued when the held-out scores of the last k scored skill versions...")
    plateau_margin: float = Field(0.02, ge=0.0, le=1.0, description="...lie within this margin of each other (0..1 scale).")
    validation_fraction: float = Field(0.2, gt=0.0, lt=1.0, description="Share of each camera's examples (its latest in time) that `export-dataset` puts in the validation split.")


class ThresholdProfile(_Section):
    """One named period of the day (see AdaptiveConfig.profiles); every override is optional."""

    start: str = Field("00:00", description="Local clock time (HH:MM, 24 h) the period begins, inclusive.")
    end: str = Field("00:00", description="Local clock time (HH:MM) the period ends, exclusive; an end before the start crosses midnight; end == start means all day.")
    brightness_min: float | None = Field(None, ge=0, le=255, description="With brightness_max: a scene whose smoothed mean luma (0..255) lies in this range selects this period whatever the clock says (a dark scene at noon counts as night).")
    brightness_max: float | None = Field(None, ge=0, le=255, description="See brightness_min.")
    min_confidence: float | None = Field(None, ge=0.0, le=1.0, description="Overrides escalation.min_confidence in this period.")
    persistence_k: int | None = Field(None, ge=1, le=100, description="Overrides escalation.persistence_k in this period.")
    persistence_n: int | None = Field(None, ge=1, le=100, description="Overrides escalation.persistence_n in this period.")
    audit_every: int | None = Field(None, ge=1, le=100000, description="Overrides escalation.audit_every in this period.")
    flip_limit: int | None = Field(None, ge=1, le=1000, description="Overrides escalation.flip_limit in this period.")
    gate_block_min_change: float | None = Field(None, gt=0, le=255, description="Overrides gate.block_min_change (the gate's noise floor, grey levels: higher = less sensitive, e.g. for a grainy night image) in this period.")
    sample_fps: float | None = Field(None, gt=0, le=60, description="Overrides capture.sample_fps in this period.")

    @field_validator("start", "end")
    @classmethod
    def _clock_time(cls, value: str) -> str:
        import re

        if not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", value.strip()):
            raise ValueError(f"{value!r} is not a clock time HH:MM (00:00..23:59)")
        return value.strip()

    @model_validator(mode="after")
    def _ranges(self) -> "ThresholdProfile":
        if (self.brightness_min is None) != (self.brightness_max is None):
            raise ValueError("brightness_min and brightness_max go together")
        if self.brightness_min is not None and self.brightness_max is not None and self.brightness_min >= self.brightness_max:
            raise ValueError(f"brightness_min ({self.brightness_min}) must be < brightness_max ({self.brightness_max})")
        if self.persistence_k is not None and self.persistence_n is not None and self.persistence_k > self.persistence_n:
            raise ValueError(f"persistence_k ({self.persistence_k}) must be <= persistence_n ({self.persistence_n})")
        return self


class AdaptiveConfig(_Section):
    enabled: bool = Field(True, description="Adapt thresholds to the period of day, load and the teacher's verdicts; false keeps the configured thresholds fixed.")
    timezone: str = Field("local", description="IANA time zone of the periods' clock times (e.g. Europe/Berlin); 'local' is the machine's zone.")
    source_start: str | None = Field(None, description="For file sources: the wall-clock time (ISO 8601, e.g. 2024-05-01T22:00:00; no offset = in `timezone`) that the file's t=0 maps to; unset = when the run starts. Live sources use the clock.")
    profiles: dict[str, ThresholdProfile] = Field(default_factory=dict, description="Named periods, e.g. {night: {start: '20:00', end: '06:00', brightness_min: 0, brightness_max: 40, persistence_k: 3, persistence_n: 4, min_confidence: 0.6}}; the first that matches wins (brightness before clock); none matching = 'default' (the configured thresholds).")
    period_dwell_s: float = Field(30.0, ge=0, le=3600, description="A new period takes over only after it has been the match for this many source seconds (a passing shadow does not switch to night).")
    brightness_smoothing_s: float = Field(20.0, ge=0, le=3600, description="Time constant (source seconds) of the moving average of scene brightness; 0 uses each frame's own.")
    load_max_bar: int = Field(3, ge=0, le=3, description="Highest escalation bar load may raise (1 defers audits, 2 also flips and scene changes, 3 also low confidence; safety is never deferred); 0 disables load adaptation.")
    load_queue_raise: float = Field(0.5, gt=0, le=1.0, description="Teacher queue pressure (depth/capacity) at or above which the bar rises one step...")
    load_queue_lower: float = Field(0.2, ge=0, le=1.0, description="...and at or below which (with the other load figures calm) it may fall again; must be < load_queue_raise.")
    load_lag_raise_s: float = Field(5.0, gt=0, le=3600, description="Student lag (source seconds the newest analysed frame is behind the newest read frame) at or above which the bar rises.")
    load_lag_lower_s: float = Field(1.0, ge=0, le=3600, description="Student lag at or below which the bar may fall; must be < load_lag_raise_s.")
    load_cpu_raise: float = Field(0.95, gt=0, le=1.0, description="CPU busy share (0..1) at or above which the bar rises.")
    load_cpu_lower: float = Field(0.7, ge=0, le=1.0, description="CPU busy share at or below which the bar may fall; must be < load_cpu_raise.")
    load_step_s: float = Field(10.0, ge=0, le=3600, description="At least this many source seconds between two raises of the bar (step by step).")
    load_calm_s: float = Field(60.0, ge=0, le=86400, description="Load must stay at or below every lower mark this long before the bar falls one step (hysteresis: no oscillation).")
    fp_alpha: float = Field(0.2, gt=0, le=1.0, description="Weight of the newest verdict in the smoothed (EWMA) dismissal and audit-miss rates.")
    fp_min_samples: int = Field(3, ge=1, le=1000, description="Verdicts of a flag (per period) needed before, and between, two feedback adjustments of it.")
    fp_raise_above: float = Field(0.6, gt=0, le=1.0, description="A smoothed dismissal rate at or above this raises the flag's persistence k (or, for low confidence, lowers min_confidence; for flips, raises flip_limit) one step.")
    fp_lower_below: float = Field(0.25, ge=0, le=1.0, description="A dismissal rate at or below this undoes one step; must be < fp_raise_above.")
    fp_miss_above: float = Field(0.3, gt=0, le=1.0, description="A smoothed audit-miss rate (audits where the teacher saw the flag and the student did not) at or above this lowers the flag's persistence k one step.")
    fp_max_k_raise: int = Field(2, ge=0, le=10, description="Most steps dismissals may add to a flag's persistence k (k never exceeds persistence_n).")
    fp_max_k_lower: int = Field(1, ge=0, le=10, description="Most steps audit misses may take off a flag's persistence k (k never drops below 1).")
    fp_confidence_step: float = Field(0.05, ge=0, le=0.5, description="How much one step lowers min_confidence when low-confidence escalations keep being dismissed.")
    fp_max_confidence_steps: int = Field(3, ge=0, le=20, description="Most steps min_confidence may be lowered by feedback.")
    fp_max_flip_raise: int = Field(4, ge=0, le=100, description="Most steps (of 1) dismissals may add to flip_limit.")
    state_file: Path | None = Field(None, description="JSON file keeping the feedback rates across restarts (written atomically); unset = thresholds_state.json in output.out_dir.")
    save_every_s: float = Field(300.0, gt=0, le=86400, description="Save the feedback state at least this often (source seconds) while running, and always at shutdown.")

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        if value != "local":
            try:
                ZoneInfo(value)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError(f"unknown time zone {value!r} (use an IANA name such as Europe/Berlin, or 'local')") from None
        return value

    @field_validator("source_start")
    @classmethod
    def _iso_time(cls, value: str | None) -> str | None:
        from datetime import datetime

        if value is not None:
            try:
                datetime.fromisoformat(value)
            except ValueError:
                raise ValueError(f"{value!r} is not an ISO 8601 date-time such as 2024-05-01T22:00:00") from None
        return value

    @field_validator("profiles")
    @classmethod
    def _reserved_name(cls, value: dict[str, ThresholdProfile]) -> dict[str, ThresholdProfile]:
        for name in value:
            if not name.strip() or name == "default":
                raise ValueError(f"profile name {name!r} is empty or reserved ('default' is the period when no profile matches)")
        return value

    @model_validator(mode="after")
    def _hysteresis(self) -> "AdaptiveConfig":
        for low, high in (("load_queue_lower", "load_queue_raise"), ("load_lag_lower_s", "load_lag_raise_s"),
                          ("load_cpu_lower", "load_cpu_raise"), ("fp_lower_below", "fp_raise_above")):
            if getattr(self, low) >= getattr(self, high):
                raise ValueError(f"{low} ({getattr(self, low)}) must be < {high} ({getattr(self, high)})")
        return self


class CameraConfig(_Section):
    id: CameraId = Field(..., description="Camera id (1 to 64 letters, digits, _ . -), used in events, topics and metrics.")
    source: str = Field(..., min_length=1, description="rtsp:// or http(s):// URL, webcam index, or a file (looped, paced to its fps).")
    zones: list[Zone] | None = Field(None, description="This camera's intrusion zones (default: the top-level zones).")
    sample_fps: float | None = Field(None, gt=0, le=60, description="Override of capture.sample_fps for this camera.")


class LiveConfig(_Section):
    stale_after_s: float = Field(10.0, gt=0, le=3600, description="Restart a live source that delivered no frame for this long.")
    backoff_initial_s: float = Field(0.5, gt=0, le=60, description="First reconnect wait; it doubles (with jitter) up to backoff_max_s.")
    backoff_max_s: float = Field(30.0, gt=0, le=3600, description="Longest reconnect wait.")


class MqttConfig(_Section):
    enabled: bool = Field(False, description="Publish events, state, availability and Home Assistant discovery over MQTT.")
    host: str = Field("127.0.0.1", description="MQTT broker host.")
    port: int = Field(1883, ge=1, le=65535, description="MQTT broker port.")
    username: str | None = Field(None, description="Broker username (optional).")
    password: str | None = Field(None, description="Broker password (optional; better set EDGEWATCH_MQTT__PASSWORD).")
    tls: bool = Field(False, description="Connect with TLS.")
    ca_certs: str | None = Field(None, description="CA bundle for TLS (default: the system's).")
    topic_prefix: str = Field("edgewatch", min_length=1, description="Topics are <prefix>/<camera>/events and <prefix>/<camera>/state.")
    discovery_prefix: str = Field("homeassistant", min_length=1, description="Home Assistant MQTT discovery prefix.")
    client_id: str = Field("edgewatch", min_length=1, description="MQTT client id.")
    buffer_dir: Path = Field(Path("./edgewatch-out/mqtt-buffer"), description="On-disk queue of events not yet delivered (survives broker outages and restarts).")
    buffer_max: int = Field(10000, ge=1, le=10_000_000, description="Events kept in the buffer at most; beyond it the oldest are dropped and counted.")
    keepalive_s: int = Field(30, ge=5, le=3600, description="MQTT keep-alive.")


class MetricsConfig(_Section):
    enabled: bool = Field(False, description="Serve Prometheus /metrics and JSON /healthz.")
    host: str = Field("127.0.0.1", description="Address to listen on (0.0.0.0 for all interfaces).")
    port: int = Field(9464, ge=0, le=65535, description="Port to listen on (0 picks a free one).")


class WebConfig(_Section):
    enabled: bool = Field(False, description="Serve the review page (docs/REVIEW.md) during a run with several cameras; `edgewatch serve --out DIR` serves it for any run's folder.")
    host: str = Field("127.0.0.1", description="Address to listen on; anything but loopback needs a token.")
    port: int = Field(8765, ge=0, le=65535, description="Port to listen on (0 picks a free one).")
    token: str | None = Field(None, description="Access token the page asks for (better set EDGEWATCH_WEB__TOKEN); required off loopback.")


class FleetConfig(_Section):
    """Edge boxes sharing teacher workers through Redis Streams (docs/FLEET.md)."""

    redis_url: str = Field("", description="Redis URL of the escalation bus (redis://[:password@]host:6379/0); empty: this box uses its own teacher queue only.")
    box_id: str = Field("", description="This edge box's name on the bus (its reply stream); empty: the host name.")
    stream_prefix: str = Field("edgewatch", min_length=1, description="Prefix of every stream and group name, so several sites can share one Redis.")
    max_depth: int = Field(200, ge=1, le=1000000, description="Site-wide bound on non-safety requests waiting or in review; beyond it the local queue's shedding rules apply across the site (safety is never shed or trimmed).")
    visibility_timeout_s: float = Field(30.0, ge=1.0, le=3600, description="A request a worker has not touched for this long (it died) is reclaimed by another worker; live workers renew their claim every third of it.")
    reply_timeout_s: float = Field(120.0, ge=1.0, le=86400, description="While Redis is unreachable, a request sent before the loss and unanswered this long is reviewed by the box's own teacher instead.")
    reconnect_s: float = Field(2.0, gt=0, le=600, description="While Redis is unreachable, try it again this often.")
    socket_timeout_s: float = Field(2.0, gt=0, le=60, description="Timeout of one Redis command or connection attempt.")
    reply_max_len: int = Field(10000, ge=100, le=10000000, description="Each box's reply stream keeps about this many entries at most (replies are deleted once applied; the bound only matters for a box that is gone).")


class Settings(_Section):
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


def _field_info(loc: tuple[Any, ...]) -> Any:
    """The pydantic FieldInfo at an error location, to state the full allowed range."""
    model: Any = Settings
    info = None
    for part in loc:
        fields = getattr(model, "model_fields", None)
        if not isinstance(part, str) or fields is None or part not in fields:
            return info
        info = fields[part]
        model = info.annotation
    return info


def _describe(err: dict[str, Any]) -> str:
    key = ".".join(str(p) for p in err["loc"]) or "(top level)"
    if err["type"] == "extra_forbidden":
        return f"unknown key '{key}'"
    ctx = err.get("ctx") or {}
    if any(b in ctx for b in ("ge", "gt", "le", "lt")):
        info = _field_info(tuple(err["loc"]))
        allowed = _range_text(info).strip(" ()") if info is not None else ""
        if not allowed:
            allowed = ", ".join(f"{sym} {ctx[b]}" for b, sym in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")) if b in ctx)
        return f"'{key}' must be {allowed.replace(', ', ' and ')} (got {err.get('input')!r})"
    return f"'{key}': {err['msg']} (got {err.get('input')!r})"


def settings_from_dict(data: dict[str, Any] | None) -> Settings:
    try:
        return Settings.model_validate(data or {})
    except ValidationError as exc:
        problems = "; ".join(_describe(e) for e in exc.errors())
        raise ConfigError(f"invalid config: {problems}") from None


ENV_PREFIX = "EDGEWATCH_"


def env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    """``EDGEWATCH_SECTION__KEY=value`` variables as a nested mapping (values parsed as YAML scalars).

    ``EDGEWATCH_STUDENT__HOST=http://gpu:11434`` sets ``student.host``;
    ``EDGEWATCH_ESCALATION__MIN_CONFIDENCE=0.6`` sets ``escalation.min_confidence``.  Secrets
    (camera URLs, the MQTT password) belong here rather than in the YAML file.
    ``EDGEWATCH_DEBUG`` is the CLI's own switch and not a setting.
    """
    overrides: dict[str, Any] = {}
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX) or name == "EDGEWATCH_DEBUG":
            continue
        path = [part.lower() for part in name[len(ENV_PREFIX):].split("__")]
        if not all(path):
            raise ConfigError(f"environment variable {name}: empty key part (use EDGEWATCH_SECTION__KEY)")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        if isinstance(value, (dict, list)) and path[-1] not in ("cameras", "zones", "safety_triggers", "profiles"):
            value = raw  # a URL with a colon is a string, not a mapping
        node = overrides
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"environment variable {name} conflicts with another EDGEWATCH_ variable")
        node[path[-1]] = value
    return overrides


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_settings(path: Path | str | None, environ: Mapping[str, str] | None = None) -> Settings:
    """Load settings from a YAML file (defaults when ``path`` is None), then apply ``EDGEWATCH_*`` overrides."""
    data: Any = None
    where = ""
    if path is not None:
        p = Path(path)
        where = str(p)
        if not p.is_file():
            raise ConfigError(f"config file not found: {p}")
        try:
            data = yaml.safe_load(p.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            raise ConfigError(f"config file {p} is not valid YAML{at}") from None
        except UnicodeDecodeError:
            raise ConfigError(f"config file {p} is not UTF-8 text") from None
        if data is not None and not isinstance(data, dict):
            raise ConfigError(f"config file {p} must hold a mapping of keys, not {type(data).__name__}")
    overrides = env_overrides(os.environ if environ is None else environ)
    if overrides:
        where = f"{where} + EDGEWATCH_* environment" if where else "EDGEWATCH_* environment"
    try:
        return settings_from_dict(_merge(data or {}, overrides))
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}" if where else str(exc)) from None


#: The essentials surface: the keys a user's file needs (cameras, models and hosts, outputs, MQTT, metrics,
#: zones, safety triggers).  Every other key keeps its default and is documented apart (docs/CONFIG.md,
#: `edgewatch config reference`).  Section -> its essential keys (None: the key is a top-level one).
ESSENTIALS: dict[str, tuple[str, ...] | None] = {
    "cameras": None,
    "camera_id": None,
    "student": ("backend", "host", "model"),
    "teacher": ("backend", "host", "model"),
    "escalation": ("safety_triggers",),
    "zones": None,
    "output": ("out_dir", "snapshots"),
    "mqtt": ("enabled", "host", "port", "username", "password", "topic_prefix"),
    "metrics": ("enabled", "port"),
    "web": ("enabled", "port"),
}


def _yaml_value(name: str, value: Any) -> str:
    dumped = yaml.safe_dump({name: _plain(value)}, default_flow_style=True, width=1000).strip()
    return dumped[1:-1] if dumped.startswith("{") else dumped


def example_yaml() -> str:
    """The essentials, with their defaults and what they do (the source of config.example.yaml)."""
    lines = [
        "# edgewatch configuration: the essentials.  Every other setting keeps a sensible default;",
        "# all of them are in docs/CONFIG.md (`edgewatch config reference`).",
        "# Generated by `edgewatch config example > config.example.yaml`; a test keeps it in step with the code.",
        "# Unknown keys and out-of-range values are errors that name the key and the allowed range.",
        "# Any key can also come from the environment: EDGEWATCH_SECTION__KEY (e.g. EDGEWATCH_MQTT__PASSWORD).",
    ]
    defaults = Settings()
    for section, keys in ESSENTIALS.items():
        info = Settings.model_fields[section]
        value = getattr(defaults, section)
        if keys is None:
            if info.description:
                lines.append(f"# {info.description}{_range_text(info)}")
            lines.append(_yaml_value(section, value))
            continue
        lines.append(f"{section}:")
        model = type(value)
        for key in keys:
            sub = model.model_fields[key]
            if sub.description:
                lines.append(f"  # {sub.description}{_range_text(sub)}")
            lines.append("  " + _yaml_value(key, getattr(value, key)))
    lines.append("# Several live cameras (run `edgewatch --config FILE` with no SOURCE):")
    lines.append('# cameras: [{id: front, source: "rtsp://user:pass@192.0.2.10/stream1"}]')
    lines.append("# A zone (fractions of width and height): a person inside it is an intrusion.")
    lines.append("# zones: [{name: doorway, points: [[0.6, 0.5], [0.95, 0.5], [0.95, 1.0], [0.6, 1.0]]}]")
    return "\n".join(lines) + "\n"


def reference_markdown() -> str:
    """Every key, its default, range and meaning, essentials first (the source of docs/CONFIG.md)."""
    out = [
        "# Configuration reference",
        "",
        "Generated by `edgewatch config reference > docs/CONFIG.md`; a test keeps it in step with the code.",
        "A user's file needs only the **essentials** (`config.example.yaml`); every other key keeps the default",
        "shown here.  Any key can also be set from the environment as `EDGEWATCH_SECTION__KEY`.",
        "",
    ]
    defaults = Settings()

    def rows(model: type[BaseModel], values: BaseModel, prefix: str, only: tuple[str, ...] | None) -> list[str]:
        found = []
        for name, info in model.model_fields.items():
            if only is not None and name not in only:
                continue
            value = getattr(values, name)
            if isinstance(value, BaseModel):
                found += rows(type(value), value, f"{prefix}{name}.", None)
                continue
            text = (info.description or "").replace("|", "\\|") + _range_text(info)
            found.append(f"| `{prefix}{name}` | `{_yaml_value(name, value).split(': ', 1)[-1]}` | {text} |")
        return found

    out += ["## Essentials", "", "| key | default | meaning |", "|---|---|---|"]
    for section, keys in ESSENTIALS.items():
        value = getattr(defaults, section)
        if keys is None:
            out += rows(Settings, defaults, "", (section,))
        else:
            out += rows(type(value), value, f"{section}.", keys)
    out += ["", "## Advanced sections", "", "Each keeps its defaults unless you have a reason; the essentials above are left out here.", ""]
    for section, info in Settings.model_fields.items():
        value = getattr(defaults, section)
        keys = ESSENTIALS.get(section, ()) if section in ESSENTIALS else ()
        if section in ESSENTIALS and keys is None:
            continue
        if isinstance(value, BaseModel):
            model = type(value)
            rest = tuple(k for k in model.model_fields if k not in (keys or ()))
            if not rest:
                continue
            out += [f"### `{section}`", ""]
            if model.__doc__ and not model.__doc__.startswith(("Usage docs", "!!! abstract")):
                out += [model.__doc__.strip().splitlines()[0], ""]
            out += ["| key | default | meaning |", "|---|---|---|", *rows(model, value, f"{section}.", rest), ""]
        else:
            out += [f"### `{section}`", "", "| key | default | meaning |", "|---|---|---|", *rows(Settings, defaults, "", (section,)), ""]
    return "\n".join(out).rstrip() + "\n"


def _plain(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _range_text(info: Any) -> str:
    parts = []
    for meta in info.metadata:
        for attr, sym in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
            bound = getattr(meta, attr, None)
            if bound is not None:
                parts.append(f"{sym} {bound}")
    return f" ({', '.join(parts)})" if parts else ""

