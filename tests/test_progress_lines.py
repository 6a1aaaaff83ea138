"""What a run says while it works, in a log (plain lines) and on a terminal (Rich): that the
model is still loading, which shard it captions, each status line once (fake engine; the real
engine's run is in tests/test_cli_terminal.py)."""

from __future__ import annotations

import io
import re
import time
from pathlib import Path

from tests.test_runner_errors import FakeEngine, config, dataset
from vidcap.executors.job import run_captioning
from vidcap.progress import LineProgress, RichProgress

STAMP = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d vidcap: "


class SlowStart(FakeEngine):
    """Takes ``seconds`` to load its model, as a real one takes minutes."""

    seconds = 1.6

    def start(self, *, max_videos_per_prompt: int) -> None:
        time.sleep(self.seconds)
        super().start(max_videos_per_prompt=max_videos_per_prompt)


def test_a_log_shows_the_model_load_alive_and_each_status_line_once(
    tmp_path: Path, clip_dir: Path, tiny_model: Path
) -> None:
    stream = io.StringIO()
    data = dataset(tmp_path, clip_dir, 4)
    # An interval shorter than a batch: the last record's line comes from advance, and stop
    # must not print the same 100% line again.
    progress = LineProgress(stream, interval_s=0.5)
    run_captioning(
        config(data, tmp_path / "out.jsonl", batch_size=4), SlowStart(tiny_model), progress=progress
    )
    lines = stream.getvalue().splitlines()
    loading = [line for line in lines if re.fullmatch(STAMP + r"loading the model: \d+ s", line)]
    assert 2 <= len(loading) <= 4, lines  # every 0.5 s of the 1.6 s load
    assert loading == sorted(loading, key=lambda line: int(line.split()[-2]))
    assert lines.index(loading[-1]) < next(
        i for i, line in enumerate(lines) if "captioning data.jsonl" in line
    )
    done = [line for line in lines if "4/4 records (100%)" in line]
    assert len(done) == 1, lines


def test_the_last_status_line_is_printed_once() -> None:
    stream = io.StringIO()
    progress = LineProgress(stream, interval_s=0.0)  # every advance prints, the last one too
    progress.start(2, description="captioning data.jsonl")
    progress.advance(1, videos=1, errors=0)
    progress.advance(1, videos=1, errors=0)
    progress.stop()
    lines = stream.getvalue().splitlines()
    assert [line.split("vidcap: ")[1].split(",")[0] for line in lines] == [
        "captioning data.jsonl: 2 records",
        "1/2 records (50%)",
        "2/2 records (100%)",
    ]


def test_a_log_names_the_shard_and_its_lines(
    tmp_path: Path, clip_dir: Path, tiny_model: Path, caplog
) -> None:
    data = dataset(tmp_path, clip_dir, 10)
    caplog.set_level("INFO", logger="vidcap")
    out = tmp_path / "out.jsonl"
    run_captioning(config(data, out, shard_index=1, num_shards=3), FakeEngine(tiny_model))
    assert caplog.messages[0] == f"checking the records in {data} (shard 1 of 3: lines 5-7 of 10)"
    caplog.clear()
    run_captioning(config(data, tmp_path / "whole.jsonl"), FakeEngine(tiny_model))
    assert caplog.messages[0] == f"checking the records in {data}"  # the whole input: no shard to name


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_shows_the_time_the_model_has_been_loading(tmp_path: Path) -> None:
    screen = Terminal()
    progress = RichProgress(screen)
    progress.waiting("loading the model")
    time.sleep(1.3)  # Rich redraws about 10 times a second
    progress.done_waiting()
    shown = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen.getvalue())  # colours, cursor moves
    assert re.search(r"vidcap: loading the model +0:00:01\r", shown), repr(shown)
    assert screen.getvalue().endswith("\x1b[2K"), repr(shown)  # the line is erased when the load ends
