"""The sliding window: aggregates over source time, built from replayed reports (no video)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.records import EncodedFrame, Frame, FrameReport, GateDecision, GateReason
from pipeline.incidents.window import SlidingWindow

CAM = "cam1"


def report(t: float, flags: tuple[str, ...] = (), conf: float = 0.9, obs: tuple[str, ...] = ("person walking",),
           *, error: str | None = None, camera: str = CAM, index: int | None = None) -> FrameReport:
    return FrameReport(
        camera=camera, frame_index=int(t * 10) if index is None else index, timestamp=t, observations=obs,
        safety_flags=flags, confidence=conf, backend="offline", model="test", prompt_version="v1",
        latency_ms=1.0, error=error,
    )


def item(t: float, reason: GateReason = GateReason.CHANGE) -> EncodedFrame:
    frame = Frame(source_id=CAM, index=int(t * 10), timestamp=t, image=np.zeros((4, 4, 3), np.uint8))
    return EncodedFrame(frame=frame, jpeg=b"", b64="", width=4, height=4,
                        gate=GateDecision(passed=True, reason=reason, score=1.0, changed_fraction=0.7))


def test_empty_window_has_no_reports() -> None:
    w = SlidingWindow(CAM, 10.0)
    s = w.stats()
    assert s.n_reports == 0 and s.recent_evidence == () and w.entries() == ()


def test_streaks_and_flips() -> None:
    w = SlidingWindow(CAM, 100.0)
    seq = [(), ("fire",), ("fire", "smoke"), (), ("fire",), ("fire",)]
    for i, flags in enumerate(seq):
        s = w.add(report(float(i), flags))
    assert s.n_reports == 6
    assert s.flag_streak == {"fire": 2}  # only flags of the newest report
    assert s.active_flags == frozenset({"fire"})
    # fire: off→on, on→off, off→on = 3 switches; smoke: on at 2, off at 3 = 2 switches.
    assert s.flips == {"fire": 3, "smoke": 2}


def test_flags_are_normalised() -> None:
    w = SlidingWindow(CAM, 10.0)
    w.add(report(0.0, ("Person Fall",)))
    s = w.add(report(1.0, (" person-fall ",)))
    assert s.flag_streak == {"person_fall": 2}
    assert s.flips == {"person_fall": 0}


def test_confidence_mean_and_last() -> None:
    w = SlidingWindow(CAM, 100.0)
    for i, c in enumerate([0.9, 0.8, 0.6, 0.5]):
        s = w.add(report(float(i), conf=c))
    assert s.confidence_mean == pytest.approx(0.7)
    assert s.confidence_last == pytest.approx(0.5)


def test_eviction_is_by_source_time_not_count() -> None:
    slow = SlidingWindow(CAM, 5.0)
    for i in range(11):  # 1 report per second, t = 0..10
        s = slow.add(report(float(i)))
    assert s.n_reports == 6  # t = 5..10
    assert [r.timestamp for r, _ in slow.entries()] == [5.0, 6.0, 7.0, 8.0, 9.0, 10.0]

    fast = SlidingWindow(CAM, 5.0)
    for i in range(41):  # 4 reports per second, t = 0..10
        s = fast.add(report(i * 0.25))
    assert s.n_reports == 21  # t = 5.0..10.0 in steps of 0.25

    gap = SlidingWindow(CAM, 5.0)
    for t in (0.0, 1.0, 2.0, 30.0):
        s = gap.add(report(t))
    assert s.n_reports == 1 and s.timestamp == 30.0


def test_hard_cap_on_entries() -> None:
    w = SlidingWindow(CAM, 1000.0, max_entries=50)
    for i in range(200):
        s = w.add(report(i * 0.01))
    assert s.n_reports == 50 == len(w)
    assert w.entries()[0][0].timestamp == pytest.approx(1.5)


def test_scene_change_errors_and_entries_keep_items() -> None:
    w = SlidingWindow(CAM, 10.0)
    i0, i1 = item(0.0), item(1.0, GateReason.GLOBAL_CHANGE)
    s = w.add(report(0.0), i0)
    assert s.scene_change is False
    s = w.add(report(1.0), i1)
    assert s.scene_change is True
    s = w.add(report(2.0, ("model_error",), conf=0.0, obs=(), error="timeout"))
    assert s.errors == 1 and s.scene_change is False  # no item for the newest report
    entries = w.entries()
    assert [e[1] for e in entries] == [i0, i1, None]
    assert s.observations == () and s.active_flags == frozenset({"model_error"})


def test_out_of_order_report_is_placed_by_time() -> None:
    w = SlidingWindow(CAM, 10.0)
    w.add(report(1.0))
    w.add(report(3.0, ("fire",)))
    s = w.add(report(2.0))
    assert [r.timestamp for r, _ in w.entries()] == [1.0, 2.0, 3.0]
    assert s.timestamp == 3.0 and s.active_flags == frozenset({"fire"})
    s = w.add(report(-20.0))  # older than the whole window: ignored
    assert s.n_reports == 3


def test_malformed_reports_are_skipped_not_raised() -> None:
    w = SlidingWindow(CAM, 10.0)
    w.add(report(1.0))
    s = w.add(report(float("nan"), index=7))
    assert s.n_reports == 1
    s = w.add(report(2.0, camera="other"))
    assert s.n_reports == 1 and w.skipped == 2
    s = w.add(report(3.0, conf=float("nan")))
    assert s.confidence_last == 0.0 and math.isfinite(s.confidence_mean)


def test_bad_window_length_is_refused() -> None:
    with pytest.raises(ValueError, match="window_s"):
        SlidingWindow(CAM, 0.0)
    with pytest.raises(ValueError, match="window_s"):
        SlidingWindow(CAM, float("inf"))


FLAG_SETS = st.frozensets(st.sampled_from(["fire", "smoke", "fall", "model_error"]), max_size=3)


@settings(max_examples=150, deadline=None)
@given(
    window_s=st.floats(min_value=0.5, max_value=20.0),
    steps=st.lists(
        st.tuples(st.floats(min_value=0.0, max_value=5.0), FLAG_SETS, st.floats(min_value=0.0, max_value=1.0)),
        min_size=1, max_size=60,
    ),
)
def test_window_invariants(window_s: float, steps: list[tuple[float, frozenset[str], float]]) -> None:
    w = SlidingWindow(CAM, window_s)
    t = 0.0
    added: list[tuple[float, frozenset[str], float]] = []
    for dt, flags, conf in steps:
        t += dt
        added.append((t, flags, conf))
        s = w.add(report(t, tuple(sorted(flags)), conf))
        inside = [a for a in added if a[0] >= t - window_s]
        assert s.n_reports == len(inside) == len(w.entries())
        assert tuple(e.timestamp for e in s.recent_evidence) == tuple(a[0] for a in inside)
        assert set(s.flag_streak) == set(s.active_flags) == set(flags)
        for f, k in s.flag_streak.items():
            assert 1 <= k <= s.n_reports
        for f, n_flips in s.flips.items():
            assert 0 <= n_flips <= s.n_reports - 1
        confs = [a[2] for a in inside]
        assert s.confidence_mean == pytest.approx(sum(confs) / len(confs))
        assert min(confs) - 1e-12 <= s.confidence_mean <= max(confs) + 1e-12


@pytest.mark.parametrize("kind", ["tamper", "lighting_change"])
def test_the_gates_reading_of_a_global_change_reaches_the_window_stats(kind: str) -> None:
    w = SlidingWindow(CAM, 10.0)
    frame = Frame(source_id=CAM, index=10, timestamp=1.0, image=np.zeros((4, 4, 3), np.uint8))
    cut = EncodedFrame(frame=frame, jpeg=b"", b64="", width=4, height=4,
                       gate=GateDecision(True, GateReason.GLOBAL_CHANGE, 80.0, 0.9, global_kind=kind))
    assert w.add(report(0.0), item(0.0)).scene_change_kind is None
    s = w.add(report(1.0), cut)
    assert s.scene_change and s.scene_change_kind == kind
    assert w.add(report(2.0), item(2.0)).scene_change_kind is None  # the next ordinary frame
