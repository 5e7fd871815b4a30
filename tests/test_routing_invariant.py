"""Escalation may add evidence or delay an alert, never erase one — on real clip timelines.

A small version of issue 17's check (simulated pair, clips of the shared folder, seeds 0-4): for
every labelled safety event the student alone found and ours did not, every frame on which the
student flagged that type within the event's match window was seen by the teacher and dismissed
(a dismissal covers it).  Ours may lose an event only to a teacher who looked at the evidence and
said no — never to a verdict that suppressed evidence which came after what the teacher saw.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config import Settings
from pipeline.incidents.verdicts import Coverage, covers
from pipeline.sinks.decision_log import FrameDecision, VerdictReceived, read_decisions
from tools.evaluation import Variant, run_all
from tools.labels import load_labels

CLIPS = Path(__file__).resolve().parent.parent.parent / "shared" / "fixtures" / "clips"
#: Clips whose safety events are short (falls at a clip's end, scene cuts) or long with phantoms around.
SMALL_SET = ("assistiot_fall_knees_forward", "fall_hallway", "fall_lounge", "scene_cuts", "synthetic_solid")
SEEDS = (0, 1, 2, 3, 4)


def _coverages(run_dir: Path) -> list[Coverage]:
    out = []
    for record in read_decisions(run_dir / "decisions.jsonl"):
        if isinstance(record, VerdictReceived) and record.covers:
            c = record.covers
            out.append(Coverage(frozenset(c["flags"]), float(c["until"]), float(c["strength"]), str(c["escalation_id"])))
    return out


def _flagged(run_dir: Path, kind: str, start: float, end: float) -> list[tuple[float, float]]:
    """(t, confidence) of the frames whose student report flags ``kind`` between start and end."""
    out = []
    for record in read_decisions(run_dir / "decisions.jsonl"):
        if isinstance(record, FrameDecision) and start <= record.t <= end:
            student = record.student or {}
            if kind in [str(f).lower() for f in student.get("safetyFlags", [])]:
                out.append((record.t, float(student.get("confidence", 0.0))))
    return out


@pytest.mark.skipif(not (CLIPS / "labels.json").is_file(), reason="the shared clips are not on this machine")
def test_ours_never_loses_an_event_to_a_verdict_that_suppressed_later_evidence(tmp_path: Path) -> None:
    labels = load_labels(CLIPS / "labels.json")
    clips = [c for c in labels.clips if any(c.file.startswith(name) for name in SMALL_SET)]
    assert len(clips) == len(SMALL_SET)
    settings = Settings()
    tolerance = settings.evaluation.match_tolerance_s
    (records,) = run_all([Variant("student_only", "student_only"), Variant("ours", "ours")], labels=labels, clips=clips,
                         pair="simulated", seeds=SEEDS, settings=[(settings, tmp_path / "runs")], fixed_interval_s=None,
                         say=lambda _: None)
    runs = {(r.seed, r.clip, r.policy): r for r in records}
    checked = lost = 0
    for (seed, clip_file, policy), ours in runs.items():
        if policy != "ours":
            continue
        alone = runs[(seed, clip_file, "student_only")]
        clip = next(c for c in clips if c.file == clip_file)
        run_dir = Path(ours.out_dir)
        coverages = _coverages(run_dir)
        for i in alone.score.found_safety - ours.score.found_safety:
            lost += 1
            event = clip.events[i]
            for t, confidence in _flagged(run_dir, event.type, event.start - tolerance, event.end + tolerance):
                checked += 1
                assert any(covers(c, event.type, t, confidence) for c in coverages), (
                    f"seed {seed} {clip_file}: {event.type} flagged at t={t} after what the teacher saw, yet the event was lost")
    # Ours may lose events here (the lab fall on seed 0: the student's late flags, shown to the teacher,
    # dismissed), and each such loss was checked above frame by frame.
    assert lost == 0 or checked > 0


ACTIVITY_SET = ("scene_cuts", "fdv_fire", "fall_corridor")


@pytest.mark.skipif(not (CLIPS / "labels.json").is_file(), reason="the shared clips are not on this machine")
def test_an_activity_event_is_dismissed_only_by_a_teacher_who_saw_the_claim_and_did_not_name_it(tmp_path: Path) -> None:
    """Every person/vehicle event ours dismissed began no later than a keyframe on which the student
    named that kind, and the verdict on that keyframe's sequence does not name it."""
    from pipeline.incidents.evidence import activity_kinds
    from pipeline.sinks.decision_log import EscalationSent
    from tools.evaluation.scoring import read_event_log

    labels = load_labels(CLIPS / "labels.json")
    clips = [c for c in labels.clips if any(c.file.startswith(name) for name in ACTIVITY_SET)]
    (records,) = run_all([Variant("ours", "ours")], labels=labels, clips=clips, pair="simulated", seeds=SEEDS,
                         settings=[(Settings(), tmp_path / "runs")], fixed_interval_s=None, say=lambda _: None)
    dismissed = 0
    for record in records:
        run_dir = Path(record.out_dir)
        decisions = list(read_decisions(run_dir / "decisions.jsonl"))
        said = {round(d.t, 3): activity_kinds((d.student or {}).get("observations", []))
                for d in decisions if isinstance(d, FrameDecision)}
        keyframes = {d.id: d.keyframes for d in decisions if isinstance(d, EscalationSent)}
        looks = [(keyframes.get(v.verdict.get("escalation_id"), []), activity_kinds(v.verdict.get("observations", [])))
                 for v in decisions if isinstance(v, VerdictReceived) and v.verdict.get("verdict") != "unverified"]
        for line in read_event_log(run_dir / "events.jsonl"):
            if line.get("severity") != "activity" or line.get("review") != "dismissed" or line.get("phase") != "end":
                continue
            dismissed += 1
            kind, start = line["type"], float(line["start"])
            assert any(kind not in teacher and any(k >= start - 1e-3 and kind in said.get(round(k, 3), ()) for k in keys)
                       for keys, teacher in looks), f"seed {record.seed} {record.clip}: {kind} from {start} dismissed unseen"
    assert dismissed > 0  # the simulated student's phantom persons on these clips are dismissed
