"""Shared test helpers: where the shared clips are, and skip-or-fail for things CI must have."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED_CLIPS = ROOT.parent / "shared" / "fixtures" / "clips"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require(condition: bool, why: str) -> None:
    """Skip when something optional is missing — but under CI=true, fail: CI must have it."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"required under CI: {why}")
    pytest.skip(why)


@pytest.fixture(scope="session")
def shared_clips() -> Path:
    """The real surveillance clips beside the project; tests using them skip when the folder is absent."""
    if not (SHARED_CLIPS / "labels.json").is_file():
        pytest.skip(f"shared clips not present at {SHARED_CLIPS}")
    return SHARED_CLIPS


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 240, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``run_camera.py`` as a user would, in a subprocess, with Ollama pointed at a closed port."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, str(ROOT / "run_camera.py"), *args],
        cwd=cwd or ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
    )
