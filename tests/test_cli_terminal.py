"""What a person sees in the terminal: help at 80 columns, one error format, what vidcap is
doing as it happens, and no line that is not vidcap's own.

All of these run the real ``vidcap`` command. The ones marked ``engine`` start the real vLLM
engine (CPU build, tiny random-weight model): its captions are noise, only the lines
around them are checked.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import TINY_ENGINE, run_vidcap, write_jsonl
from vidcap.errors import EXIT_ENGINE_FAILED

# Every line vidcap itself writes to stderr has one of these shapes.
OWN_LINE = re.compile(
    r"^(vidcap: |error: |\d{4}-\d\d-\d\d \d\d:\d\d:\d\d vidcap: |Done: |Interrupted: "
    r"|  (time|rate|tokens|flags|engine|output|summary|failed): |  rerun the same command)"
)
ENGINE_FLAGS = [f"--{k.replace('_', '-')}={v}" for k, v in TINY_ENGINE.items() if k != "enforce_eager"]


def foreign_lines(text: str) -> list[str]:
    """The non-empty lines of ``text`` that are not vidcap's own."""
    return [line for line in text.splitlines() if line.strip() and not OWN_LINE.match(line)]


def narrow(**extra: str) -> dict[str, str]:
    return {**os.environ, "COLUMNS": "80", **extra}


# --- help -------------------------------------------------------------------------------


COMMANDS = ("run", "probe", "clips", "merge", "demo", "report")


@pytest.mark.parametrize("command", [["--help"], *([command, "--help"] for command in COMMANDS)])
def test_help_fits_80_columns_without_cutting_flags(command: list[str]) -> None:
    result = run_vidcap(*command, env=narrow())
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    too_long = [line for line in lines if len(line) > 80]
    assert not too_long, too_long
    assert "…" not in result.stdout
    assert "<bool>" not in result.stdout  # switches take no value


def test_run_help_names_every_flag_choices_required_and_exit_codes() -> None:
    text = run_vidcap("run", "--help", env=narrow()).stdout
    flags = ("--tensor-parallel-size", "--data-parallel-size", "--gpu-memory-utilization", "--max-model-len")
    for flag in (*flags, "--decode-timeout"):
        assert re.search(rf"^\s+{flag} ", text, re.MULTILINE), flag
    assert "--backend <vllm|transformers|openai>" in text
    assert "--on-bad-line <error|skip>" in text
    assert "--on-missing-video <record|error>" in text
    assert re.search(r"^\s+-q, --quiet\s+No progress display", text, re.MULTILINE)
    assert " ".join(text.split()).count("Required, here or in --config.") == 2  # --input and --model
    assert "Usage: python -m vidcap run [OPTIONS] [INPUT]" in text
    codes = text[text.index("Exit codes:") :]
    for code in ("0", "1", "2", "69", "70", "73", "75", "130"):
        assert re.search(rf"^\s+{code}\s+\w", codes, re.MULTILINE), code
    assert "Exit codes:" in run_vidcap("--help", env=narrow()).stdout


def test_demo_takes_the_engine_flags_run_takes() -> None:
    text = run_vidcap("demo", "--help", env=narrow()).stdout
    flags = ("--gpu-memory-utilization", "--max-model-len", "--max-tokens", "--enforce-eager", "--verbose")
    for flag in flags:
        assert flag in text, flag


# --- the capture itself -----------------------------------------------------------------


def test_capture_takes_child_processes_output_and_leaves_vidcaps_own(tmp_path: Path, capfd) -> None:
    from vidcap.quiet import capture_output, terminal_err, terminal_out

    log = tmp_path / "out" / "captions.jsonl.log"  # its folder is made on demand
    child = "import os, sys; print('child stdout'); print('child stderr', file=sys.stderr)"
    with capture_output(log) as capture:
        subprocess.run([sys.executable, "-c", child], check=True)
        os.write(2, b"raw fd 2\n")  # as C code (torch's NUMA notice) writes
        with open(2, "w", closefd=False) as stderr:  # as sys.stderr is in the real command
            print("library notice", file=stderr)
        print("vidcap line", file=terminal_err())
        print("vidcap result", file=terminal_out())
    print("after", file=sys.stderr)
    shown = capfd.readouterr()
    text = log.read_text()
    for line in ("child stdout", "child stderr", "raw fd 2", "library notice"):
        assert line in text and line not in shown.out + shown.err, line
    assert shown.err.splitlines() == ["vidcap line", "after"]
    assert shown.out.splitlines() == ["vidcap result"]
    assert capture.captured_bytes == len(text.encode()) - len(text.splitlines(keepends=True)[0].encode())
    assert capture.note() == f"vidcap: other libraries' messages are in {log} (--verbose shows them here)"


def test_a_capture_that_caught_nothing_leaves_no_log(tmp_path: Path, capfd) -> None:
    from vidcap.quiet import capture_output

    log = tmp_path / "captions.jsonl.log"
    with capture_output(log) as capture:
        pass
    assert not log.exists() and capture.note() is None
    with capture_output(log, enabled=False) as capture:
        print("verbose: shown", file=sys.stderr)
    assert not log.exists() and "verbose: shown" in capfd.readouterr().err


# --- what the run says (fake engine: the real one is below) ----------------------------


def test_the_run_says_what_it_does_and_the_summary_where_failures_are(
    tmp_path: Path, clip_dir: Path, tiny_model: Path, caplog, capsys
) -> None:
    from tests.test_runner_errors import FakeEngine, config, dataset
    from vidcap.executors.job import run_captioning
    from vidcap.pipeline.summary_lines import print_summary

    data = dataset(tmp_path, clip_dir, 7, failing={1, 2, 3, 4, 5, 6})
    out = tmp_path / "out.jsonl"
    caplog.set_level("INFO", logger="vidcap")
    first = run_captioning(config(data, out, batch_size=2), FakeEngine(tiny_model))
    assert [m for m in caplog.messages if "resuming" in m] == []
    out.write_bytes(b"".join(out.read_bytes().splitlines(keepends=True)[:5]))  # as if killed after 5
    caplog.clear()
    second = run_captioning(config(data, out, batch_size=2), FakeEngine(tiny_model))
    assert caplog.messages[:3] == [
        f"checking the records in {data}",
        "7 records ok; loading the model fake",
        caplog.messages[2],
    ]
    assert re.fullmatch(r"model loaded in [\d.]+ s", caplog.messages[2])
    assert caplog.messages[3] == f"resuming after 5 records already done in {out}"
    assert first.stats.load_s >= 0 and first.stats.caption_s > 0

    print_summary(second.summary_data, interrupted=False)
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "Done: 0 ok, 2 error, 0 skipped, 5 already done"
    # Every failed record in the file counts, the resumed ones too; the first five are named.
    failed = "  failed:  lines 2, 3, 4, 5, 6, ... (6 in the file) of out.jsonl (see their 'error' field)"
    assert lines[-1] == failed
    print_summary(second.summary_data, interrupted=False, id_key="id")
    assert capsys.readouterr().err.splitlines()[-1].startswith("  failed:  ids 1, 2, 3, 4, 5, ... (6 in")


def test_the_failed_line_names_rows_of_a_parquet_output(
    tmp_path: Path, clip_dir: Path, tiny_model: Path, capsys
) -> None:
    """Parquet (and CSV) outputs hold rows, not lines: the failed line says which rows."""
    from tests.test_runner_errors import FakeEngine, config, dataset
    from vidcap.executors.job import run_captioning
    from vidcap.pipeline.summary_lines import print_summary

    data = dataset(tmp_path, clip_dir, 3, failing={1})
    for name in ("out.parquet", "out.csv"):
        result = run_captioning(config(data, tmp_path / name), FakeEngine(tiny_model))
        print_summary(result.summary_data, interrupted=False)
        last = capsys.readouterr().err.splitlines()[-1]
        assert last == f"  failed:  rows 2 of {name} (see their 'error' field)", last


# --- input and model errors, one format ------------------------------------------------


def test_positional_input_is_the_dataset(tmp_path: Path, tiny_model: Path) -> None:
    result = run_vidcap("run", str(tmp_path / "nope.jsonl"), "--model", str(tiny_model))
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: input file not found: {tmp_path / 'nope.jsonl'}"


def test_positional_and_flag_input_must_agree(tmp_path: Path, tiny_model: Path) -> None:
    result = run_vidcap("run", "a.jsonl", "--input", "b.jsonl", "--model", str(tiny_model))
    assert result.returncode == 2
    assert result.stderr.strip() == "error: two inputs given: a.jsonl and --input b.jsonl; give one"


def test_missing_input_says_how_to_give_it(tiny_model: Path) -> None:
    result = run_vidcap("run", "--model", str(tiny_model))
    assert result.returncode == 2
    assert result.stderr.startswith("error: missing the input dataset: vidcap run DATA.jsonl")


@pytest.fixture()
def one_record(tmp_path: Path, clip_dir: Path) -> Path:
    return write_jsonl(tmp_path / "data.jsonl", [{"video": str(clip_dir / "a.mp4")}])


def test_hub_id_fails_at_once_when_offline(one_record: Path, tmp_path: Path) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    started = time.monotonic()
    result = run_vidcap("run", str(one_record), "--model", "nobody/no-such-model", env=env)
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [
        "error: model 'nobody/no-such-model' is not a local folder, so it was taken for a Hugging Face "
        "hub id, which is not in the Hugging Face cache and HF_HUB_OFFLINE is set"
    ]
    assert time.monotonic() - started < 30  # no retries (the command's own start-up included)


def test_hub_id_fails_at_once_when_the_hub_cannot_be_reached(one_record: Path, tmp_path: Path) -> None:
    # Port 9 (discard) on this machine: nothing listens, the connection is refused at once.
    env = {**os.environ, "HF_ENDPOINT": "http://127.0.0.1:9", "HF_HOME": str(tmp_path / "hf")}
    for name in ("HF_HUB_OFFLINE", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        env.pop(name, None)
    result = run_vidcap("run", str(one_record), "--model", "nobody/no-such-model", env=env)
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert "taken for a Hugging Face hub id" in result.stderr
    assert "http://127.0.0.1:9 cannot be reached" in result.stderr


def test_probe_and_run_read_a_dataset_alike(tmp_path: Path, clip_dir: Path, tiny_model: Path) -> None:
    data = write_jsonl(tmp_path / "data.jsonl", [{"video": str(clip_dir / "a.mp4")}, {"clip": "b.mp4"}])
    table = tmp_path / "data.txt"
    table.write_text("video\na.mp4\n")
    for dataset, message in (
        (data, f"{data}:2: record has no 'video' field"),
        (table, f"{table}: unsupported input file extension '.txt'"),
    ):
        probe = run_vidcap("probe", str(dataset))
        run = run_vidcap("run", str(dataset), "--model", str(tiny_model))
        for result in (probe, run):
            assert result.returncode == 2, result.stderr
            errors = [line for line in result.stderr.splitlines() if "error" in line.lower()]
            assert len(errors) == 1 and errors[0].startswith(f"error: {message}"), result.stderr
        assert probe.stderr.splitlines()[-1] == run.stderr.splitlines()[-1]


def test_probe_marks_unreadable_videos_in_the_same_format(tmp_path: Path, clip_dir: Path) -> None:
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video")
    result = run_vidcap("probe", str(clip_dir / "a.mp4"), str(broken))
    assert result.returncode == 1
    assert re.search(rf"^error: .*{re.escape(str(broken))}", result.stdout, re.MULTILINE), result.stdout


# --- runs through the real engine ------------------------------------------------------


@pytest.mark.engine
def test_quiet_run_shows_only_vidcap_lines_and_where_failures_are(
    tiny_model: Path, clip_dir: Path, tmp_path: Path
) -> None:
    data = write_jsonl(
        tmp_path / "data.jsonl",
        [
            {"id": "a", "video": str(clip_dir / "a.mp4")},
            {"id": "gone", "video": str(tmp_path / "missing.mp4")},
            {"id": "c", "video": str(clip_dir / "c.avi")},
        ],
    )
    out = tmp_path / "out" / "captions.jsonl"  # the folder does not exist yet
    args = ["run", str(data), "-o", str(out), "-m", str(tiny_model), "--id-key", "id", *ENGINE_FLAGS]
    result = run_vidcap(*args, "--max-tokens", "8", "--enforce-eager", timeout=900)
    assert result.returncode == 1, result.stderr  # one record failed
    assert foreign_lines(result.stderr) == [], result.stderr
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    order = [
        f"vidcap: checking the records in {data}",
        f"vidcap: 3 records ok; loading the model {tiny_model}",
        "vidcap: model loaded in ",
        "vidcap: up to ",
        "vidcap: output written; closing the engine",  # the seconds vLLM takes to end are said
        f"vidcap: other libraries' messages are in {out}.log",
        "Done: 2 ok, 1 error, 0 skipped",
    ]
    found = [next(i for i, line in enumerate(lines) if line.startswith(start)) for start in order]
    assert found == sorted(found), result.stderr
    assert len([line for line in lines if "3/3 records (100%)" in line]) == 1, result.stderr
    log = Path(f"{out}.log").read_text()
    assert "Triton" in log or "WARNING" in log  # what was kept off the terminal is in the log
    assert re.search(r"^  time: +[\d.]+ s in all, [\d.]+ s of it loading the model$", result.stderr, re.M)
    assert re.search(r"^  rate: +[\d.]+ videos/s captioning, [\d.]+ videos/s overall", result.stderr, re.M)
    assert f"  failed:  ids gone of {out.name} (see their 'error' field)" in lines


@pytest.mark.engine
def test_a_broken_model_still_ends_with_a_clear_error(
    tiny_model: Path, one_record: Path, tmp_path: Path
) -> None:
    broken = tmp_path / "broken-model"
    shutil.copytree(tiny_model, broken)
    for weights in broken.glob("*.safetensors"):
        weights.write_bytes(b"not safetensors")
    out = tmp_path / "o.jsonl"
    result = run_vidcap("run", str(one_record), "-o", str(out), "-m", str(broken), *ENGINE_FLAGS, timeout=900)
    assert result.returncode == EXIT_ENGINE_FAILED, result.stderr  # 69: the model could not be started
    assert "Traceback" not in result.stderr
    assert foreign_lines(result.stderr) == [], result.stderr
    last = result.stderr.splitlines()[-1]
    assert last.startswith(f"error: cannot load model '{broken}': "), last
    assert last.endswith(f"(more in {out}.log)"), last
    assert Path(f"{out}.log").stat().st_size > 0


def tmux(socket: str, *args: str) -> str:
    """Run a tmux command on a private server (its own socket: no one else's sessions, our env)."""
    return subprocess.run(["tmux", "-L", socket, *args], capture_output=True, text=True, check=True).stdout


@pytest.mark.engine
@pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux (Debian package tmux), a real terminal")
def test_demo_in_a_terminal_shows_a_bar_and_nothing_foreign(tmp_path: Path) -> None:
    socket = f"vidcap-test-{os.getpid()}"
    screen = tmp_path / "screen.txt"
    done = tmp_path / "done"
    command = (
        f"cd {tmp_path} && {sys.executable} -m vidcap demo --workdir demo --max-tokens 8 > records.jsonl; "
        f"echo exit=$? > {done}; sleep 3600"  # the pane stays open to be read
    )
    tmux(socket, "new-session", "-d", "-x", "100", "-y", "50", f"bash -c '{command}'")
    try:
        deadline = time.monotonic() + 900
        while not done.exists() and time.monotonic() < deadline:
            time.sleep(2)
        time.sleep(1)
        pane = tmux(socket, "capture-pane", "-p", "-J", "-S", "-200")  # -J: join wrapped lines
    finally:
        subprocess.run(["tmux", "-L", socket, "kill-server"], capture_output=True)
    screen.write_text(pane)
    assert (tmp_path / "done").read_text().strip() == "exit=0", pane
    shown = [line for line in pane.splitlines() if line.strip()]
    assert any(re.search(r"captioning data\.jsonl .*4/4 .*videos/s", line) for line in shown), pane
    noise = [
        line
        for line in shown
        if not OWN_LINE.match(line)
        and "captioning data.jsonl" not in line  # the bar
        and not line.startswith(("These captions come from", "For real captions", "  vidcap run", "(needs a"))
        and not line.startswith(("Look at the captions", "  vidcap report"))
    ]
    assert noise == [], pane
    assert len((tmp_path / "records.jsonl").read_text().splitlines()) == 4
