"""`skills:` versioned student prompts and their scoring."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from pipeline.config.base import Section


class SkillsConfig(Section):
    dir: Path = Field(Path("skills"), description="Folder of versioned student prompts (skills) and active_skill.json; without it the built-in prompt student/1 is used.")
    embedding_model: str = Field("embeddinggemma", min_length=1, description="Ollama embedding model (on the student host) for the semantic score of `skills score`; skipped with a notice when missing.")
    promotion_margin: float = Field(0.02, ge=0.0, le=1.0, description="`skills promote` needs the candidate's held-out score to beat the active skill's by at least this much (0..1 scale).")
    judge: bool = Field(True, description="Let the teacher grade the student's answers with a fixed rubric during `skills score`.")
