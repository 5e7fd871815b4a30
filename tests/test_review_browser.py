"""The review page in a real headless browser (Debian's chromium + chromium-driver via selenium):
run the demo, serve its folder, see its events, open the fall, see its keyframes and the teacher's
explanation, mark it a false alarm, and find that verdict in the agreement store and the adaptive
thresholds' state.  With SAVE_REVIEW_SCREENSHOTS=1 it saves docs/img/review-*.png."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.learning.agreement_store import AgreementStore
from pipeline.clock import ManualClock
from pipeline.config.learning import LearningConfig
from pipeline.records import VerdictKind
from tests.conftest import ROOT, require, run_cli

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
WAIT_S = 30
SCREENSHOTS = os.environ.get("SAVE_REVIEW_SCREENSHOTS", "") == "1"

pytestmark = [pytest.mark.needs_server, pytest.mark.slow]


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[object]:
    require(Path(CHROMIUM).is_file() and Path(CHROMEDRIVER).is_file(),
            "chromium and chromium-driver not installed (apt-get install chromium chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                f"--user-data-dir={tempfile.mkdtemp(dir=tmp_path)}", "--window-size=1280,1000"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(WAIT_S)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def served_demo(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    out = tmp_path / "demo-run"
    demo = run_cli("demo", "--out", str(out), "--quiet", "--student", "offline", "--teacher", "offline")
    assert demo.returncode == 0, demo.stderr
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEWATCH_")} | {"PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, str(ROOT / "run_camera.py"), "serve", "--out", str(out), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        found = re.search(r"(http://127\.0\.0\.1:\d+/)", line)
        assert found, f"serve did not start: {line!r} {proc.stderr.read() if proc.stderr else ''}"
        yield found.group(1), out
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
    assert proc.returncode == 0


def fall_feedback(out: Path) -> dict[str, float]:
    state = json.loads((out / "thresholds_state.json").read_text())
    return state["cameras"]["cam0"]["periods"]["default"]["fall"]


def test_review_the_demo_in_a_browser_and_mark_the_fall_a_false_alarm(browser: object, served_demo: tuple[str, Path]) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    driver = browser
    url, out = served_demo
    wait = WebDriverWait(driver, WAIT_S)
    before = fall_feedback(out)

    driver.get(url)
    rows = wait.until(ec.presence_of_all_elements_located((By.CSS_SELECTOR, "tr[data-event]")))
    events = [r.get_attribute("data-event") for r in rows]
    logged = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    fall_id = next(e["id"] for e in logged if e["type"] == "fall")
    assert sorted(events) == sorted({e["id"] for e in logged}) and fall_id in events   # every event of the run, once
    thumbs = driver.find_elements(By.CSS_SELECTOR, "img.thumb")
    wait.until(lambda d: all(d.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0", t) for t in thumbs))
    if SCREENSHOTS:
        driver.save_screenshot(str(ROOT / "docs" / "img" / "review-events.png"))

    driver.find_element(By.CSS_SELECTOR, f'tr[data-event="{fall_id}"] a.event-link').click()
    keyframes = wait.until(ec.presence_of_all_elements_located((By.CSS_SELECTOR, "figure.keyframe img")))
    assert len(keyframes) >= 2
    wait.until(lambda d: all(d.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0", k) for k in keyframes))
    captions = [c.text for c in driver.find_elements(By.CSS_SELECTOR, "figure.keyframe figcaption")]
    assert all(c.startswith("t=") for c in captions)
    explanation = driver.find_element(By.CSS_SELECTOR, ".verdict .explanation").text
    assert "fall" in explanation.lower() and len(explanation) > 40     # the teacher's explanation, as written

    driver.find_element(By.ID, "mark-false-alarm").click()
    marked = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, ".human-verdict")))
    assert "false alarm" in marked.text
    if SCREENSHOTS:
        driver.execute_script("window.scrollTo(0, 0)")
        driver.save_screenshot(str(ROOT / "docs" / "img" / "review-event.png"))

    store = AgreementStore.open(out / "agreement.sqlite", LearningConfig(), ManualClock(), sweep=False)
    try:
        human = store.human_verdicts()[fall_id]
        assert human.verdict == VerdictKind.DISMISSED and human.escalation_ids
        relabelled = [r for r in store.records() if r.escalation_id in human.escalation_ids]
        assert relabelled and all(r.verdict_source == "human" and r.verdict == VerdictKind.DISMISSED for r in relabelled)
    finally:
        store.close()
    after = fall_feedback(out)
    assert after["verdicts"] == before["verdicts"] + 1
    assert after["dismissal_rate"] > before["dismissal_rate"]

    driver.get(url + "?status=false_alarm")
    assert [r.get_attribute("data-event") for r in driver.find_elements(By.CSS_SELECTOR, "tr[data-event]")] == [fall_id]
