"""Gate + keyframe budget quality on the real clips, against their labels.

Runs the change gate on *every* decoded frame of each clip in ../shared/fixtures/clips/
(or --clips DIR) and the keyframe budget on its decisions (no model, no safety flags), and
prints per clip and in total:

* frames sent per minute of video, and how many times fewer that is than plain 2 fps sampling;
* event recall: an event counts as found when a sent frame lies in [start, end + 1 s]; overall,
  for events starting after the first second, and for fall and tamper events;
* the global-change hints the gate raised (tamper / lighting_change);
* gate milliseconds per frame (mean and p95, one core, cv2 single-threaded).

Target on the totals: >= 5x fewer frames than 2 fps at >= 95% event recall, every fall and
tamper found, gate <= 1 ms per frame.  The figures are printed whether or not they meet it.
Settings are the defaults of `pipeline.config.Settings` for every clip (override with --config).

    python bench/gate_quality.py [--clips DIR] [--config FILE] [--verbose]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # runnable from the project root without install

import cv2  # noqa: E402

from pipeline.frames.budget import KeyframeBudget  # noqa: E402
from pipeline.sources.capture import Sampler, open_source  # noqa: E402
from pipeline.clock import SystemClock  # noqa: E402
from pipeline.config.loading import load_settings  # noqa: E402
from pipeline.errors import SourceError  # noqa: E402
from pipeline.frames.gate import ChangeGate  # noqa: E402
from pipeline.records import GateReason  # noqa: E402

DEFAULT_CLIPS = ROOT.parent / "shared" / "fixtures" / "clips"
SLACK_S = 1.0
EARLY_S = 1.0
TARGET_RATIO, TARGET_RECALL, TARGET_GATE_MS = 5.0, 0.95, 1.0


@dataclass
class ClipResult:
    name: str
    duration_s: float
    frames: int = 0
    sent: list[float] = field(default_factory=list)
    sent_reasons: Counter[str] = field(default_factory=Counter)
    plain_2fps: int = 0
    gate_ms: list[float] = field(default_factory=list)
    hints: Counter[str] = field(default_factory=Counter)
    events: list[tuple[str, float, float, bool]] = field(default_factory=list)  # type, start, end, found
    error: str = ""

    def found(self, kinds: set[str] | None = None, after: float | None = None) -> tuple[int, int]:
        chosen = [e for e in self.events if (kinds is None or e[0] in kinds) and (after is None or e[1] > after)]
        return sum(1 for e in chosen if e[3]), len(chosen)


def pin_to_one_core() -> str:
    cv2.setNumThreads(1)
    if not hasattr(os, "sched_setaffinity"):
        return "not pinned; cv2.setNumThreads(1)"
    cpu = sorted(os.sched_getaffinity(0))[0]
    os.sched_setaffinity(0, {cpu})
    return f"pinned to CPU {cpu}; cv2.setNumThreads(1)"


def run_clip(path: Path, clip_labels: dict, settings) -> ClipResult:  # type: ignore[no-untyped-def]
    result = ClipResult(path.name, float(clip_labels.get("duration_s", 0.0)))
    gate = ChangeGate(settings.gate)
    budget = KeyframeBudget(settings.budget, settings.capture.sample_fps)
    sampler = Sampler(2.0)
    last_ts = 0.0
    held_ts: float | None = None
    try:
        with open_source(str(path), camera_id=path.stem, cfg=settings.capture, clock=SystemClock()) as source:
            for frame in source.frames():
                start = time.perf_counter()
                decision = gate.check(frame)
                result.gate_ms.append((time.perf_counter() - start) * 1000.0)
                result.frames += 1
                last_ts = frame.timestamp
                result.plain_2fps += sampler.accept(frame.timestamp)
                if decision.reason is GateReason.GLOBAL_CHANGE or decision.global_kind:
                    result.hints[decision.global_kind or "unclassified"] += 1
                verdict = budget.admit(decision, frame.timestamp, safety_active=False)
                if verdict.send:
                    result.sent.append(frame.timestamp)
                    result.sent_reasons[verdict.reason] += 1
                elif decision.passed:
                    held_ts = frame.timestamp  # the frame the runner holds for the budget's final look
            final = budget.finish()
            if final.send and held_ts is not None:
                result.sent.append(held_ts)
                result.sent_reasons[final.reason] += 1
    except SourceError as exc:
        result.error = str(exc)
    if result.duration_s <= 0:
        result.duration_s = last_ts
    for event in clip_labels.get("events", []):
        lo, hi = float(event["start"]), float(event["end"]) + SLACK_S
        result.events.append((event["type"], lo, hi - SLACK_S, any(lo <= t <= hi for t in result.sent)))
    return result


def fmt_recall(found: int, total: int) -> str:
    return f"{found}/{total}" if total else "-"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=Path, default=DEFAULT_CLIPS, help="folder with the clips and labels.json")
    parser.add_argument("--config", type=Path, default=None, help="YAML settings (defaults otherwise)")
    parser.add_argument("--verbose", action="store_true", help="also list sent timestamps and missed events")
    args = parser.parse_args(argv)

    labels_path = args.clips / "labels.json"
    if not labels_path.is_file():
        print(f"skipped: no clips with labels.json in {args.clips}")
        return 0
    labels = json.loads(labels_path.read_text(encoding="utf-8"))
    settings = load_settings(args.config)
    print(f"edgewatch gate + keyframe budget quality (perfect model assumed, gate+budget only) — {args.clips}")
    print(f"CPU: {pin_to_one_core()}; OpenCV {cv2.__version__}")
    b = settings.budget
    print(f"budget: {b.max_calls_per_min}/min, spacing {b.min_spacing_s:g} s, onset after {b.onset_confirm_s:g} s, "
          f"active refresh {b.active_refresh_s:g} s (>= {b.active_ratio:g} of strongest), refresh {b.refresh_s:g} s "
          f"(>= {b.weak_ratio:g}), peak x{b.peak_factor:g}")
    print(f"gate: "
          f"grid {settings.gate.grid_cols} cols on {settings.gate.width} px, lag {settings.gate.lag_s:g} s")
    print()

    results: list[ClipResult] = []
    for clip in labels["clips"]:
        path = args.clips / clip["file"]
        if not path.is_file():
            print(f"{clip['file']}: missing, skipped")
            continue
        results.append(run_clip(path, clip, settings))

    header = (f"{'clip':<50s} {'dur s':>6s} {'frames':>6s} {'sent':>5s} {'/min':>6s} {'2fps':>5s} {'x fewer':>7s} "
              f"{'events':>7s} {'>1s':>6s} {'fall':>5s} {'tamper':>6s} {'gate ms':>8s} {'p95':>6s}  hints")
    print(header)
    print("-" * len(header))
    for r in results:
        minutes = r.duration_s / 60.0
        per_min = len(r.sent) / minutes if minutes > 0 else 0.0
        ratio = r.plain_2fps / len(r.sent) if r.sent else float("inf")
        ordered = sorted(r.gate_ms) or [0.0]
        hints = ", ".join(f"{k} {v}" for k, v in sorted(r.hints.items())) or "-"
        print(f"{r.name[:50]:<50s} {r.duration_s:6.1f} {r.frames:6d} {len(r.sent):5d} {per_min:6.1f} {r.plain_2fps:5d} "
              f"{ratio:7.1f} {fmt_recall(*r.found()):>7s} {fmt_recall(*r.found(after=EARLY_S)):>6s} "
              f"{fmt_recall(*r.found({'fall'})):>5s} {fmt_recall(*r.found({'tamper'})):>6s} "
              f"{statistics.fmean(ordered):8.3f} {ordered[int(0.95 * (len(ordered) - 1))]:6.3f}  {hints}")
        if r.error:
            print(f"    error: {r.error}")
        if args.verbose:
            print(f"    sent: {[round(t, 2) for t in r.sent]}  reasons {dict(r.sent_reasons)}")
            for kind, start, end, found in r.events:
                if not found:
                    print(f"    MISSED {kind} {start:.2f}-{end:.2f}")

    total_minutes = sum(r.duration_s for r in results) / 60.0
    total_sent = sum(len(r.sent) for r in results)
    total_plain = sum(r.plain_2fps for r in results)
    all_ms = [ms for r in results for ms in r.gate_ms]

    def total_found(kinds: set[str] | None = None, after: float | None = None) -> tuple[int, int]:
        pairs = [r.found(kinds, after) for r in results]
        return sum(p[0] for p in pairs), sum(p[1] for p in pairs)

    def share(pair: tuple[int, int]) -> float:
        return pair[0] / pair[1] if pair[1] else 1.0

    ratio = total_plain / total_sent if total_sent else float("inf")
    recall, recall_late = total_found(), total_found(after=EARLY_S)
    falls, tampers = total_found({"fall"}), total_found({"tamper"})
    gate_ms = statistics.fmean(all_ms) if all_ms else 0.0
    reasons = Counter[str]()
    for r in results:
        reasons.update(r.sent_reasons)
    print()
    print(f"TOTAL over {len(results)} clips, {total_minutes:.2f} min of video, {sum(r.frames for r in results)} frames gated")
    print(f"  frames sent: {total_sent} = {total_sent / total_minutes:.1f} per minute; plain 2 fps: {total_plain} "
          f"-> {ratio:.2f}x fewer  (target >= {TARGET_RATIO:g}x: {'MET' if ratio >= TARGET_RATIO else 'NOT MET'})")
    print(f"  sent by reason: {dict(sorted(reasons.items()))}")
    print(f"  event recall: {recall[0]}/{recall[1]} = {share(recall):.1%}  (target >= {TARGET_RECALL:.0%}: "
          f"{'MET' if share(recall) >= TARGET_RECALL else 'NOT MET'}); events starting after {EARLY_S:g} s: "
          f"{recall_late[0]}/{recall_late[1]} = {share(recall_late):.1%}")
    print(f"  fall recall: {falls[0]}/{falls[1]}; tamper recall: {tampers[0]}/{tampers[1]}  "
          f"(target all: {'MET' if falls[0] == falls[1] and tampers[0] == tampers[1] else 'NOT MET'})")
    print(f"  gate: {gate_ms:.3f} ms per frame mean (target <= {TARGET_GATE_MS:g} ms: "
          f"{'MET' if gate_ms <= TARGET_GATE_MS else 'NOT MET'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
