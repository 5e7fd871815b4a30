"""`cost:` what a model call costs, for comparing routing policies."""

from __future__ import annotations

from pydantic import Field

from pipeline.config.base import Section


class CostConfig(Section):
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
