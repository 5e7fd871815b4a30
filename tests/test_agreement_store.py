"""The agreement store: records round-trip, near-duplicates are not stored, retention bounds it,
and a process killed mid-write leaves a consistent database."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from pipeline.learning.agreement_store import AgreementStore, dhash, hamming
from pipeline.clock import ManualClock
from pipeline.config.encode import EncodeConfig
from pipeline.config.learning import LearningConfig
from pipeline.frames.encode import encode_frame
from pipeline.records import (
    Escalation, Frame, FrameReport, GateDecision, GateReason, Priority, Verdict, VerdictKind,
)

ROOT = Path(__file__).resolve().parent.parent


def scene(seed: int, noise: float = 0.0, size: tuple[int, int] = (96, 128)) -> np.ndarray:
    """A blocky synthetic scene; the same seed with a little noise is a near-duplicate."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 256, size=(6, 8, 3)).astype(np.float64)
    img = np.kron(blocks, np.ones((size[0] // 6, size[1] // 8, 1)))
    if noise:
        img = img + np.random.default_rng(seed + 999).normal(0, noise, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def escalation(camera: str, n: int, image: np.ndarray, flags: tuple[str, ...] = (), confidence: float = 0.8,
               reason: str = "safety:fire") -> Escalation:
    gate = GateDecision(passed=True, reason=GateReason.CHANGE, score=10.0)
    keyframes, reports = [], []
    for i in range(3):
        frame = Frame(source_id=camera, index=n * 10 + i, timestamp=n * 5.0 + i * 0.5, image=image)
        keyframes.append(encode_frame(frame, gate, EncodeConfig(max_side=128, jpeg_quality=80)))
        reports.append(FrameReport(camera=camera, frame_index=frame.index, timestamp=frame.timestamp,
                                   observations=("person walking",), safety_flags=flags, confidence=confidence,
                                   backend="simulated", model="student-x", prompt_version="student/1", latency_ms=1.0))
    return Escalation(id=f"{camera}-esc-{n:05d}", camera=camera, incident_id=f"{camera}-inc", reason=reason,
                      priority=Priority.SAFETY, created_at=reports[-1].timestamp, flags=frozenset(flags),
                      keyframes=tuple(keyframes), timeline=tuple(reports))


def verdict(esc: Escalation, kind: VerdictKind = VerdictKind.CONFIRMED, flags: tuple[str, ...] = ()) -> Verdict:
    return Verdict(escalation_id=esc.id, camera=esc.camera, incident_id=esc.incident_id, kind=kind,
                   observations=("person walking",), safety_flags=flags, confidence=0.9, explanation="because",
                   backend="simulated", model="teacher-x", latency_ms=5.0)


def open_store(tmp_path: Path, clock: ManualClock | None = None, **cfg: object) -> AgreementStore:
    return AgreementStore.open(tmp_path / "agreement.sqlite", LearningConfig(**cfg), clock or ManualClock())


def test_dhash_is_stable_under_noise_and_differs_between_scenes() -> None:
    a, a_noisy, b = dhash(scene(1)), dhash(scene(1, noise=4.0)), dhash(scene(2))
    assert hamming(a, a_noisy) <= 4
    assert hamming(a, b) >= 16
    assert dhash(scene(1)[..., 0]) >= 0  # grey images hash too
    with pytest.raises(ValueError):
        dhash(np.zeros((4, 4), dtype=np.uint8))


def test_record_round_trip_keeps_reports_verdict_and_keyframe_files(tmp_path: Path) -> None:
    with open_store(tmp_path) as store:
        esc = escalation("cam1", 1, scene(1), flags=("fire",), confidence=0.83)
        result = store.add(esc, verdict(esc, flags=("fire",)), skill_version="student/3",
                           thresholds={"min_confidence": 0.72}, calibration_version="cal/50-abc")
        assert result.stored and result.outcome == "stored"
        (rec,) = store.records()
    assert rec.camera == "cam1" and rec.escalation_id == esc.id and rec.reason == "safety:fire"
    assert rec.verdict == VerdictKind.CONFIRMED and rec.teacher_flags == {"fire"}
    assert rec.skill_version == "student/3" and rec.thresholds == {"min_confidence": 0.72}
    assert rec.calibration_version == "cal/50-abc"
    assert [r.confidence for r in rec.reports] == [0.83] * 3
    assert len(rec.keyframes) == 3 and all(k.path.is_file() for k in rec.keyframes)
    assert rec.keyframes[0].path.read_bytes() == esc.keyframes[0].jpeg
    assert rec.report_for(rec.newest_keyframe).frame_index == esc.keyframes[-1].frame.index


def test_raw_confidence_replaces_calibrated_one(tmp_path: Path) -> None:
    esc = escalation("cam1", 1, scene(1), confidence=0.4)
    raw = {("cam1", r.frame_index): 0.9 for r in esc.timeline}
    with open_store(tmp_path) as store:
        store.add(esc, verdict(esc), skill_version="s/1", thresholds={}, raw_confidence=raw)
        assert [r.confidence for r in store.records()[0].reports] == [0.9] * 3


def test_unverified_verdicts_are_not_stored(tmp_path: Path) -> None:
    esc = escalation("cam1", 1, scene(1))
    with open_store(tmp_path) as store:
        assert store.add(esc, verdict(esc, VerdictKind.UNVERIFIED), skill_version="s/1", thresholds={}).outcome == "unverified"
        assert store.count() == 0


def test_static_scene_is_deduplicated_but_a_new_outcome_is_kept(tmp_path: Path) -> None:
    with open_store(tmp_path) as store:
        first = escalation("cam1", 1, scene(1), flags=("fire",))
        assert store.add(first, verdict(first, flags=("fire",)), skill_version="s/1", thresholds={}).stored
        for n in range(2, 12):  # the same scene, sensor noise, same labels: a static scene
            again = escalation("cam1", n, scene(1, noise=3.0), flags=("fire",))
            result = store.add(again, verdict(again, flags=("fire",)), skill_version="s/1", thresholds={})
            assert result.outcome == "duplicate" and result.similar_to == 1
        dismissed = escalation("cam1", 20, scene(1, noise=3.0), flags=("fire",))
        assert store.add(dismissed, verdict(dismissed, VerdictKind.DISMISSED), skill_version="s/1", thresholds={}).stored
        other_scene = escalation("cam1", 21, scene(7), flags=("fire",))
        assert store.add(other_scene, verdict(other_scene, flags=("fire",)), skill_version="s/1", thresholds={}).stored
        other_camera = escalation("cam2", 22, scene(1), flags=("fire",))
        assert store.add(other_camera, verdict(other_camera, flags=("fire",)), skill_version="s/1", thresholds={}).stored
        assert store.count() == 4


def test_retention_bounds_rows_and_deletes_their_files(tmp_path: Path) -> None:
    with open_store(tmp_path, max_records=10) as store:
        for n in range(15):
            esc = escalation("cam1", n, scene(100 + n))
            assert store.add(esc, verdict(esc), skill_version="s/1", thresholds={}).stored
        records = store.records()
        assert len(records) == 10
        assert [r.escalation_id for r in records] == [f"cam1-esc-{n:05d}" for n in range(5, 15)]
        files = {p for p in store.frames_dir.rglob("*.jpg")}
        assert files == {k.path for r in records for k in r.keyframes}


def test_retention_by_age(tmp_path: Path) -> None:
    clock = ManualClock()
    with open_store(tmp_path, clock, retention_days=1.0) as store:
        old = escalation("cam1", 1, scene(1))
        store.add(old, verdict(old), skill_version="s/1", thresholds={})
        clock.advance(2 * 86400)
        new = escalation("cam1", 2, scene(2))
        result = store.add(new, verdict(new), skill_version="s/1", thresholds={})
        assert result.deleted == 1
        assert [r.escalation_id for r in store.records()] == [new.id]


_WRITER = textwrap.dedent("""
    import sys
    sys.path[:0] = [{root!r}, {tests!r}]
    from pathlib import Path
    from pipeline.learning.agreement_store import AgreementStore
    from pipeline.clock import SystemClock
    from pipeline.config.learning import LearningConfig
    from test_agreement_store import escalation, scene, verdict
    store = AgreementStore.open(Path({db!r}), LearningConfig(max_records=40), SystemClock())
    n = 0
    while True:
        esc = escalation("cam1", n, scene(n))
        store.add(esc, verdict(esc), skill_version="s/1", thresholds={{"n": n}})
        n += 1
""")


def test_kill_mid_write_leaves_no_corruption(tmp_path: Path) -> None:
    db = tmp_path / "agreement.sqlite"
    script = _WRITER.format(root=str(ROOT), tests=str(ROOT / "tests"), db=str(db))
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        # Wait until retention is deleting too (more than max_records written), then kill hard.
        while time.monotonic() < deadline and proc.poll() is None:
            if db.is_file():
                with AgreementStore(db, LearningConfig(), ManualClock()) as probe:
                    if probe.count() >= 40 and len(list(probe.frames_dir.rglob("*.jpg"))) > 0:
                        break
            time.sleep(0.05)
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        time.sleep(0.13)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    with AgreementStore.open(db, LearningConfig(), ManualClock()) as store:
        assert store.integrity_ok()
        records = store.records()
        assert 1 <= len(records) <= 41
        for rec in records:
            assert len(rec.keyframes) == 3 and len(rec.reports) == 3
            assert all(k.path.is_file() for k in rec.keyframes)
        referenced = {k.path for r in records for k in r.keyframes}
        assert set(store.frames_dir.rglob("*.jpg")) == referenced  # orphans from the killed write are swept
        esc = escalation("cam1", 999, scene(999))
        assert store.add(esc, verdict(esc), skill_version="s/1", thresholds={}).stored  # still writable


def test_open_existing_refuses_a_missing_store(tmp_path: Path) -> None:
    from pipeline.learning.agreement_store import StoreError

    with pytest.raises(StoreError, match="no agreement store"):
        AgreementStore.open_existing(tmp_path / "nope.sqlite", LearningConfig(), ManualClock())


def test_a_human_verdict_outranks_the_teacher_for_the_events_escalations(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    fire, other = escalation("cam0", 1, scene(1), flags=("fire",)), escalation("cam0", 2, scene(2), flags=("fire",))
    store.add(fire, verdict(fire, VerdictKind.CONFIRMED, ("fire",)), skill_version="student/1", thresholds={})
    store.add(other, verdict(other, VerdictKind.CONFIRMED, ("fire",)), skill_version="student/1", thresholds={})
    assert store.human_verdicts_version() == 0

    store.add_human_verdict("cam0-00001-fire", "cam0", VerdictKind.DISMISSED, (), "a red coat", [fire.id])

    by_id = {r.escalation_id: r for r in store.records()}
    assert (by_id[fire.id].verdict, by_id[fire.id].teacher_flags, by_id[fire.id].verdict_source) == \
        (VerdictKind.DISMISSED, frozenset(), "human")
    assert (by_id[other.id].verdict, by_id[other.id].verdict_source) == (VerdictKind.CONFIRMED, "teacher")
    human = store.human_verdicts()["cam0-00001-fire"]
    assert (human.verdict, human.note, human.escalation_ids) == (VerdictKind.DISMISSED, "a red coat", (fire.id,))
    first_version = store.human_verdicts_version()
    assert first_version > 0

    # A person changing their mind replaces the verdict (and the version moves on).
    store.add_human_verdict("cam0-00001-fire", "cam0", VerdictKind.CONFIRMED, ("fire",), "", [fire.id])
    assert {r.escalation_id: r.verdict for r in store.records()}[fire.id] == VerdictKind.CONFIRMED
    assert store.human_verdicts_version() > first_version
    with pytest.raises(ValueError):
        store.add_human_verdict("x", "cam0", VerdictKind.UNVERIFIED, (), "", [])
