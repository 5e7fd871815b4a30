"""export-dataset round trip: records parse, images exist, the split keeps near-duplicates apart."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.learning.agreement_store import hamming
from commands.learning import cmd_export_dataset
from tools.dataset_export import export_dataset, split_records
from pipeline.clock import ManualClock
from pipeline.config.learning import LearningConfig
from pipeline.errors import UsageError
from pipeline.records import StudentAnswer, VerdictKind
from pipeline.analyzers.skill_files import load_active_prompt
from test_agreement_store import escalation, open_store, scene, verdict
from test_calibration import _skills


def _fill(tmp_path: Path) -> Path:
    """Two cameras, 10 records each over time; camera 0's last record shows the scene of its
    first record again (with a different outcome, so the store keeps both)."""
    clock = ManualClock()
    with open_store(tmp_path, clock) as store:
        for i in range(10):
            for cam in (0, 1):
                clock.advance(60)
                image = scene(1, noise=2.0) if (cam == 0 and i == 9) else scene(100 * cam + i)
                flags = ("fire",) if i % 3 == 0 else ()
                esc = escalation(f"cam{cam}", i, image, flags=("fire",))
                kind = VerdictKind.CONFIRMED if flags else VerdictKind.DISMISSED
                assert store.add(esc, verdict(esc, kind, flags), skill_version="student/1", thresholds={}).stored
    return tmp_path / "agreement.sqlite"


@pytest.mark.parametrize("fmt", ["sharegpt", "messages"])
def test_export_round_trip(tmp_path: Path, fmt: str) -> None:
    db = _fill(tmp_path)
    out = tmp_path / "dataset"
    cfg = LearningConfig(validation_fraction=0.2)
    from pipeline.learning.agreement_store import AgreementStore

    with AgreementStore.open(db, cfg, ManualClock()) as store:
        records = store.records()
    by_id = {f"{r.camera}:{r.id}": r for r in records}
    prompt = load_active_prompt("student", Path(__file__).resolve().parent.parent / "skills")
    summary = export_dataset(records, out, fmt, system_prompt=prompt.text, prompt_version=prompt.version, cfg=cfg)
    assert (summary.train, summary.validation, summary.dropped_near_duplicates) == (15, 4, 1)
    parts = {}
    for name in ("train", "validation"):
        lines = (out / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()
        parts[name] = [json.loads(line) for line in lines]
    assert len(parts["train"]) == 15 and len(parts["validation"]) == 4
    for sample in parts["train"] + parts["validation"]:
        (image,) = sample["images"]
        assert (out / image).is_file()
        rec = by_id[sample["meta"]["id"]]
        if fmt == "sharegpt":
            assert sample["system"] == prompt.text
            human, gpt = sample["conversations"]
            assert human["from"] == "human" and human["value"].startswith("<image>")
            answer = StudentAnswer.model_validate_json(gpt["value"])
        else:
            system, user, assistant = sample["messages"]
            assert system["role"] == "system" and system["content"][0]["text"] == prompt.text
            assert user["role"] == "user" and user["content"][0] == {"type": "image", "image": image}
            answer = StudentAnswer.model_validate_json(assistant["content"][0]["text"])
        assert set(answer.safety_flags) == rec.teacher_flags  # the teacher's answer, in the student's contract
    # Validation holds each camera's latest example; no train frame is a near-duplicate of one.
    val = [by_id[s["meta"]["id"]] for s in parts["validation"]]
    train = [by_id[s["meta"]["id"]] for s in parts["train"]]
    for cam in ("cam0", "cam1"):
        latest = max((r for r in records if r.camera == cam), key=lambda r: r.stored_at)
        assert latest in val
    for t in train:
        assert all(hamming(t.newest_keyframe.phash, v.newest_keyframe.phash) > cfg.dedupe_distance for v in val)
    card = (out / "README.md").read_text(encoding="utf-8")
    assert "train 15, validation 4" in card and "cam0, cam1" in card and prompt.version in card
    assert json.loads((out / "dataset_info.json").read_text())


def test_split_without_dedupe_would_leak(tmp_path: Path) -> None:
    from pipeline.learning.agreement_store import AgreementStore

    with AgreementStore.open(_fill(tmp_path), LearningConfig(), ManualClock()) as store:
        records = store.records()
    train, val, dropped = split_records(records, 0.2, dedupe_distance=-1)  # no near-duplicate check at all
    leaks = [t for t in train for v in val if hamming(t.newest_keyframe.phash, v.newest_keyframe.phash) <= 6]
    assert dropped == 0 and len(leaks) == 1  # the planted near-duplicate is really there


def test_cli_refuses_until_ready_then_exports_with_force(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = str(_fill(tmp_path))
    skills = str(_skills(tmp_path, [0.8, 0.8, 0.8]))
    with pytest.raises(UsageError, match="not ready"):
        cmd_export_dataset(["--store", db, "--skills-dir", skills, "--format", "messages", "--out", str(tmp_path / "a")])
    assert "NOT READY" in capsys.readouterr().out
    assert cmd_export_dataset(["--store", db, "--skills-dir", skills, "--format", "sharegpt", "--out", str(tmp_path / "b"), "--force"]) == 0
    assert (tmp_path / "b" / "train.jsonl").is_file()
    with pytest.raises(UsageError, match="not an empty folder"):
        cmd_export_dataset(["--store", db, "--format", "sharegpt", "--out", str(tmp_path / "b"), "--force"])
    with pytest.raises(UsageError):
        cmd_export_dataset(["--store", db, "--format", "csv", "--out", str(tmp_path / "c")])
