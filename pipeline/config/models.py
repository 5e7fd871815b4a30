"""`student:` and `teacher:` the two model endpoints."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from pipeline.config.base import Section


class ModelEndpoint(Section):
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
