"""Keyframe selection and escalation assembly."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.incidents.escalation import Decision
from pipeline.incidents.keyframes import CONTEXT_BEFORE_S, build_escalation, select_keyframes
from pipeline.records import EncodedFrame, Frame, FrameReport, GateDecision, GateReason, Priority

_IMAGE = np.zeros((4, 4, 3), dtype=np.uint8)


def entry(t: float, flags: Sequence[str] = (), conf: float = 0.9, *, with_frame: bool = True, obs: Sequence[str] = ()):
    index = int(round(t * 10))
    rep = FrameReport(camera="cam", frame_index=index, timestamp=t, observations=tuple(obs), safety_flags=tuple(flags),
                      confidence=conf, backend="test", model="test", prompt_version="t", latency_ms=1.0)
    if not with_frame:
        return rep, None
    frame = Frame("cam", index, t, _IMAGE)
    enc = EncodedFrame(frame, b"jpeg", f"b64-{index}", 4, 4, GateDecision(True, GateReason.CHANGE, 1.0))
    return rep, enc


def times(frames: Sequence[EncodedFrame]) -> list[float]:
    return [f.timestamp for f in frames]


def test_short_window_gives_every_frame_in_time_order_skipping_missing_images() -> None:
    entries = [entry(2.0), entry(0.0), entry(1.0, with_frame=False), entry(3.0)]
    assert times(select_keyframes(entries, 6)) == [0.0, 2.0, 3.0]


def test_never_more_than_the_bound_and_never_duplicated() -> None:
    entries = [entry(float(t), ["fire"] if t % 3 == 0 else []) for t in range(30)]
    entries.append(entries[5])  # the same frame twice
    chosen = select_keyframes(entries, 6, flags={"fire"})
    assert len(chosen) == 6
    assert len({id(f) for f in chosen}) == 6
    assert times(chosen) == sorted(times(chosen))


def test_first_frame_of_the_pattern_and_the_latest_are_included() -> None:
    entries = [entry(float(t), ["fire"] if t >= 8 else []) for t in range(20)]
    chosen = times(select_keyframes(entries, 4, flags={"fire"}))
    assert 8.0 in chosen and 19.0 in chosen


def test_pattern_start_and_observation_words_locate_the_first_frame() -> None:
    entries = [entry(float(t), obs=["flames on the stove"] if t in (3, 12, 13, 14) else []) for t in range(20)]
    chosen = times(select_keyframes(entries, 3, pattern_start=10.0, flags={"fire"}))
    assert chosen[0] == 12.0 and chosen[-1] == 19.0


def test_frames_where_the_student_changed_most_are_chosen() -> None:
    entries = [entry(float(t), conf=0.9) for t in range(20)]
    entries[7] = entry(7.0, ["smoke"], conf=0.9)
    entries[13] = entry(13.0, conf=0.2)
    chosen = times(select_keyframes(entries, 4))
    # 7 (flag on), 8 (flag off), 13 (confidence drop) and 14 (back up) all stand out; oldest
    # and latest fill two slots, so the two biggest changes win: the flag flips (score 1 + 0).
    assert chosen[0] == 0.0 and chosen[-1] == 19.0
    assert set(chosen[1:-1]) == {7.0, 8.0}
    wider = times(select_keyframes(entries, 6))
    assert {7.0, 8.0, 13.0, 14.0} <= set(wider)


def test_evenly_spread_when_nothing_stands_out() -> None:
    entries = [entry(float(t)) for t in range(20)]
    chosen = times(select_keyframes(entries, 5))
    assert chosen[0] == 0.0 and chosen[-1] == 19.0 and len(chosen) == 5
    gaps = [b - a for a, b in zip(chosen, chosen[1:])]
    assert max(gaps) <= 6 and min(gaps) >= 3


def test_one_keyframe_is_the_latest() -> None:
    assert times(select_keyframes([entry(float(t)) for t in range(5)], 1)) == [4.0]
    assert select_keyframes([entry(1.0)], 0) == ()


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from([(), ("fire",), ("smoke",), ("fire", "smoke")]),
                       st.floats(0, 1), st.booleans()), min_size=1, max_size=40),
    st.integers(1, 8),
)
def test_selection_properties(spec: list[tuple[tuple[str, ...], float, bool]], max_kf: int) -> None:
    entries = [entry(float(i), flags, conf, with_frame=has) for i, (flags, conf, has) in enumerate(spec)]
    with_frames = [e for _, e in entries if e is not None]
    chosen = select_keyframes(entries, max_kf, flags={"fire"})
    # Frames eligible: from CONTEXT_BEFORE_S before the pattern's first frame (the first with
    # fire, else the oldest) onwards; older ones may belong to an earlier incident.
    carrying = [e for r, e in entries if e is not None and "fire" in r.flags]
    first = (carrying or with_frames or [None])[0]
    start = first.timestamp - CONTEXT_BEFORE_S if first is not None else 0.0
    eligible = [e for e in with_frames if e.timestamp >= start]
    assert len(chosen) == min(max_kf, len(eligible))
    assert times(chosen) == sorted(set(times(chosen)))
    assert all(any(c is e for e in with_frames) for c in chosen)
    if with_frames:
        assert chosen[-1] is with_frames[-1]


def test_build_escalation_reuses_the_encoded_images_and_keeps_the_whole_timeline() -> None:
    entries = [entry(float(t), ["fire"] if t > 4 else [], with_frame=t != 6) for t in range(12)]
    decision = Decision(True, "safety:fire", Priority.SAFETY, frozenset({"fire"}), {})
    esc = build_escalation(escalation_id="cam-esc-1", camera="cam", incident_id="cam-inc-1", decision=decision,
                           entries=entries, max_keyframes=4, created_at=11.0)
    assert esc.priority == Priority.SAFETY and esc.reason == "safety:fire" and esc.flags == {"fire"}
    assert len(esc.timeline) == 12 and [r.timestamp for r in esc.timeline] == [float(t) for t in range(12)]
    originals = {id(e) for _, e in entries if e is not None}
    assert all(id(k) in originals for k in esc.keyframes)
    assert times(esc.keyframes)[0] == 5.0 and times(esc.keyframes)[-1] == 11.0


def test_build_escalation_refuses_a_decision_that_does_not_escalate() -> None:
    with pytest.raises(ValueError, match="does not escalate"):
        build_escalation(escalation_id="x", camera="cam", incident_id="i", decision=Decision(False, "calm", None, frozenset()),
                         entries=[entry(0.0)], max_keyframes=3, created_at=0.0)
