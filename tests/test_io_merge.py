"""Merging shard outputs: the happy path in both formats, and each refusal."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vidcap.errors import VidcapError
from vidcap.io.merge import merge_outputs, read_shard_summary, summary_path
from vidcap.io.shards import shard_range
from vidcap.io.writer import open_writer

INPUT = "/abs/path/data.jsonl"
TOTAL = 11
N = 3


def records(r: range) -> list[dict]:
    return [{"id": f"{i:03d}", "caption": f"caption {i} 😀", "n": 10**25 + i} for i in r]


def make_shard(
    folder: Path,
    index: int,
    n: int = N,
    *,
    ext: str = "jsonl",
    written: int | None = None,
    complete: bool = True,
    input_path: str = INPUT,
    claimed: int | None = None,
) -> Path:
    """A shard output as the runner leaves it: the records of its range, then its summary."""
    r = shard_range(TOTAL, index, n)
    out = folder / f"out.{index}.{ext}"
    writer = open_writer(out, resume=False)
    writer.write_batch(records(r)[:written])
    writer.close(complete=complete)
    summary = {
        "vidcap_version": "0.1.0",
        "input": input_path,
        "output": str(out),
        "shard": {"index": index, "count": n},
        "records_in_shard": len(r) if claimed is None else claimed,
        "complete": complete,
    }
    summary_path(out).write_text(json.dumps(summary, indent=2))
    return out


def test_summary_path() -> None:
    assert summary_path(Path("/x/out.jsonl")) == Path("/x/out.jsonl.summary.json")
    assert summary_path(Path("out.3.json")) == Path("out.3.json.summary.json")


def test_read_shard_summary(tmp_path: Path) -> None:
    out = make_shard(tmp_path, 1)
    s = read_shard_summary(out)
    assert (s.output, s.index, s.count, s.input, s.records_in_shard, s.complete) == (
        out,
        1,
        N,
        INPUT,
        4,
        True,
    )


@pytest.mark.parametrize("out_ext", ["jsonl", "json"])
@pytest.mark.parametrize("shard_ext", ["jsonl", "json"])
def test_merge_in_input_order(tmp_path: Path, shard_ext: str, out_ext: str) -> None:
    shards = [make_shard(tmp_path, i, ext=shard_ext) for i in range(N)]
    output = tmp_path / "merged" / f"all.{out_ext}"
    report = merge_outputs([shards[2], shards[0], shards[1]], output)  # any order on the command line
    assert (report.output, report.input, report.shards, report.records) == (output, INPUT, N, TOTAL)
    assert report.records_per_shard == (4, 4, 3)
    text = output.read_text("utf-8")
    if out_ext == "jsonl":
        merged = [json.loads(line) for line in text.splitlines()]
    else:
        merged = json.loads(text)
        assert text == json.dumps(merged, indent=2, ensure_ascii=False) + "\n"
    assert merged == records(range(TOTAL))
    assert sorted(p.name for p in output.parent.iterdir()) == [f"all.{out_ext}"]  # no temp file left


def test_merge_with_empty_shards(tmp_path: Path) -> None:
    shards = [make_shard(tmp_path, i, n=15) for i in range(15)]  # 11 records, 15 shards
    report = merge_outputs(shards, tmp_path / "all.jsonl")
    assert report.records == TOTAL and report.records_per_shard.count(0) == 4


def refusal(tmp_path: Path, shards: list[Path]) -> str:
    output = tmp_path / "all.jsonl"
    output.write_text("previous merge\n")
    with pytest.raises(VidcapError) as info:
        merge_outputs(shards, output)
    # A refused merge leaves the previous output as it was and no temp file.
    assert output.read_text() == "previous merge\n"
    assert not list(tmp_path.glob(".*.tmp*"))
    message = str(info.value)
    assert "\n" not in message
    return message


def test_refuses_missing_shard(tmp_path: Path) -> None:
    shards = [make_shard(tmp_path, i, n=8) for i in (0, 1, 2, 4, 5, 6, 7)]
    assert refusal(tmp_path, shards) == "shard 3 of 8 missing"
    assert refusal(tmp_path, shards[:2]) == "shards 2, 3, 4, 5, 6, 7 of 8 missing"


def test_refuses_duplicate_shard(tmp_path: Path) -> None:
    shards = [make_shard(tmp_path, i) for i in range(N)]
    twin = tmp_path / "copy" / "out.1.jsonl"
    twin.parent.mkdir()
    twin.write_bytes(shards[1].read_bytes())
    summary_path(twin).write_bytes(summary_path(shards[1]).read_bytes())
    assert refusal(tmp_path, [*shards, twin]) == f"shard 1 of 3 given twice: {shards[1]} and {twin}"


def test_refuses_different_shard_counts(tmp_path: Path) -> None:
    a = make_shard(tmp_path, 0, n=3)
    (tmp_path / "b").mkdir()
    b = make_shard(tmp_path / "b", 1, n=4)
    assert "disagree on the shard count" in refusal(tmp_path, [a, b])


def test_refuses_different_inputs(tmp_path: Path) -> None:
    a = make_shard(tmp_path, 0)
    b = make_shard(tmp_path, 1, input_path="/abs/path/other.jsonl")
    c = make_shard(tmp_path, 2)
    assert "come from different inputs" in refusal(tmp_path, [a, b, c])


def test_refuses_incomplete_shard(tmp_path: Path) -> None:
    shards = [make_shard(tmp_path, i) for i in range(N)]
    shards[2] = make_shard(tmp_path, 2, written=1, complete=False)
    assert refusal(tmp_path, shards) == f"shard 2 incomplete: 1 of 3 records; rerun it ({shards[2]})"


def test_refuses_shard_with_fewer_records_than_its_summary(tmp_path: Path) -> None:
    shards = [make_shard(tmp_path, i) for i in range(N)]
    shards[1] = make_shard(tmp_path, 1, claimed=5)
    message = refusal(tmp_path, shards)
    assert message == f"shard 1 output {shards[1]} has 4 records but its summary says 5; rerun it"


def test_refuses_complete_shard_with_a_torn_line(tmp_path: Path) -> None:
    shards = [make_shard(tmp_path, i) for i in range(N)]
    shards[2].write_bytes(shards[2].read_bytes()[:-5])  # the last record lost its end
    assert "has 2 records but its summary says 3" in refusal(tmp_path, shards)


def test_refuses_missing_summary(tmp_path: Path) -> None:
    shards = [make_shard(tmp_path, i) for i in range(N)]
    summary_path(shards[0]).unlink()
    assert (
        refusal(tmp_path, shards)
        == f"{shards[0]}: no summary file out.0.jsonl.summary.json; has this shard been run?"
    )


@pytest.mark.parametrize(
    ("summary", "message"),
    [
        ("{not json", "unreadable shard summary"),
        ("[]", "shard summary must be a JSON object"),
        ('{"shard": {"index": 0}, "input": "x", "records_in_shard": 1, "complete": true}', "'shard.count'"),
        (
            '{"shard": {"index": 0, "count": 3}, "input": "x", "records_in_shard": 1, "complete": 1}',
            "'complete'",
        ),
        (
            '{"shard": {"index": true, "count": 3}, "input": "x", "records_in_shard": 1, "complete": true}',
            "index",
        ),
    ],
)
def test_refuses_malformed_summary(tmp_path: Path, summary: str, message: str) -> None:
    shards = [make_shard(tmp_path, i) for i in range(N)]
    summary_path(shards[0]).write_text(summary)
    assert message in refusal(tmp_path, shards)


def test_refuses_missing_shard_output(tmp_path: Path) -> None:
    shards = [make_shard(tmp_path, i) for i in range(N)]
    shards[1].unlink()
    assert refusal(tmp_path, shards) == f"shard 1 output {shards[1]} is missing (its summary exists)"


def test_refuses_output_that_is_a_shard(tmp_path: Path) -> None:
    shards = [make_shard(tmp_path, i) for i in range(N)]
    with pytest.raises(VidcapError, match="is also one of the shard outputs"):
        merge_outputs(shards, shards[0])
    assert shards[0].exists() and summary_path(shards[0]).exists()


def test_refuses_nothing_to_merge(tmp_path: Path) -> None:
    with pytest.raises(VidcapError, match="no shard outputs given"):
        merge_outputs([], tmp_path / "all.jsonl")


def test_refuses_unsupported_output_extension(tmp_path: Path) -> None:
    shards = [make_shard(tmp_path, i) for i in range(N)]
    with pytest.raises(VidcapError, match=r"unsupported output file extension '\.txt'"):
        merge_outputs(shards, tmp_path / "all.txt")
