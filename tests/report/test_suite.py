"""`dlprobe run hw1` end to end at the smoke profile, its report, and a real browser."""

import dataclasses
import json
import re
import shutil

import pytest

from dlprobe.cli import main
from dlprobe.experiments.kit import get_suite, suite_parts
from dlprobe.experiments.kit import suite_ids as _suite_ids


def suite_ids(name: str) -> list[str]:
    return _suite_ids(get_suite(name))


@pytest.fixture(scope="module")
def hw1(tmp_path_factory):
    out = tmp_path_factory.mktemp("suite") / "hw1"
    rc = main(["run", "hw1", "--profile", "smoke", "--device", "cpu", "--quiet", "--out", str(out)])
    return out, rc


def test_hw1_runs_every_experiment_into_one_folder(hw1):
    out, rc = hw1
    assert rc == 0
    state = json.loads((out / "suite.json").read_text())
    assert list(state["experiments"]) == suite_ids("hw1")
    for eid in suite_ids("hw1"):
        assert state["experiments"][eid]["status"] == "done"
        assert (out / eid / "results.json").is_file() and (out / eid / "report.html").is_file()


def test_hw1_report_has_sections_in_homework_order_and_links(hw1):
    out, _ = hw1
    html = (out / "report.html").read_text()
    positions = [html.index(f"id='{part.anchor}'") for part, _ in suite_parts(get_suite("hw1"))]
    assert positions == sorted(positions), "sections must follow HW1-1, HW1-2, HW1-3, bonus"
    for eid in suite_ids("hw1"):
        assert f"href='#{eid}'" in html and f"id='{eid}'" in html
        assert f"href='{eid}/results.json'" in html
    assert "Environment and timings" in html and "torch" in html
    assert 'src="http' not in html, "the report must be self-contained"


def test_resume_skips_finished_experiments(hw1, capsys):
    out, _ = hw1
    before = {e: (out / e / "results.json").stat().st_mtime for e in suite_ids("hw1")}
    assert main(["run", "hw1", "--resume", "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert printed.count("finished earlier, skipped") == len(suite_ids("hw1"))
    after = {e: (out / e / "results.json").stat().st_mtime for e in suite_ids("hw1")}
    assert before == after


def test_failing_experiment_does_not_lose_the_others(tmp_path, monkeypatch):
    from dlprobe.experiments.kit import get_experiment

    exp = get_experiment("sensitivity-manifold")

    def broken(cfg, run_dir):
        raise RuntimeError("deliberate failure for the test")

    import dlprobe.suite as suite

    real = suite.get_experiment
    monkeypatch.setattr(
        suite,
        "get_experiment",
        lambda eid: dataclasses.replace(real(eid), run=broken) if eid == exp.id else real(eid),
    )
    out = tmp_path / "lecture"
    rc = main(["run", "lecture-indicators", "--profile", "smoke", "--quiet", "--out", str(out)])
    assert rc == 1
    state = json.loads((out / "suite.json").read_text())
    assert state["experiments"]["sensitivity-manifold"]["status"] == "failed"
    assert state["experiments"]["linear-regions"]["status"] == "done"
    html = (out / "report.html").read_text()
    assert "deliberate failure for the test" in html


def _browser():
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None
    if not chromium or sync_playwright is None:
        pytest.skip("headless Chromium (Debian package chromium) and playwright are needed")
    return chromium, sync_playwright


def test_report_renders_in_a_real_browser(hw1, tmp_path_factory):
    chromium, sync_playwright = _browser()
    out, _ = hw1
    errors = []
    shots = tmp_path_factory.mktemp("screenshots")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=chromium,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto((out / "report.html").resolve().as_uri(), wait_until="load")
        images = page.evaluate(
            "Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.alt])"
        )
        broken_links = page.evaluate(
            "Array.from(document.querySelectorAll('nav.toc a[href^=\"#\"]'))"
            ".map(a => a.getAttribute('href').slice(1))"
            ".filter(id => !document.getElementById(id))"
        )
        page.screenshot(path=str(shots / "report-first-screen.png"))
        page.emulate_media(media="print")
        breaks = page.evaluate(
            "Array.from(document.querySelectorAll('section.experiment'))"
            ".map(s => getComputedStyle(s).breakBefore)"
        )
        pdf = page.pdf(format="A4")
        browser.close()
    assert len(images) >= 2 * len(suite_ids("hw1"))
    assert all(done and width > 0 for done, width, _ in images), images
    assert broken_links == []
    assert errors == []
    assert (shots / "report-first-screen.png").stat().st_size > 10_000
    # printed, every experiment starts a new page, so the PDF has more pages than experiments
    assert breaks == ["page"] * len(suite_ids("hw1")), breaks
    pages = len(re.findall(rb"/Type\s*/Page[^s]", pdf))
    assert pages > len(suite_ids("hw1")), f"{pages} PDF pages"
