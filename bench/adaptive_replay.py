"""Static vs adaptive thresholds over a long synthetic day (no model is called).

A synthetic camera day (source time 0 = local midnight, UTC): the student reports every few
seconds when calm and twice a second while something happens; it is darker and a little
less sure of itself at night; between 20:00 and 06:00 headlights sweep the scene every few
minutes and glare reads as ``intrusion`` for 2-3 frames; a load spike (teacher queue 70 %
full, student 8 s behind) hits at midday; labelled safety events (fall, fire, smoke,
intrusion — some by night) last tens of seconds.

Both arms run `EscalationPolicy` on `WindowStats` built by `SlidingWindow` from the same
synthetic `FrameReport`s.  A **simulated** teacher (named so in the output) confirms an
escalation that overlaps a labelled event with its flag and dismisses everything else
(headlight sweeps included); after a dismissal the policy suppresses the pattern as the
runner does.  The adaptive arm also feeds frame brightness, load and verdicts to
`ThresholdController` with a day/dusk/night profile config (printed below).

Prints teacher calls (by reason) and missed labelled events for each arm, and the cut.
Target: adaptive cuts teacher calls by >= 30 % with no more missed labelled events.

    /tmp/venv/bin/python bench/adaptive_replay.py [--seed 7] [--hours 24]
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.clock import ManualClock  # noqa: E402
from pipeline.config.loading import settings_from_dict  # noqa: E402
from pipeline.config.settings import Settings  # noqa: E402
from pipeline.incidents.escalation import EscalationPolicy, QueueState, Thresholds  # noqa: E402
from pipeline.records import FrameReport  # noqa: E402
from pipeline.incidents.thresholds import ThresholdController  # noqa: E402
from pipeline.incidents.window import SlidingWindow  # noqa: E402

CAMERA = "bench-cam"
HOUR = 3600.0
SUPPRESS_S = 30.0

ADAPTIVE_CONFIG: dict[str, Any] = {
    "camera_id": CAMERA,
    "adaptive": {
        "timezone": "UTC",
        "source_start": "2024-05-01T00:00:00+00:00",
        "profiles": {
            "night": {"start": "21:00", "end": "05:30", "brightness_min": 0, "brightness_max": 45,
                      "min_confidence": 0.62, "persistence_k": 3, "persistence_n": 4, "audit_every": 240},
            "dusk": {"start": "19:00", "end": "21:00", "min_confidence": 0.68},
            "day": {"start": "05:30", "end": "19:00"},
        },
        "period_dwell_s": 60,
    },
}


@dataclass(frozen=True)
class Label:
    flag: str
    start: float
    end: float


LABELS = (
    Label("intrusion", 2.25 * HOUR, 2.25 * HOUR + 30),
    Label("fall", 4.0 * HOUR, 4.0 * HOUR + 45),
    Label("fall", 10.0 * HOUR, 10.0 * HOUR + 40),
    Label("fire", 12.1 * HOUR, 12.1 * HOUR + 60),  # inside the load spike
    Label("fire", 14.5 * HOUR, 14.5 * HOUR + 60),
    Label("smoke", 19.8 * HOUR, 19.8 * HOUR + 50),
    Label("intrusion", 23.6 * HOUR, 23.6 * HOUR + 25),
)
LOAD_SPIKE = (12.0 * HOUR, 12.5 * HOUR)


def is_night(t: float) -> bool:
    hour = (t / HOUR) % 24
    return hour >= 20.0 or hour < 6.0


def brightness_at(t: float) -> float:
    hour = (t / HOUR) % 24
    if 7.0 <= hour < 19.0:
        return 120.0
    if 6.0 <= hour < 7.0:
        return 25.0 + 95.0 * (hour - 6.0)
    if 19.0 <= hour < 20.5:
        return 120.0 - 95.0 * (hour - 19.0) / 1.5
    return 25.0


def synthetic_day(seed: int, hours: float) -> list[tuple[FrameReport, float, bool]]:
    """(report, brightness, in a headlight sweep) in time order."""
    rng = random.Random(seed)
    end = hours * HOUR
    sweeps: list[float] = []
    t = 0.0
    while t < end:
        t += rng.uniform(150.0, 450.0)
        if is_night(t):
            sweeps.append(t)
    busy = [(lab.start, lab.end) for lab in LABELS] + [(s, s + 3.0) for s in sweeps]
    out: list[tuple[FrameReport, float, bool]] = []
    t, index = 0.0, 0
    while t < end:
        label = next((lab for lab in LABELS if lab.start <= t <= lab.end), None)
        sweep = next((s for s in sweeps if s <= t <= s + 3.0), None)
        night = is_night(t)
        flags: tuple[str, ...] = ()
        obs = ["empty yard"]
        conf = min(0.99, max(0.05, rng.gauss(0.76 if night else 0.86, 0.06)))
        if label is not None and rng.random() < 0.85:
            flags, obs, conf = (label.flag,), [f"{label.flag} visible"], rng.uniform(0.7, 0.9)
        elif sweep is not None:
            # Glare reads as someone in the yard on the first frames of the sweep.
            if t - sweep < 1.4:
                flags, obs = ("intrusion",), ["bright shape moving across the yard"]
            conf = rng.uniform(0.45, 0.65)
        out.append((FrameReport(CAMERA, index, t, tuple(obs), flags, conf, "simulated", "synthetic-student", "bench/1", 0.0),
                    brightness_at(t), sweep is not None))
        index += 1
        active = any(a - 1.0 <= t <= b for a, b in busy)
        t += 0.5 if active else rng.uniform(3.0, 6.0)
    return out


def queue_at(t: float) -> tuple[QueueState, float]:
    if LOAD_SPIKE[0] <= t < LOAD_SPIKE[1]:
        return QueueState(depth=11, capacity=15), 8.0
    return QueueState(depth=0, capacity=15), 0.3


def simulated_teacher(flags: frozenset[str], reason: str, t: float, window_s: float) -> tuple[str, frozenset[str]]:
    """Confirm what overlaps a labelled event with its flag; dismiss the rest."""
    for lab in LABELS:
        if lab.start - 1.0 <= t <= lab.end + window_s:
            if reason == "audit" or lab.flag in flags:
                return "confirmed", frozenset({lab.flag})
    return "dismissed", frozenset()


def run_arm(reports: list[tuple[FrameReport, float, bool]], settings: Settings, adaptive: bool, state_dir: Path) -> dict[str, Any]:
    window = SlidingWindow(CAMERA, settings.window.window_s)
    policy = EscalationPolicy(Thresholds.from_config(settings.escalation))
    controller = ThresholdController(settings, CAMERA, ManualClock(), state_dir / "state.json") if adaptive else None
    calls: Counter[str] = Counter()
    detected: set[Label] = set()
    changes: Counter[str] = Counter()
    for report, brightness, _sweep in reports:
        queue, lag = queue_at(report.timestamp)
        stats = window.add(report)
        if controller is not None:
            inforce, changed = controller.update(report.timestamp, brightness=brightness, queue=queue, student_lag_s=lag)
            policy.thresholds = inforce.thresholds
            changes.update(f"{c.cause}:{c.name}" for c in changed)
        decision = policy.evaluate(stats, queue)
        if not decision.escalate:
            continue
        calls[decision.reason.split(":")[0]] += 1
        kind, teacher_flags = simulated_teacher(decision.flags, decision.reason, report.timestamp, stats.window_s)
        if kind == "confirmed" and decision.reason.startswith("safety"):
            detected.update(lab for lab in LABELS if lab.flag in decision.flags and lab.start - 1.0 <= report.timestamp <= lab.end + stats.window_s)
        if kind == "dismissed":
            policy.suppress(decision.flags, report.timestamp + SUPPRESS_S, reason=decision.reason)
        if controller is not None:
            controller.record_verdict(decision.flags, decision.reason, kind, report.timestamp, teacher_flags)
    summary = controller.summary() if controller is not None else None
    return {"calls": calls, "total": sum(calls.values()), "missed": [lab for lab in LABELS if lab not in detected],
            "changes": changes, "summary": summary}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--hours", type=float, default=24.0)
    args = parser.parse_args(argv)
    if not 1.0 <= args.hours <= 24.0 * 14:
        parser.error("--hours must be in 1..336")
    reports = synthetic_day(args.seed, args.hours)
    static_settings = Settings(camera_id=CAMERA)
    adaptive_settings = settings_from_dict(ADAPTIVE_CONFIG)
    with tempfile.TemporaryDirectory() as tmp:
        static = run_arm(reports, static_settings, False, Path(tmp))
        adaptive = run_arm(reports, adaptive_settings, True, Path(tmp))
    sweeps = sum(1 for i, (_r, _b, s) in enumerate(reports) if s and (i == 0 or not reports[i - 1][2]))
    labels_in_run = [lab for lab in LABELS if lab.start < args.hours * HOUR]
    print(f"synthetic day: {args.hours:g} h, {len(reports)} student reports, {sweeps} headlight sweeps, "
          f"{len(labels_in_run)} labelled safety events, load spike {LOAD_SPIKE[0] / HOUR:g}-{LOAD_SPIKE[1] / HOUR:g} h")
    print("teacher: simulated (confirms labelled events, dismisses the rest); student: synthetic reports")
    for name, arm in (("static", static), ("adaptive", adaptive)):
        by_reason = ", ".join(f"{k} {v}" for k, v in sorted(arm["calls"].items()))
        missed = ", ".join(f"{m.flag}@{m.start / HOUR:.2f}h" for m in arm["missed"] if m in labels_in_run) or "none"
        print(f"  {name:<8}: teacher calls {arm['total']:5d} ({by_reason}); missed labelled events: {missed}")
    cut = 1.0 - adaptive["total"] / static["total"] if static["total"] else 0.0
    missed_static = sum(m in labels_in_run for m in static["missed"])
    missed_adaptive = sum(m in labels_in_run for m in adaptive["missed"])
    print(f"  teacher calls cut by {cut:.1%} (target >= 30%); missed labelled events static {missed_static}, adaptive {missed_adaptive}")
    print(f"  threshold changes logged: {sum(adaptive['changes'].values())} "
          f"({', '.join(f'{k} {v}' for k, v in sorted(adaptive['changes'].items()))})")
    fb = adaptive["summary"]["feedback"] if adaptive["summary"] else {}
    for period, table in fb.items():
        for key, row in table.items():
            print(f"  feedback {period}/{key}: dismissed {row['dismissal_rate']:.2f} of {row['verdicts']}, "
                  f"audit misses {row['miss_rate']:.2f} of {row['audits']}, adjustment {row['offset']:+d}")
    met = cut >= 0.30 and missed_adaptive <= missed_static
    print(f"  target {'met' if met else 'NOT met'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
