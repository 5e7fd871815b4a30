"""The validation suite: generated cases, decision-log cases, and each scoring method on fixed answers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from ollama_server import SKILLS_DEMO_MODELS, OllamaTestServer, Reply, Script

from pipeline.analyzers.model_failures import FailureKind, ModelError
from pipeline.analyzers.ollama_client import OllamaChat
from pipeline.analyzers.ollama_transport import embed
from pipeline.config.models import TeacherConfig
from tools.validation_suite import JUDGE_RUBRIC, SAFETY_WEIGHT, CaseAnswer, ExpectedFact, JudgeAnswer, SuiteError, ValidationCase, ValidationSuite, fixture_suite, judge_user_text, keyword_score, safety_score, score_answers, semantic_score
from tools.reviewed_cases import decision_log_cases, failure_cases, reviewed_sequences

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def suite() -> ValidationSuite:
    return fixture_suite()


def case(flags: tuple[str, ...] = (), facts: tuple[ExpectedFact, ...] = (), weight: float = 1.0,
         split: str = "heldout", case_id: str = "c") -> ValidationCase:
    return ValidationCase(case_id, (), facts, frozenset(flags), weight, split)  # type: ignore[arg-type]


def answer(observations: tuple[str, ...] = (), flags: tuple[str, ...] = (), case_id: str = "c") -> CaseAnswer:
    return CaseAnswer(case_id, observations, flags)


FIRE_FACT = ExpectedFact("flames on the floor", ("fire", "flame", "flames"))
PERSON_FACT = ExpectedFact("a person in the room", ("person", "man", "woman"))


# ---- cases ---------------------------------------------------------------------------


def test_fixture_suite_is_deterministic_and_covers_every_kind_in_both_splits(suite: ValidationSuite) -> None:
    again = fixture_suite()
    assert again.id == suite.id
    assert [f.b64 for c in again.cases for f in c.frames] == [f.b64 for c in suite.cases for f in c.frames]
    for split in ("train", "heldout"):
        kinds = {c.id.rsplit("-", 1)[0] for c in suite.split(split)}  # type: ignore[arg-type]
        assert kinds == {"calm", "person", "fall", "fire", "tamper", "lamp"}
    by_kind = {c.id: c for c in suite.cases}
    assert by_kind["fall-a"].flags == {"fall"} and by_kind["lamp-a"].flags == frozenset()
    assert by_kind["fire-b"].flags == {"fire", "smoke"}
    safety = [c.weight for c in suite.cases if c.flags]
    plain = [c.weight for c in suite.cases if c.id.startswith(("calm", "person"))]
    assert min(safety) == SAFETY_WEIGHT > max(plain)
    assert len(by_kind["fall-a"].frames) == 3  # a sequence: standing, then down


def test_suite_id_changes_when_an_expectation_changes(suite: ValidationSuite) -> None:
    first = suite.cases[0]
    changed = ValidationCase(first.id, first.frames, first.facts, frozenset({"fire"}), first.weight, first.split)
    assert ValidationSuite((changed,) + suite.cases[1:], suite.name).id != suite.id


# ---- keyword and safety --------------------------------------------------------------


def test_keyword_score_counts_synonyms_and_flags_and_charges_false_alarms() -> None:
    fire = case(("fire",), (FIRE_FACT,))
    assert keyword_score(fire, answer(("bright flames near the wall",), ("fire",))) == 1.0
    # The flag only in words: match_safety reads observations too ("blaze" means fire), but "blaze"
    # is not one of this fact's keywords: flags agree, the fact is missed.
    assert keyword_score(fire, answer(("a blaze by the cabinet",))) == 0.5 * 0.0 + 0.5 * 1.0
    assert keyword_score(fire, answer(("a fireplace",))) == 0.0  # whole words only, and no fire flag
    calm = case((), (PERSON_FACT,))
    assert keyword_score(calm, answer(("man standing",), ())) == 1.0
    assert keyword_score(calm, answer(("man standing",), ("fire",))) == 0.5  # false alarm costs half
    assert keyword_score(calm, answer(("no fire, a man standing",), ())) == 1.0  # negated: not a fire


def test_safety_recall_and_precision_are_weighted_and_separate() -> None:
    fall = case(("fall",), weight=3.0, case_id="fall")
    lamp = case((), weight=2.0, case_id="lamp")
    fire = case(("fire", "smoke"), weight=3.0, case_id="fire")
    got = safety_score([
        (fall, answer(("person collapsed on the ground",), case_id="fall")),  # found through a synonym
        (lamp, answer(("orange glow",), ("fire",), case_id="lamp")),  # a false alarm
        (fire, answer(("flames",), ("fire",), case_id="fire")),  # smoke missed
    ])
    assert got.recall == pytest.approx((3 + 3) / (3 + 3 + 3))
    assert got.precision == pytest.approx((3 + 3) / (3 + 3 + 2))
    nothing = safety_score([(case(()), answer(("empty room",)))])
    assert (nothing.recall, nothing.precision) == (1.0, 1.0)


def test_score_answers_weights_cases_per_split() -> None:
    heavy = case(("fire",), (FIRE_FACT,), weight=3.0, case_id="heavy")
    light = case((), (PERSON_FACT,), weight=1.0, case_id="light")
    train = case((), (PERSON_FACT,), weight=1.0, split="train", case_id="train")
    suite = ValidationSuite((heavy, light, train), "t")
    answers = {"heavy": answer(("flames",), ("fire",), "heavy"), "light": answer(("empty",), (), "light"),
               "train": answer(("person",), (), "train")}
    result = score_answers(suite, answers, {"keyword": keyword_score})
    assert result.splits["heldout"].overall == pytest.approx((3 * 1.0 + 1 * 0.5) / 4)
    assert result.splits["train"].overall == 1.0 and result.splits["heldout"].cases == 2
    assert result.to_json()["cases"]["light"]["methods"]["keyword"] == 0.5
    with pytest.raises(SuiteError, match="no answer for case"):
        score_answers(suite, {"heavy": answers["heavy"]}, {"keyword": keyword_score})


# ---- semantic, through the test server's /api/embed -----------------------------------


@pytest.fixture
def embed_server():
    with OllamaTestServer(Script(), models=SKILLS_DEMO_MODELS, embeddings="words") as srv:
        yield srv


def test_semantic_score_uses_the_embed_endpoint(embed_server: OllamaTestServer) -> None:
    def embedder(texts: list[str]) -> list[list[float]]:
        return embed(embed_server.url, "embeddinggemma", texts, 2.0)

    fall = case(("fall",), (ExpectedFact("person lying on the floor", ("lying",)),))
    same = semantic_score(fall, answer(("person lying on the floor", "a cabinet")), embedder)
    near = semantic_score(fall, answer(("a person is lying near the cabinet",)), embedder)
    far = semantic_score(fall, answer(("orange glow",)), embedder)
    assert same == pytest.approx(1.0)
    assert far is not None and near is not None and far < near < 1.0
    assert semantic_score(fall, answer(()), embedder) == 0.0
    assert semantic_score(case(()), answer(("x",)), embedder) is None  # no facts: nothing to compare
    sent = embed_server.requests_to("/api/embed")
    assert sent and sent[0].body is not None and sent[0].body["model"] == "embeddinggemma"


def test_embed_of_a_missing_model_is_a_classified_error(embed_server: OllamaTestServer) -> None:
    with pytest.raises(ModelError) as info:
        embed(embed_server.url, "nomic-embed-text", ["a"], 2.0)
    assert info.value.kind is FailureKind.MODEL_NOT_FOUND


# ---- judge parsing -------------------------------------------------------------------


def _judge(server: OllamaTestServer) -> OllamaChat:
    return OllamaChat(TeacherConfig(host=server.url, timeout_ms=3000, first_call_timeout_ms=3000))


def test_judge_answer_is_parsed_strictly() -> None:
    fire = case(("fire",), (FIRE_FACT,))
    said = answer(("flames",), ("fire",))
    script = Script([
        Reply.answer({"score": 3, "reason": "flags right, a detail missing"}),
        Reply.fenced({"score": 4, "reason": "all there"}),
        Reply.answer({"score": 7, "reason": "off the rubric"}), Reply.answer({"score": 7, "reason": "again"}),
        Reply.answer({"score": 2, "reason": "x", "extra": 1}), Reply.answer({"grade": 2}),
    ])
    with OllamaTestServer(script) as srv:
        judge = _judge(srv)
        try:
            assert judge.ask(JUDGE_RUBRIC, judge_user_text(fire, said), JudgeAnswer).score == 3
            assert judge.ask(JUDGE_RUBRIC, judge_user_text(fire, said), JudgeAnswer).score == 4
            for _ in range(2):
                with pytest.raises(ModelError) as info:
                    judge.ask(JUDGE_RUBRIC, judge_user_text(fire, said), JudgeAnswer)
                assert info.value.kind is FailureKind.MALFORMED and "\n" not in str(info.value)
        finally:
            judge.close()
        first = srv.requests_to("/api/chat")[0].body or {}
    assert first["format"]["properties"]["score"]["maximum"] == 4
    assert "Reference safety flags: fire" in first["messages"][1]["content"]
    assert first["messages"][0]["content"] == JUDGE_RUBRIC


# ---- the decision log ----------------------------------------------------------------


def _student_row(t: float, obs: list[str], flags: list[str]) -> dict:
    return {"kind": "decision", "camera": "cam0", "t": t, "frame": int(t * 10), "escalate": False, "reason": "calm",
            "student": {"camera": "cam0", "frame": int(t * 10), "t": t, "observations": obs, "safetyFlags": flags,
                        "confidence": 0.8, "backend": "ollama", "model": "m", "prompt_version": "student/1",
                        "latency_ms": 5.0}}


def write_log(path: Path) -> Path:
    rows = [
        _student_row(0.5, ["person walking"], []), _student_row(1.0, ["person on the ground"], []),
        _student_row(2.0, ["orange glow"], ["fire"]), _student_row(2.5, ["orange glow"], ["fire"]),
        {"kind": "escalation", "id": "cam0-esc-00001", "camera": "cam0", "t": 1.0, "reason": "low_confidence",
         "keyframes": [0.5, 1.0]},
        {"kind": "verdict", "t": 1.0, "escalation_id": "cam0-esc-00001", "camera": "cam0", "verdict": "confirmed",
         "observations": ["person lying on the floor"], "safetyFlags": ["fall"], "confidence": 0.9, "explanation": "."},
        {"kind": "escalation", "id": "cam0-esc-00002", "camera": "cam0", "t": 2.5, "reason": "safety:fire",
         "keyframes": [2.0, 2.5]},
        {"kind": "verdict", "t": 2.5, "escalation_id": "cam0-esc-00002", "camera": "cam0", "verdict": "dismissed",
         "observations": ["steady lamp"], "safetyFlags": [], "confidence": 0.8, "explanation": "."},
        {"kind": "escalation", "id": "cam0-esc-00003", "camera": "cam0", "t": 2.5, "reason": "audit", "keyframes": [2.5]},
        {"kind": "verdict", "t": 2.5, "escalation_id": "cam0-esc-00003", "camera": "cam0", "verdict": "unverified",
         "observations": [], "safetyFlags": [], "confidence": 0.0, "explanation": "timeout"},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\nnot json\n", encoding="utf-8")
    return path


def test_failure_cases_name_misses_and_false_alarms(tmp_path: Path) -> None:
    log_path = write_log(tmp_path / "decisions.jsonl")
    sequences = reviewed_sequences(log_path)
    assert [s.escalation_id for s in sequences] == ["cam0-esc-00001", "cam0-esc-00002"]  # unverified left out
    assert sequences[0].missed == {"fall"} and sequences[1].false_alarms == {"fire"}
    lines = failure_cases(log_path)
    assert lines[0].startswith("missed fall at t=1.0s") and "person on the ground" in lines[0]
    assert lines[1].startswith("false alarm fire at t=2.5s")
    with pytest.raises(SuiteError, match="decision log not found"):
        failure_cases(tmp_path / "absent.jsonl")


def test_decision_log_cases_reread_the_keyframes_from_the_source(tmp_path: Path) -> None:
    from fixtures.demo import Room, Scene, SteadyLamp, Walker, write_video

    video = tmp_path / "clip.mp4"
    walker = Walker(enter=0.0, exit=3.0, path=((0.0, 0.4), (3.0, 0.4)), tilt=((0.6, 0.0), (0.9, 90.0)))
    write_video(video, Scene(room=Room(size=(160, 90)), actors=(walker, SteadyLamp(on=1.8, off=3.0))), 3.0, 10.0)
    cases = decision_log_cases(write_log(tmp_path / "decisions.jsonl"), str(video))
    assert [c.id for c in cases] == ["log-cam0-esc-00001", "log-cam0-esc-00002"]
    fall, lamp = cases
    assert fall.flags == {"fall"} and fall.weight == SAFETY_WEIGHT and len(fall.frames) == 2
    assert lamp.flags == frozenset() and lamp.weight > 1.0  # a corrected false alarm weighs more than calm
    assert [round(f.timestamp, 2) for f in fall.frames] == [0.5, 1.0]
    assert fall.facts[0].text == "person lying on the floor" and "lying" in fall.facts[0].keywords
