"""Reliability table, ECE, the monotone map (fitted, better on held-out data, applied through
the Learner), and the fine-tune readiness gate."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from pipeline.learning.calibration_map import CalibrationMap, Example, Learner, MonotoneMap, examples_from, fit_calibration, isotonic_fit
from commands.learning import cmd_calibration, cmd_finetune_readiness
from tools.calibration import expected_calibration_error, reliability_table
from tools.readiness import prompt_plateau, readiness
from pipeline.config.learning import LearningConfig
from pipeline.records import VerdictKind
from test_agreement_store import escalation, open_store, scene, verdict

ROOT = Path(__file__).resolve().parent.parent


def synthetic(n: int, seed: int, truth=lambda c: c) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    conf = rng.uniform(0.0, 1.0, n)
    return conf, rng.uniform(0.0, 1.0, n) < truth(conf)


def test_perfectly_calibrated_confidence_has_small_ece() -> None:
    conf, hit = synthetic(20000, 1)
    assert expected_calibration_error(conf, hit) < 0.02
    table = reliability_table(conf, hit, bins=10)
    assert len(table) == 10 and sum(b.n for b in table) == 20000
    for b in table:
        assert abs(b.agreement - b.mean_confidence) < 0.04


def test_overconfidence_shows_in_table_and_ece() -> None:
    # Right only half as often as claimed: the gap in each bin is half its confidence.
    conf, hit = synthetic(20000, 2, truth=lambda c: 0.5 * c)
    assert expected_calibration_error(conf, hit) == pytest.approx(0.25, abs=0.02)
    for b in reliability_table(conf, hit):
        assert b.gap == pytest.approx(0.5 * b.mean_confidence, abs=0.04)


def test_empty_and_mismatched_input() -> None:
    assert np.isnan(expected_calibration_error([], []))
    with pytest.raises(ValueError):
        reliability_table([0.5], [True, False])


def test_pool_adjacent_violators() -> None:
    kx, ky = isotonic_fit([1, 2, 3, 4], [1, 0, 1, 1])
    assert list(ky) == [0.5, 1.0] and list(kx) == [1.5, 3.5]
    _, ky = isotonic_fit(np.arange(50), np.random.default_rng(3).uniform(size=50))
    assert np.all(np.diff(ky) >= 0)


def test_map_improves_ece_on_held_out_data() -> None:
    overconfident = lambda c: 0.2 + 0.5 * c ** 2  # noqa: E731
    train_c, train_hit = synthetic(4000, 4, overconfident)
    test_c, test_hit = synthetic(4000, 5, overconfident)
    m = MonotoneMap.fit(train_c, train_hit)
    raw, calibrated = expected_calibration_error(test_c, test_hit), expected_calibration_error(m(test_c), test_hit)
    assert raw > 0.15
    assert calibrated < 0.03 and calibrated < raw / 5
    assert np.all(np.diff(m(np.linspace(0, 1, 101))) >= -1e-12)


def _examples(conf: np.ndarray, hit: np.ndarray, flags: frozenset[str]) -> list[Example]:
    return [Example(float(c), flags, bool(h), "cam", i) for i, (c, h) in enumerate(zip(conf, hit))]


def test_per_flag_maps_and_minimum_examples() -> None:
    c1, h1 = synthetic(600, 6, lambda c: 0.3 + 0 * c)
    c2, h2 = synthetic(600, 7, lambda c: 0.95 + 0 * c)
    fire, calm = _examples(c1, h1, frozenset({"fire"})), _examples(c2, h2, frozenset())
    cmap = fit_calibration(fire + calm, min_examples=100)
    assert cmap.version.startswith("cal/1200-") and set(cmap.by_flag) == {"fire", "none"}
    assert cmap.apply(0.9, ["fire"]) == pytest.approx(0.3, abs=0.12)
    assert cmap.apply(0.9, []) == pytest.approx(0.95, abs=0.08)
    assert cmap.apply(0.9, ["fire", "smoke"]) == cmap.apply(0.9, ["fire"])  # smoke has no map: fire's
    assert cmap.apply(0.9, ["smoke"]) == pytest.approx(float(cmap.overall(0.9)))  # no flag map: overall
    assert CalibrationMap.from_json(json.loads(json.dumps(cmap.to_json()))) == cmap
    too_few = fit_calibration(fire[:50], min_examples=100)
    assert too_few.is_identity and too_few.version == "raw" and too_few.apply(0.9, ["fire"]) == 0.9


def _fill(store, n: int, *, agree_below: float = 0.0, start: int = 0) -> None:
    """n records of distinct scenes; the teacher agrees (no flag) with the student's 'fire' report only
    when the student's confidence is below ``agree_below`` — an overconfident student."""
    for i in range(start, start + n):
        conf = 0.5 + 0.5 * ((i * 37) % 100) / 100
        esc = escalation(f"cam{i % 2}", i, scene(1000 + i), flags=("fire",), confidence=conf)
        flags = ("fire",) if conf < agree_below else ()
        kind = VerdictKind.CONFIRMED if flags else VerdictKind.DISMISSED
        assert store.add(esc, verdict(esc, kind, flags), skill_version="student/1", thresholds={}).stored


def test_learner_applies_the_map_once_enough_examples_and_logs_the_version(tmp_path: Path) -> None:
    changes: list = []
    store = open_store(tmp_path, calibration_min_examples=60, calibrate=True)
    learner = Learner(store, store.cfg, on_change=changes.append, refit_every=5)
    report = escalation("cam0", 500, scene(5), flags=("fire",), confidence=0.95).timeline[-1]
    assert learner.version == "raw" and learner.calibrate(report) is report
    _fill(store, 19, agree_below=0.7)  # 57 examples: still raw after refit
    assert learner.refit().is_identity
    # Through the Learner: the newest keyframe reports were calibrated, the store keeps them raw.
    for i in range(19, 30):
        esc = escalation(f"cam{i % 2}", i, scene(1000 + i), flags=("fire",), confidence=0.9)
        learner.record(esc, verdict(esc, VerdictKind.DISMISSED), thresholds={"min_confidence": 0.72}, skill_version="student/1")
    assert learner.version.startswith("cal/") and changes and changes[-1].version == learner.version
    calibrated = learner.calibrate(report)
    assert calibrated.confidence < 0.5 < report.confidence  # the student claims 0.95 but is usually dismissed
    switched_off = Learner(store, store.cfg.model_copy(update={"calibrate": False}))
    assert not switched_off.map.is_identity and switched_off.calibrate(report) is report
    mapped = escalation("cam0", 600, scene(6), flags=("fire",), confidence=0.95)
    timeline = tuple(learner.calibrate(r) for r in mapped.timeline)
    from dataclasses import replace

    learner.record(replace(mapped, timeline=timeline), verdict(mapped, VerdictKind.DISMISSED), thresholds={}, skill_version="student/1")
    stored = [r for r in store.records() if r.escalation_id == mapped.id][0]
    assert [r.confidence for r in stored.reports] == [0.95] * 3
    assert stored.calibration_version == learner.version
    learner.close()


def _skills(tmp_path: Path, scores: list[float]) -> Path:
    skills = tmp_path / "skills"
    (skills / "student").mkdir(parents=True)
    seed = json.loads((ROOT / "skills" / "student" / "student-1.json").read_text())
    for n, score in enumerate(scores, start=1):
        data = dict(seed, version=f"student/{n}", parent=f"student/{n - 1}" if n > 1 else None,
                    scores={"suite": "s", "methods": ["exact"], "student_model": "m",
                            "splits": {"heldout": {"overall": score, "safety": {"recall": 1.0}}}})
        (skills / "student" / f"student-{n}.json").write_text(json.dumps(data))
    shutil.copy(ROOT / "skills" / "active_skill.json", skills / "active_skill.json")
    return skills


def test_prompt_plateau_needs_k_versions_within_margin(tmp_path: Path) -> None:
    assert not prompt_plateau(_skills(tmp_path / "a", [0.6, 0.7]), 3, 0.02).reached
    moving = prompt_plateau(_skills(tmp_path / "b", [0.5, 0.6, 0.7, 0.8]), 3, 0.02)
    assert not moving.reached and "0.200" in moving.why
    flat = prompt_plateau(_skills(tmp_path / "c", [0.5, 0.80, 0.81, 0.805]), 3, 0.02)
    assert flat.reached and flat.versions == ("student/2", "student/3", "student/4")


def test_readiness_at_the_right_counts_and_plateau(tmp_path: Path) -> None:
    flat, moving = _skills(tmp_path / "flat", [0.8, 0.81, 0.8]), _skills(tmp_path / "moving", [0.5, 0.6, 0.7])
    cfg = LearningConfig(readiness_min_examples=100, plateau_k=3, plateau_margin=0.02)
    with open_store(tmp_path) as store:
        _fill(store, 99, agree_below=0.75)
        r = readiness(store.records(), flat, cfg)
        assert not r.ready and r.good_examples == 99
        assert r.missing == ("1 more good examples (99 of 100: reviewed, firm verdict, image on disk)",)
        assert set(r.per_class) == {"fire", "none"} and sum(r.per_class.values()) == 99
        assert 0 < r.balance <= 1 and "fire" in r.agreement_by_flag
        _fill(store, 1, agree_below=0.75, start=99)
        assert readiness(store.records(), flat, cfg).ready
        not_flat = readiness(store.records(), moving, cfg)
        assert not not_flat.ready and len(not_flat.missing) == 1 and "plateau" in not_flat.missing[0]
        # A verdict the teacher could not give is not a good example.
        esc = escalation("cam0", 700, scene(700))
        store.add(esc, verdict(esc, VerdictKind.CONFIRMED), skill_version="student/1", thresholds={})
        rec = store.records()[-1]
        rec.newest_keyframe.path.unlink()
        assert readiness(store.records(), flat, cfg).good_examples == 100


def test_cli_calibration_and_readiness(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with open_store(tmp_path) as store:
        _fill(store, 40, agree_below=0.7)
    db = str(tmp_path / "agreement.sqlite")
    plot = tmp_path / "plot" / "reliability.png"
    assert cmd_calibration(["--store", db, "--plot", str(plot)]) == 0
    out = capsys.readouterr().out
    assert "120 labelled student reports" in out and "fire" in out and "ECE raw" in out
    assert plot.is_file() or plot.with_suffix(".csv").is_file()
    assert cmd_finetune_readiness(["--store", db, "--skills-dir", str(_skills(tmp_path, [0.8, 0.8, 0.8]))]) == 1
    assert "NOT READY" in capsys.readouterr().out


def test_examples_label_agreement_on_keyframe_reports(tmp_path: Path) -> None:
    with open_store(tmp_path) as store:
        a = escalation("cam0", 1, scene(1), flags=("fire",))
        store.add(a, verdict(a, flags=("fire",)), skill_version="s", thresholds={})
        b = escalation("cam0", 2, scene(2), flags=("fire",))
        store.add(b, verdict(b, VerdictKind.DISMISSED), skill_version="s", thresholds={})
        ex = examples_from(store.records())
    assert [e.agrees for e in ex] == [True] * 3 + [False] * 3
    assert all(e.flags == {"fire"} for e in ex)
