"""The evaluation's fast path (one decode of a clip replayed to every run) scores exactly as
decoding the clip for every run, and the whole harness gives the same report either way."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.config import Settings
from tools.evaluation import DEMO_LABELS, Variant, evaluate, run_variant, sample_grid, variant_settings
from tools.evaluation.replay import ReplayMismatch, ReplayMotion, record_clip, replayable
from tools.labels import load_labels

VARIANTS = (
    Variant("student_only", "student_only"),
    Variant("teacher_only", "teacher_only"),
    Variant("ours", "ours"),
    Variant("confidence_only", "confidence_only"),
    Variant("fixed_interval", "fixed_interval@3s", fixed_interval_s=3.0),
    Variant("ours", "ours@sample_fps=1", overrides={"capture": {"sample_fps": 1.0}}),
)


def _scores(record: object) -> dict:
    data = record.to_json()  # type: ignore[attr-defined]
    data.pop("out_dir")
    return data


def test_a_replayed_run_scores_exactly_as_a_decoded_one(tmp_path: Path) -> None:
    labels = load_labels(DEMO_LABELS)
    clip = labels.clips[0]
    base = Settings()
    recording = record_clip(labels.video_path(clip), variant_settings(base, VARIANTS[0], 0, tmp_path / "rec"))
    assert len(recording.thumbnails) == len(recording.timestamps) > 100
    grid = sample_grid(clip, base.capture.sample_fps, base.evaluation.match_tolerance_s)
    for variant in VARIANTS:
        decoded = run_variant(variant, pair="simulated", base=base, labels=labels, clip=clip, clip_index=0, seed=1,
                              out_dir=tmp_path / "decoded" / variant.name, grid=grid)
        replayed = run_variant(variant, pair="simulated", base=base, labels=labels, clip=clip, clip_index=0, seed=1,
                               out_dir=tmp_path / "replayed" / variant.name, grid=grid, recording=recording)
        assert _scores(replayed) == _scores(decoded), variant.name
        assert decoded.analysed > 0
        summary = json.loads((tmp_path / "replayed" / variant.name / "summary.json").read_text())
        assert summary["frames_analysed"] == decoded.analysed


def test_the_harness_reports_the_same_with_and_without_the_replay(tmp_path: Path) -> None:
    labels = load_labels(DEMO_LABELS)
    kwargs = dict(labels=labels, pair="simulated", seeds=[0], base=Settings(), policies=["student_only", "ours"],
                  informativeness=[0.5])
    fast = evaluate(out=tmp_path / "fast", replay=True, **kwargs)
    slow = evaluate(out=tmp_path / "slow", replay=False, **kwargs)
    assert [_scores(r) for r in fast.records] == [_scores(r) for r in slow.records]
    assert fast.table == slow.table


def test_replay_is_refused_where_it_would_differ(tmp_path: Path) -> None:
    labels = load_labels(DEMO_LABELS)
    base = Settings()
    settings = variant_settings(base, VARIANTS[0], 0, tmp_path)
    recording = record_clip(labels.video_path(labels.clips[0]), settings)
    assert replayable("simulated", settings, recording)
    # Pairs that read pixels, another gate thumbnail, the budget: decode again.
    assert not replayable("offline", settings, recording)
    assert not replayable("simulated", settings.model_copy(update={"gate": settings.gate.model_copy(update={"width": 96})}), recording)
    assert not replayable("simulated", settings.model_copy(update={"budget": settings.budget.model_copy(update={"enabled": True})}),
                          recording)
    motion = ReplayMotion(recording)
    with pytest.raises(ReplayMismatch):
        motion.wants(recording.timestamps[1])  # out of the recorded order
