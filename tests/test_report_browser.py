"""The report page in a real browser: headless Chromium opens what ``vidcap report`` wrote.

The output comes from a real run of the tiny random-weight model (the session's shared vLLM
engine; the report does not care how the run was started): two clips captioned ``ok`` (noise
captions: random weights) and a missing video, ``error``. The run's
own ``info`` flags depend on what the random model samples (``truncated`` when it runs to
``max_tokens``), so the test sets both records' info by hand, in the documented shape, and adds
``windows`` to one, before making the report: the filters then have known answers.

Needs Debian's ``chromium`` package; skipped with that reason when no Chromium is found, except
under CI (``VIDCAP_REQUIRE_BROWSER=1``, set by ``.ci/run``, which installs the package).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from tests.chromium import Browser, find_chromium
from tests.conftest import TINY_ENGINE, run_vidcap, write_jsonl
from vidcap.config import build_config, load_config_file
from vidcap.executors.job import run_captioning
from vidcap.io.records import iter_records
from vidcap.video.synthetic import make_clip

BROWSER = find_chromium()
if BROWSER is None and os.environ.get("VIDCAP_REQUIRE_BROWSER"):
    raise RuntimeError("VIDCAP_REQUIRE_BROWSER is set but no Chromium was found (apt-get install chromium)")
pytestmark = pytest.mark.skipif(
    BROWSER is None, reason="needs headless Chromium: Debian package 'chromium' (apt-get install chromium)"
)

WINDOWS = [
    {
        "start": 0.0,
        "end": 2.0,
        "caption": "window one: a street",
        "status": "ok",
        "info": {
            "finish_reason": "stop",
            "prompt_tokens": 80,
            "generated_tokens": 5,
            "flags": ["repetition"],
        },
    },
    {
        "start": 2.0,
        "end": 4.0,
        "caption": "window two: a park",
        "status": "ok",
        "info": {"finish_reason": "stop", "prompt_tokens": 80, "generated_tokens": 5, "flags": []},
    },
]


@pytest.fixture(scope="module")
def report_page(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path, vllm_engine) -> dict:
    """A real run (ok, ok, error), info and windows added by hand, then ``vidcap report``."""
    tmp = tmp_path_factory.mktemp("report")
    make_clip(tmp / "clips" / "street.mp4", seconds=2.0, fps=12, width=192, height=128)
    make_clip(tmp / "clips" / "long.mp4", seconds=4.0, fps=10, width=160, height=96)
    data = write_jsonl(
        tmp / "data.jsonl",
        [
            {"id": "street", "video": ["clips/street.mp4"]},
            {"id": "long", "video": ["clips/long.mp4"]},
            {"id": "lost", "video": ["clips/missing.mp4"]},
        ],
    )
    config = tmp / "tiny.toml"
    config.write_text(
        f'model = "{tiny_model}"\nmax_model_len = {TINY_ENGINE["max_model_len"]}\n'
        f"gpu_memory_utilization = {TINY_ENGINE['gpu_memory_utilization']}\nenforce_eager = true\n"
        "max_tokens = 8\ndecode_workers = 1\nfps = 2.0\nmin_pixels = 12544\nmax_pixels = 50176\nseed = 0\n"
    )
    out = tmp / "captions.jsonl"
    run = build_config(load_config_file(config), {"input": str(data), "output": str(out), "id_key": "id"})
    assert run_captioning(run, vllm_engine).exit_code == 1  # the missing video fails its record alone
    records = [r.data for r in iter_records(out)]
    assert [r["status"] for r in records] == ["ok", "ok", "error"]
    # Known info and windows, in their documented shape (the sampled flags vary with the noise).
    records[0]["info"] = {
        "finish_reason": "length",
        "prompt_tokens": 120,
        "generated_tokens": 8,
        "flags": ["truncated"],
    }
    records[1]["info"] = {"finish_reason": "stop", "prompt_tokens": 90, "generated_tokens": 6, "flags": []}
    records[1]["windows"] = WINDOWS
    write_jsonl(out, records)

    made = run_vidcap("report", str(out), "-c", str(config), "--decode-workers", "1")
    assert made.returncode == 0, made.stderr
    html = tmp / "captions.report.html"
    assert html.is_file()
    return {"html": html, "records": records, "tmp": tmp}


@pytest.fixture(scope="module")
def browser(report_page: dict):
    with tempfile.TemporaryDirectory() as profile, Browser(BROWSER, Path(profile)) as chromium:
        chromium.open(report_page["html"].as_uri())
        yield chromium


CARDS = "[...document.querySelectorAll('article.rec')].map(a => a.dataset.id)"


def test_thumbnails_render_and_screenshot_is_kept(browser: Browser, report_page: dict) -> None:
    images = browser.evaluate(
        "[...document.images].map(i => ({w: i.naturalWidth, h: i.naturalHeight, ok: i.complete,"
        " card: i.closest('article').dataset.id}))"
    )
    assert images, "no thumbnails on the page"
    assert all(i["ok"] and i["w"] > 0 and i["h"] > 0 for i in images), images
    cards = {i["card"] for i in images}
    assert cards == {"street", "long"}  # the lost video has none
    shot = browser.screenshot(report_page["tmp"] / "report.png")
    print(f"\nreport screenshot: {shot}\nreport page: {report_page['html']}")
    assert shot.stat().st_size > 10_000


def test_captions_and_failed_records_are_on_the_page(browser: Browser, report_page: dict) -> None:
    assert browser.evaluate(CARDS) == ["street", "long", "lost"]
    captions = browser.evaluate("[...document.querySelectorAll('.caption')].map(c => c.textContent)")
    for record in report_page["records"][:2]:
        assert record["caption"] in captions  # the real (noise) captions of the run
    lost = browser.evaluate(
        "(() => { const a = document.querySelector('article[data-id=lost]');"
        " return {cls: a.className, error: a.querySelector('.error').textContent,"
        " missing: a.querySelector('.missing').textContent}; })()"
    )
    assert "s-error" in lost["cls"]
    assert lost["error"] == "error: " + report_page["records"][2]["error"]
    assert "clips/missing.mp4" in lost["error"] and "video not shown" in lost["missing"]
    # Each window's caption beside its own frames.
    windows = browser.evaluate(
        "[...document.querySelectorAll('article[data-id=long] .window')].map(w => ({"
        " caption: w.querySelector('.caption').textContent, images: w.querySelectorAll('img').length,"
        " times: [...w.querySelectorAll('figcaption')].map(f => parseFloat(f.textContent))}))"
    )
    assert [w["caption"] for w in windows] == [w["caption"] for w in WINDOWS]
    # A windowed record's own caption is not its windows' joined text: it is shown as a summary
    # (this run had no --summary-prompt to show), not as a caption of the frames.
    label = browser.evaluate("document.querySelector('article[data-id=long] .clabel').textContent")
    assert label == "summary of the windows' captions · prompt: (not in the run summary)"
    assert browser.evaluate("document.querySelectorAll('article[data-id=street] .clabel').length") == 0
    for window, spec in zip(windows, WINDOWS, strict=True):
        assert window["images"] > 0
        assert all(spec["start"] <= t <= spec["end"] for t in window["times"]), window


def _set(browser: Browser, element: str, value: str, event: str) -> None:
    browser.evaluate(
        f"(() => {{ const e = document.getElementById('{element}'); e.value = {value!r};"
        f" e.dispatchEvent(new Event('{event}')); }})()"
    )


def _settle(browser: Browser) -> None:
    browser.evaluate("new Promise(r => setTimeout(r, 400))")  # the search box waits 120 ms for typing


def test_filters_work(browser: Browser, report_page: dict) -> None:
    _set(browser, "f-status", "error", "change")
    assert browser.evaluate(CARDS) == ["lost"]
    assert "status=error" in browser.evaluate("location.hash")
    _set(browser, "f-status", "", "change")
    _set(browser, "f-flag", "truncated", "change")
    assert browser.evaluate(CARDS) == ["street"]
    _set(browser, "f-flag", "repetition", "change")  # a window's flag
    assert browser.evaluate(CARDS) == ["long"]
    _set(browser, "f-flag", "(none)", "change")
    assert browser.evaluate(CARDS) == ["lost"]
    _set(browser, "f-flag", "", "change")
    _set(browser, "f-q", "PARK", "input")  # case-insensitive, in window captions too
    _settle(browser)
    assert browser.evaluate(CARDS) == ["long"]
    _set(browser, "f-q", "no caption says this", "input")
    _settle(browser)
    assert browser.evaluate(CARDS) == []
    count = browser.evaluate("document.getElementById('count').textContent")
    assert count == "no record matches these filters"
    # A filtered view opened from its URL.
    browser.open("about:blank")
    browser.open(report_page["html"].as_uri() + "#status=ok&flag=truncated")
    assert browser.evaluate(CARDS) == ["street"]
    assert browser.evaluate("document.getElementById('f-status').value") == "ok"
