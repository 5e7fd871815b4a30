"""Skill files, synthesis parsing, promotion rules, rollback, and the student recording its skill version."""

from __future__ import annotations

import base64
import json
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from ollama_server import GREY, OllamaTestServer, Reply, Script, solid_jpeg

from conftest import ROOT
from pipeline.analyzers.ollama_client import OllamaChat, OllamaStudent
from pipeline.analyzers.prompts import STUDENT_PROMPT
from pipeline.clock import ManualClock
from commands.main import main
from pipeline.config.models import StudentConfig, TeacherConfig
from pipeline.records import EncodedFrame, Frame, GateDecision, GateReason
from pipeline.analyzers.skill_files import ACTIVE_FILE, TASKS, Skill, SkillError, active_skill, contract_hash, load_active_prompt, load_skill, read_active, skill_path
from tools.skills import CHANGELOG_FILE, PromotionRefused, first_json_array, init_skills, parse_candidates, promote, promotion_decision, rollback, save_skill, seed_skill, synthesize

pytestmark = pytest.mark.timeout(60)

STUDENT = TASKS["student"]
CLOCK = ManualClock()


def prompt_text(extra: str) -> str:
    return STUDENT_PROMPT.text + "\n" + extra


def candidate(skills_dir: Path, n: int, extra: str, scores: dict[str, Any] | None = None) -> Skill:
    skill = replace(seed_skill("student", CLOCK), version=f"student/{n}", system_prompt=prompt_text(extra),
                    author={"kind": "teacher", "model": "gemma4:26b", "prompt_version": "skills-synth/1"},
                    parent="student/1", scores=scores)
    save_skill(skills_dir, skill)
    return skill


def scores(heldout: float, recall: float, suite: str = "fixtures/1@x", model: str = "gemma4:e2b") -> dict[str, Any]:
    split = {"overall": heldout, "methods": {"keyword": heldout}, "safety": {"recall": recall, "precision": 1.0},
             "cases": 6}
    return {"suite": suite, "methods": ["keyword"], "student_model": model, "splits": {"heldout": split, "train": split}}


@pytest.fixture
def skills_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "skills"
    assert init_skills(folder, CLOCK)
    return folder


# ---- files ---------------------------------------------------------------------------


def test_skill_file_round_trip(skills_dir: Path) -> None:
    seed = load_skill(skill_path(skills_dir, "student/1"))
    assert seed == seed_skill("student", CLOCK)
    assert seed.prompt == STUDENT_PROMPT
    scored = candidate(skills_dir, 2, "Be brief.", scores(0.7, 1.0))
    again = load_skill(skills_dir / "student" / "student-2.json")
    assert again == scored and again.author["kind"] == "teacher" and again.parent == "student/1"
    data = json.loads((skills_dir / "student" / "student-2.json").read_text())
    assert data["contract"] == {"name": "StudentAnswer", "schema_sha256": contract_hash(STUDENT.contract)}
    assert set(data) >= {"system_prompt", "task_spec", "author", "created", "parent", "scores"}


def test_the_committed_seed_skill_is_the_built_in_prompt() -> None:
    seed = load_skill(ROOT / "skills" / "student" / "student-1.json")
    assert seed.prompt == STUDENT_PROMPT and seed.author["kind"] == "human" and seed.parent is None


@pytest.mark.parametrize(("edit", "message"), [
    (lambda d: d.pop("author"), "missing field(s) author"),
    (lambda d: d.update(format="other/1"), "format is 'other/1'"),
    (lambda d: d.update(version="student/9"), "must be named student-9.json"),
    (lambda d: d.update(system_prompt="Describe the image."), "too short"),
    (lambda d: d.update(system_prompt="x" * 100), "does not name the answer field(s) observations"),
    (lambda d: d["contract"].update(schema_sha256="0" * 64), "older StudentAnswer schema"),
    (lambda d: d.update(author={"kind": "robot"}), "author.kind"),
])
def test_invalid_skill_files_are_one_line_errors(skills_dir: Path, edit: Any, message: str) -> None:
    path = skills_dir / "student" / "student-1.json"
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))
    with pytest.raises(SkillError) as info:
        load_skill(path)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_a_file_that_is_not_json_is_a_clear_error(skills_dir: Path) -> None:
    path = skills_dir / "student" / "student-1.json"
    path.write_text("{not json")
    with pytest.raises(SkillError, match="not valid JSON"):
        load_skill(path)


# ---- synthesis parsing ---------------------------------------------------------------


def test_first_json_array_skips_brackets_inside_strings() -> None:
    assert first_json_array('Sure! ["a [b]", "c"] and [1]') == '["a [b]", "c"]'
    assert first_json_array("no array here") is None


def test_good_teacher_output_is_parsed() -> None:
    prompts = [prompt_text("Rule A."), prompt_text("Rule B.")]
    assert parse_candidates(json.dumps(prompts), 2, STUDENT) == prompts
    chatty = "Here are the candidates:\n```json\n" + json.dumps(prompts, indent=2) + "\n```\nGood luck [really]."
    assert parse_candidates(chatty, 2, STUDENT) == prompts


@pytest.mark.parametrize(("text", "message"), [
    ("I could not think of anything.", "holds no JSON array"),
    ('["unterminated', "holds no JSON array"),
    ('[1, 2,]', "not valid JSON"),
    (json.dumps([prompt_text("A.")]), "gave 1 candidate(s), 2 were asked for"),
    (json.dumps([prompt_text("A."), 42]), "candidate 2 is not a non-empty string"),
    (json.dumps([prompt_text("A."), prompt_text("A.") + "  "]), "candidates 1 and 2 are the same"),
    (json.dumps([prompt_text("A."), "x" * 200]), "candidate 2 does not name the answer field(s)"),
    (json.dumps([prompt_text("A."), STUDENT_PROMPT.text]), "candidate 2 repeats the current prompt"),
    (json.dumps([{"prompt": prompt_text("A.")}, prompt_text("B.")]), "candidate 1 is not a non-empty string"),
])
def test_bad_teacher_output_is_a_one_line_error(text: str, message: str) -> None:
    with pytest.raises(SkillError) as info:
        parse_candidates(text, 2, STUDENT, parent_text=STUDENT_PROMPT.text)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_synthesize_through_the_real_client_writes_candidates(skills_dir: Path) -> None:
    prompts = [prompt_text(f"Rule {n}.") for n in range(3)]
    with OllamaTestServer(Script([Reply(content="Candidates: " + json.dumps(prompts))])) as srv:
        teacher = OllamaChat(TeacherConfig(host=srv.url, timeout_ms=3000, first_call_timeout_ms=3000))
        try:
            made = synthesize(skills_dir, "student", 3, teacher, CLOCK, ["missed fall at t=19.0s: ..."])
        finally:
            teacher.close()
        request = srv.requests_to("/api/chat")[0].body or {}
    assert [s.version for s in made] == ["student/2", "student/3", "student/4"]
    assert [load_skill(skill_path(skills_dir, s.version)).system_prompt for s in made] == prompts
    assert made[0].author == {"kind": "teacher", "model": "gemma4:26b", "prompt_version": "skills-synth/1"}
    assert made[0].parent == "student/1" and made[0].scores is None
    assert request["format"] == {"type": "array", "items": {"type": "string"}, "minItems": 3, "maxItems": 3}
    user = request["messages"][1]["content"]
    assert "missed fall at t=19.0s" in user and STUDENT_PROMPT.text in user and '"safetyFlags"' in user
    assert read_active(skills_dir).active == {"student": "student/1"}  # candidates are not active
    assert "synthesize student/2, student/3, student/4" in (skills_dir / CHANGELOG_FILE).read_text()


def test_bad_synthesis_writes_nothing(skills_dir: Path) -> None:
    class Teacher:
        model = "t"

        def complete(self, system: str, user: str, fmt: dict) -> str:
            return '["only one"]'

    with pytest.raises(SkillError, match="gave 1 candidate"):
        synthesize(skills_dir, "student", 2, Teacher(), CLOCK)
    assert sorted(p.name for p in (skills_dir / "student").iterdir()) == ["student-1.json"]


# ---- promotion and rollback ----------------------------------------------------------


def test_promotion_rules() -> None:
    active = replace(seed_skill("student", CLOCK), scores=scores(0.60, 0.75))
    cand = replace(active, version="student/2", system_prompt=prompt_text("x"))
    assert promotion_decision(replace(cand, scores=scores(0.70, 0.75)), active, 0.02).promote
    assert promotion_decision(replace(cand, scores=scores(0.62, 1.0)), active, 0.02).promote  # exactly the margin
    slim = promotion_decision(replace(cand, scores=scores(0.61, 1.0)), active, 0.02)
    assert not slim.promote and "does not beat" in slim.reason
    unsafe = promotion_decision(replace(cand, scores=scores(0.95, 0.5)), active, 0.02)
    assert not unsafe.promote and "safety recall 0.750 -> 0.500" in unsafe.reason
    other = promotion_decision(replace(cand, scores=scores(0.9, 1.0, suite="fixtures/0@y")), active, 0.02)
    assert not other.promote and "different suite" in other.reason
    model = promotion_decision(replace(cand, scores=scores(0.9, 1.0, model="other")), active, 0.02)
    assert not model.promote and "different student model" in model.reason
    assert not promotion_decision(cand, active, 0.02).promote  # not scored


def test_promote_refuses_lower_safety_recall_and_the_default_takes_the_best_that_passes(skills_dir: Path) -> None:
    seed = load_skill(skill_path(skills_dir, "student/1"))
    save_skill(skills_dir, replace(seed, scores=scores(0.60, 0.75)))
    candidate(skills_dir, 2, "Rule two.", scores(0.70, 0.75))
    candidate(skills_dir, 3, "Rule three.", scores(0.80, 0.50))  # best held-out, but loses safety recall
    candidate(skills_dir, 4, "Rule four.", scores(0.61, 1.00))  # safer, but not better by the margin
    with pytest.raises(PromotionRefused, match="safety recall 0.750 -> 0.500"):
        promote(skills_dir, "student", "student/3", 0.02, CLOCK)
    with pytest.raises(PromotionRefused, match="does not beat"):
        promote(skills_dir, "student", "student/4", 0.02, CLOCK)
    assert read_active(skills_dir).active["student"] == "student/1"
    assert "promote" not in (skills_dir / CHANGELOG_FILE).read_text()
    promote(skills_dir, "student", None, 0.02, CLOCK)
    assert read_active(skills_dir).active["student"] == "student/2"
    with pytest.raises(PromotionRefused, match="student/3 would lower held-out safety recall"):
        promote(skills_dir, "student", None, 0.02, CLOCK)  # nothing left beats student/2


def test_default_promotion_picks_the_best_and_still_applies_the_rules(skills_dir: Path) -> None:
    seed = load_skill(skill_path(skills_dir, "student/1"))
    save_skill(skills_dir, replace(seed, scores=scores(0.60, 0.75)))
    candidate(skills_dir, 2, "Rule two.", scores(0.70, 0.75))
    candidate(skills_dir, 3, "Rule three.", scores(0.65, 0.75))
    decision = promote(skills_dir, "student", None, 0.02, CLOCK)
    assert decision.promote and read_active(skills_dir).active["student"] == "student/2"
    assert read_active(skills_dir).history["student"] == ["student/1", "student/2"]
    log = (skills_dir / CHANGELOG_FILE).read_text().splitlines()
    assert log[-1].endswith("promote student/2 (was student/1; author teacher gemma4:26b, parent student/1): "
                            "held-out 0.600 -> 0.700, safety recall 0.750 -> 0.750")
    assert load_active_prompt("student", skills_dir).version == "student/2"

    removed, restored = rollback(skills_dir, "student", CLOCK)
    assert (removed, restored) == ("student/2", "student/1")
    assert read_active(skills_dir).active["student"] == "student/1"
    assert read_active(skills_dir).history["student"] == ["student/1"]
    assert (skills_dir / CHANGELOG_FILE).read_text().splitlines()[-1].endswith("rollback student/2 -> student/1 active")
    with pytest.raises(SkillError, match="nothing to roll back"):
        rollback(skills_dir, "student", CLOCK)


def test_a_broken_active_file_is_a_clear_error(skills_dir: Path) -> None:
    (skills_dir / ACTIVE_FILE).write_text(json.dumps({"format": "edgewatch-active-skills/1",
                                                      "active": {"student": "student/2"},
                                                      "history": {"student": ["student/1"]}}))
    with pytest.raises(SkillError, match="history ends with student/1"):
        load_active_prompt("student", skills_dir)


# ---- the student uses the active skill and records it --------------------------------


def test_without_a_skills_folder_the_built_in_prompt_is_used(tmp_path: Path) -> None:
    assert load_active_prompt("student", tmp_path / "nowhere") == STUDENT_PROMPT


def test_the_student_sends_the_active_skill_and_records_its_version(skills_dir: Path) -> None:
    seed = load_skill(skill_path(skills_dir, "student/1"))
    save_skill(skills_dir, replace(seed, scores=scores(0.60, 0.75)))
    skill = candidate(skills_dir, 2, "Rule two.", scores(0.70, 0.75))
    promote(skills_dir, "student", "student/2", 0.02, CLOCK)
    prompt = load_active_prompt("student", skills_dir)
    jpeg = solid_jpeg(GREY)
    item = EncodedFrame(Frame("cam0", 3, 1.5, np.zeros((64, 64, 3), np.uint8)), jpeg,
                        base64.b64encode(jpeg).decode("ascii"), 64, 64, GateDecision(True, GateReason.CHANGE, 30.0))
    with OllamaTestServer(Script()) as srv:
        student = OllamaStudent(StudentConfig(host=srv.url, timeout_ms=2000, first_call_timeout_ms=2000), prompt)
        try:
            report = student.analyze(item)
        finally:
            student.close()
        sent = srv.requests_to("/api/chat")[0].body or {}
    assert report.error is None and report.prompt_version == "student/2"
    assert report.to_json()["prompt_version"] == "student/2"
    assert sent["messages"][0] == {"role": "system", "content": skill.system_prompt}


def test_an_active_skill_written_for_an_older_contract_still_loads_for_the_runner(skills_dir: Path, caplog) -> None:
    path = skill_path(skills_dir, "student/1")
    data = json.loads(path.read_text())
    data["contract"]["schema_sha256"] = "0" * 64
    path.write_text(json.dumps(data))
    assert load_active_prompt("student", skills_dir).version == "student/1"
    assert "older StudentAnswer schema" in caplog.text


# ---- the command line ----------------------------------------------------------------


def test_cli_list_check_and_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "skills"
    shutil.copytree(ROOT / "skills", folder)
    assert main(["skills", "list", "--skills-dir", str(folder)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("* student/1") and "human" in out
    assert main(["skills", "check", "--skills-dir", str(folder)]) == 0
    assert "skills: ok" in capsys.readouterr().out
    assert main(["skills", "list", "--task", "teacher", "--skills-dir", str(folder)]) == 2
    assert "unknown skill task 'teacher'" in capsys.readouterr().err
    assert main(["skills", "rollback", "--skills-dir", str(folder)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nothing to roll back" in err
    assert main(["skills", "list", "--skills-dir", str(tmp_path / "empty")]) == 1
    assert "run `skills init` first" in capsys.readouterr().err
    assert main(["skills", "synthesize", "--count", "0", "--skills-dir", str(folder)]) == 2
    assert "--count must be 1..20" in capsys.readouterr().err
    assert active_skill(folder, "student").version == "student/1"


def test_sighup_reload_switches_the_ollama_student_to_the_active_skill(monkeypatch: pytest.MonkeyPatch) -> None:
    """A reload (SIGHUP) loads the active skill again, so a promotion takes effect without a restart."""
    import pipeline.runner as runner_module
    from pipeline.analyzers.fallback import CircuitBreaker, FallbackStudent
    from pipeline.analyzers.ollama_client import OllamaStudent
    from pipeline.analyzers.prompts import STUDENT_PROMPT, SystemPrompt
    from pipeline.clock import ManualClock
    from pipeline.config.settings import Settings
    from pipeline.analyzers.backends import Backends
    from pipeline.runner import Runner

    clock = ManualClock()
    settings = Settings()
    primary = OllamaStudent(settings.student.model_copy(update={"host": "http://127.0.0.1:9"}), STUDENT_PROMPT, clock)

    class FakeOffline:  # named as a fake: the fallback side is not exercised here
        backend, model, prompt_version = "fake", "fake", "fake/1"

        def analyze(self, item):  # noqa: ANN001, ANN201
            raise AssertionError("not used")

        def close(self) -> None:
            pass

    student = FallbackStudent(primary, FakeOffline(), CircuitBreaker(clock=clock))
    runner = Runner(settings, Backends(student=student, teacher=FakeOffline()), clock=clock)
    assert student.prompt_version == "student/1"
    monkeypatch.setattr(runner_module, "load_active_prompt", lambda task, folder: SystemPrompt("student/9", "promoted prompt"))
    runner.request_reload(settings)
    runner._apply_reload({})
    assert student.prompt_version == "student/9"
    primary.close()
