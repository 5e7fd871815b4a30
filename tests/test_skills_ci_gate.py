"""CI gate for prompts as code (runs in `.ci/run` with the other tests).

1. The committed skills folder is valid: every skill parses and targets the current answer
   contract, the active version exists, and no active version scores below an earlier one.
2. The whole loop works end to end against the Ollama-protocol test server's "skills-demo"
   script (a student whose answers depend on its system prompt): synthesise 5, score with all
   three methods, promote the best, and refuse candidates with lower held-out or safety scores.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
from ollama_server import FALL_RULE, LAMP_RULE, SKILLS_DEMO_MODELS, OllamaTestServer, Script, skills_demo_reply

from conftest import ROOT
from commands.main import main
from pipeline.analyzers.skill_files import ACTIVE_FILE, ActiveSkills, load_active_prompt, load_skill, read_active, skill_path
from tools.skills import CHANGELOG_FILE, check_skills, heldout, list_skills, save_skill, write_active

pytestmark = pytest.mark.timeout(120)


def test_the_committed_skills_folder_passes_the_check() -> None:
    assert check_skills(ROOT / "skills") == []
    active = read_active(ROOT / "skills").active["student"]
    assert load_active_prompt("student", ROOT / "skills").version == active


def test_the_check_catches_a_regressed_active_skill(tmp_path: Path) -> None:
    folder = tmp_path / "skills"
    shutil.copytree(ROOT / "skills", folder)
    seed = load_skill(skill_path(folder, "student/1"))
    split = {"overall": 0.7, "methods": {"keyword": 0.7}, "safety": {"recall": 1.0, "precision": 1.0}, "cases": 6}
    base = {"suite": "s", "methods": ["keyword"], "student_model": "m"}
    save_skill(folder, replace(seed, scores={**base, "splits": {"heldout": split}}))
    worse = {**split, "overall": 0.5, "safety": {"recall": 0.5, "precision": 1.0}}
    save_skill(folder, replace(seed, version="student/2", system_prompt=seed.system_prompt + "\nBe brief.",
                               parent="student/1", scores={**base, "splits": {"heldout": worse}}))
    write_active(folder, ActiveSkills({"student": "student/2"}, {"student": ["student/1", "student/2"]}))
    problems = check_skills(folder)
    assert any("below earlier active student/1" in p for p in problems)
    assert any("safety recall 0.500" in p for p in problems)


def run(*args: str) -> int:
    return main(["skills", *args])


def test_the_whole_loop_against_the_scripted_server(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "skills"
    shutil.copytree(ROOT / "skills", folder)
    # Start from the seed, whatever the committed folder has promoted since.
    write_active(folder, ActiveSkills({"student": "student/1"}, {"student": ["student/1"]}))
    for path in (folder / "student").glob("student-*.json"):
        if path.name != "student-1.json":
            path.unlink()
    seed = load_skill(skill_path(folder, "student/1"))
    save_skill(folder, replace(seed, scores=None))
    with OllamaTestServer(Script(default=skills_demo_reply), models=SKILLS_DEMO_MODELS, embeddings="words") as srv:
        common = ["--skills-dir", str(folder), "--ollama-host", srv.url]
        assert run("synthesize", "--task", "student", "--count", "5", *common) == 0
        assert run("score", *common) == 0
        chat = srv.requests_to("/api/chat")
        embeds = srv.requests_to("/api/embed")
        capsys.readouterr()

        skills = {s.version: s for s in list_skills(folder, "student")}
        assert sorted(skills) == [f"student/{n}" for n in range(1, 7)]
        for skill in skills.values():
            assert skill.scores is not None and skill.scores["methods"] == ["keyword", "semantic", "judge"]
            assert set(skill.scores["splits"]) == {"train", "heldout"}
            assert len(skill.scores["cases"]) == 12
        assert embeds and any(r.format_kind == "judge" for r in chat) and any(r.format_kind == "array" for r in chat)
        student_calls = [r for r in chat if r.format_kind == "student"]
        assert {r.system_text for r in student_calls} == {s.system_prompt for s in skills.values()}

        def h(version: str) -> dict:
            return heldout(skills[version].scores)

        # The candidate with both rules is the best; the seed misses the falls and calls the lamp fire.
        both = next(v for v, s in skills.items() if FALL_RULE in s.system_prompt and LAMP_RULE in s.system_prompt
                    and "certain" not in s.system_prompt)
        assert h(both)["overall"] > h("student/1")["overall"]
        assert h(both)["safety"]["recall"] > h("student/1")["safety"]["recall"]
        assert h(both)["safety"]["precision"] > h("student/1")["safety"]["precision"]
        assert skills["student/1"].scores["cases"]["fall-b"]["found_flags"] == []
        assert skills[both].scores["cases"]["fall-b"]["found_flags"] == ["fall"]
        assert skills[both].scores["cases"]["lamp-b"]["found_flags"] == []

        assert run("promote", *common) == 0
        assert read_active(folder).active["student"] == both
        capsys.readouterr()

        # Refusals: a candidate with lower safety recall, and one with a lower held-out score.
        lower_recall = [v for v in skills if v != both and h(v)["safety"]["recall"] < h(both)["safety"]["recall"]]
        lower_heldout = [v for v in skills if v != both and h(v)["safety"]["recall"] >= h(both)["safety"]["recall"]
                         and h(v)["overall"] < h(both)["overall"]]
        assert lower_recall and lower_heldout
        assert run("promote", lower_recall[0], *common) == 1
        assert "would lower held-out safety recall" in capsys.readouterr().err
        assert run("promote", lower_heldout[0], *common) == 1
        assert "does not beat" in capsys.readouterr().err
        assert run("promote", *common) == 1  # nothing left beats the active skill
        assert read_active(folder).active["student"] == both

        assert run("rollback", *common) == 0
        assert read_active(folder).active["student"] == "student/1"
    changelog = (folder / CHANGELOG_FILE).read_text()
    assert f"promote {both} (was student/1" in changelog and f"rollback {both} -> student/1" in changelog
    assert check_skills(folder) == []
    assert json.loads((folder / ACTIVE_FILE).read_text())["history"]["student"] == ["student/1"]
