"""``edgewatch evaluate``: how much of the teacher's accuracy routing keeps, at what cost.

Every policy runs the real pipeline (`pipeline.runner.Runner`: capture, gate, encode, window,
states, policy, teacher queue) on the same labelled clips with the same student/teacher pair:

=====================  ==========================================================================
student_only           our pipeline, a policy that never escalates (alerts from k-of-n persistence)
teacher_only           the teacher answers every analysed frame (it sits in the student's slot)
ours                   the default `EscalationPolicy` (sequences of up to ``max_keyframes``)
fixed_interval         gate off, one frame every N s straight to the teacher (N matched to ours'
                       teacher images on the clip unless ``--fixed-interval-s``)
confidence_only        any single frame below ``min_confidence`` goes to the teacher alone
ours_single_frame      ours, but each escalation carries one keyframe (``max_keyframes = 1``)
=====================  ==========================================================================

Metrics (per seed pooled over clips, then mean ± sd over seeds):

* **event recall / precision** — a labelled event is found when a detection of its type
  overlaps it widened by ``match_tolerance_s`` each side.  Detections are alerts that the
  teacher did not dismiss, and for person/vehicle the activity events; ``motion`` activity
  has no labelled counterpart and is not counted.  Precision = detections that overlap a
  labelled event of their type / detections.
* **safety recall**, and **missed vs teacher-only**: labelled safety events that the
  teacher-only run found and this policy did not (same clip, same seed).
* **frame accuracy** — on the standard sampling grid (every 1 / ``capture.sample_fps`` s,
  the frames the pipeline samples) inside labelled intervals (events or quiet), leaving out
  ``match_tolerance_s`` either side of each safety event's start and end: the set of safety
  types the system is alerting on at that instant (open alerts — a dismissed one until its
  dismissal) equals the labelled set.  Every policy is scored at the same instants, whatever
  it analysed.  Activity (person/vehicle) is scored by event recall/precision only: activity
  events are not routed to the teacher.
* **time to alert** — for found safety events: start of the first matching detection minus
  the event's start (0 when it was already open).
* **calls, images, share, compute** — student calls; teacher calls (reviews, or analysed
  frames when the teacher sits in the student's slot); teacher images (keyframes sent, a
  frame in two sequences counted twice; in the slot, one per analysed frame); teacher share
  = distinct frames the teacher saw / frames the standard pipeline analyses on that clip
  (the student-only run's analysed frames); model compute = summed latencies: measured for
  offline/ollama, the configured figures for simulated.

The package, by job: `runs` (one policy variant on one clip through the real pipeline),
`replay` (one decode of a clip replayed to every run: the fast path), `scoring` (detections,
matching, per-run counts, pooled metrics), `costs` (calls, images, model-seconds from the
decision log), `sweeps` (policy families over their knobs, cost–quality points), `targets`
(issue 17's checks), `report` and `plots` (tables, report.md, PNGs), `harness` (the whole
evaluation, clip jobs in a process pool).
"""

from __future__ import annotations

from tools.evaluation.costs import RunCosts, model_seconds, run_costs
from tools.evaluation.harness import EvaluationBlock, EvaluationResult, evaluate, run_all
from tools.evaluation.report import markdown_table
from tools.evaluation.runs import (DEMO_LABELS, PAIRS, POLICIES, SHARED_CLIPS, TEACHER_SLOT, TeacherAsStudent, Variant,
                                   make_backends, policy_factory, run_variant, variant_settings)
from tools.evaluation.scoring import (ClipScore, Detection, RunRecord, aggregate, alerted_types, detections_from_events,
                                      match_events, per_type_event_f1, pooled_metrics, sample_grid, score_clip,
                                      weighted_event_f1)
from tools.evaluation.sweeps import INFORMATIVENESS, SWEEPS, cost_quality_points, variants_for
from tools.evaluation.targets import dominated, paired_time_to_alert, target_check

__all__ = ["DEMO_LABELS", "INFORMATIVENESS", "PAIRS", "POLICIES", "SHARED_CLIPS", "SWEEPS", "TEACHER_SLOT", "ClipScore",
           "Detection", "EvaluationBlock", "EvaluationResult", "RunCosts", "RunRecord", "TeacherAsStudent", "Variant",
           "aggregate", "alerted_types", "cost_quality_points", "detections_from_events", "dominated", "evaluate",
           "make_backends", "markdown_table", "match_events", "model_seconds", "paired_time_to_alert", "per_type_event_f1",
           "policy_factory", "pooled_metrics", "run_all", "run_costs", "run_variant", "sample_grid", "score_clip",
           "target_check", "variant_settings", "variants_for", "weighted_event_f1"]
