"""Merging shard outputs: the happy path in both formats, and each refusal (gaps, overlaps,
shards of another input, unfinished shards, summaries of other versions, repeated ids)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vidcap.cli.merge import find_shard_outputs, merge_command
from vidcap.errors import VidcapError
from vidcap.io.merge_outputs import merge_outputs, read_shard_summary
from vidcap.io.shards import shard_range
from vidcap.io.sidecar import summary_path
from vidcap.io.writer import open_writer

INPUT = "/abs/path/data.jsonl"
SIZE = 1234
TOTAL = 11  # lines of the input, one record each
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
    size: int = SIZE,
    claimed: int | None = None,
    span: range | None = None,
    id_key: str | None = None,
    name: str | None = None,
) -> Path:
    """A shard output as the runner leaves it: the records of its span, then its summary."""
    r = shard_range(TOTAL, index, n) if span is None else span
    out = folder / (name or f"out.{index}.{ext}")
    writer = open_writer(out, resume=False)
    writer.write_batch(records(r)[:written])
    writer.close(complete=complete)
    summary = {
        "vidcap_version": "0.2.0",
        "input": input_path,
        "output": str(out),
        "shard": {"index": index, "count": n},
        "records_in_shard": len(r) if claimed is None else claimed,
        "complete": complete,
        "id_key": id_key,
        "fingerprint": {
            "version": 1,
            "input": {"path": input_path, "size": size, "format": "jsonl", "units": TOTAL},
            "span": {"start": r.start, "stop": r.stop, "digest": "blake2b-128:00"},
            "options": {"model": "m"},
        },
    }
    summary_path(out).write_text(json.dumps(summary, indent=2))
    return out


def test_summary_path() -> None:
    assert summary_path(Path("/x/out.jsonl")) == Path("/x/out.jsonl.summary.json")
    assert summary_path(Path("out.3.json")) == Path("out.3.json.summary.json")


def test_read_shard_summary(tmp_path: Path) -> None:
    out = make_shard(tmp_path, 1)
    s = read_shard_summary(out)
    assert (s.output, s.index, s.count, s.input_path, s.start, s.stop, s.records_in_shard, s.complete) == (
        out,
        1,
        N,
        INPUT,
        4,
        8,
        4,
        True,
    )
    assert (s.input.size, s.input.units, s.id_key) == (SIZE, TOTAL, None)


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
    assert refusal(tmp_path, shards) == (
        f"shards do not tile the input: line 7 of {INPUT} is in no shard output (shard 3 of 8 missing)"
    )
    assert refusal(tmp_path, shards[:2]) == (
        f"shards do not tile the input: lines 5-11 of {INPUT} are in no shard output "
        "(shards 2, 3, 4, 5, 6, 7 of 8 missing)"
    )


def test_refuses_a_gap_between_shards_of_different_counts(tmp_path: Path) -> None:
    """Spans, not shard numbers, prove the tiling: shards of 3 and of 4 can leave a gap."""
    a = make_shard(tmp_path, 0, n=4)  # lines 1-3
    b = make_shard(tmp_path, 1, n=3)  # lines 5-8
    c = make_shard(tmp_path, 2, n=3)  # lines 9-11
    message = refusal(tmp_path, [a, b, c])
    assert message == f"shards do not tile the input: line 4 of {INPUT} is in no shard output"


def test_refuses_duplicate_shard(tmp_path: Path) -> None:
    shards = [make_shard(tmp_path, i) for i in range(N)]
    twin = tmp_path / "copy" / "out.1.jsonl"
    twin.parent.mkdir()
    twin.write_bytes(shards[1].read_bytes())
    summary_path(twin).write_bytes(summary_path(shards[1]).read_bytes())
    assert refusal(tmp_path, [*shards, twin]) == (
        f"shards do not tile the input: {shards[1]} and {twin} overlap: both hold lines 5-8"
    )


def test_refuses_overlapping_shards(tmp_path: Path) -> None:
    a = make_shard(tmp_path, 0, n=3)  # lines 1-4
    b = make_shard(tmp_path, 1, n=4, name="b.jsonl")  # lines 4-6
    c = make_shard(tmp_path, 2, n=4, name="c.jsonl")  # lines 7-9
    d = make_shard(tmp_path, 2, n=3)  # lines 9-11
    message = refusal(tmp_path, [d, c, b, a])
    assert message == (
        f"shards do not tile the input: {a} and {b} overlap: both hold lines 4-4; "
        f"{c} and {d} overlap: both hold lines 9-9"
    )


def test_refuses_shards_of_another_input(tmp_path: Path) -> None:
    a = make_shard(tmp_path, 0)
    b = make_shard(tmp_path, 1, input_path="/abs/path/other.jsonl")
    c = make_shard(tmp_path, 2)
    assert refusal(tmp_path, [a, b, c]) == (
        f"shard outputs of another input than {INPUT} ({SIZE} bytes): "
        f"{b} is a shard of /abs/path/other.jsonl ({SIZE} bytes)"
    )


def test_refuses_shards_of_another_version_of_the_input(tmp_path: Path) -> None:
    """Same path, other size: the input was changed between shard runs."""
    a = make_shard(tmp_path, 0)
    b = make_shard(tmp_path, 1, size=SIZE + 10)
    c = make_shard(tmp_path, 2)
    assert f"{b} is a shard of {INPUT} ({SIZE + 10} bytes)" in refusal(tmp_path, [a, b, c])


def test_refuses_shards_when_the_input_changed_since(tmp_path: Path) -> None:
    data = tmp_path / "data.jsonl"
    data.write_bytes(b"x" * 10)
    shards = [make_shard(tmp_path, i, input_path=str(data), size=10) for i in range(N)]
    assert merge_outputs(shards, tmp_path / "ok.jsonl").records == TOTAL
    assert merge_outputs(shards, tmp_path / "ok2.jsonl", input_path=data).records == TOTAL
    data.write_bytes(b"x" * 11)
    assert "is now 11 bytes but the shards read it at 10 bytes" in refusal(tmp_path, shards)
    with pytest.raises(VidcapError, match=r"shard outputs of another input than .*data.jsonl \(11 bytes\)"):
        merge_outputs(shards, tmp_path / "all.jsonl", input_path=data)


def test_refuses_an_id_in_two_shards(tmp_path: Path) -> None:
    shards = [make_shard(tmp_path, i, id_key="id") for i in range(N)]
    assert merge_outputs(shards, tmp_path / "ok.jsonl").records == TOTAL
    last = shards[2].read_text().splitlines()
    last[1] = last[1].replace('"id":"009"', '"id":"002"')  # shard 0 holds id 002
    shards[2].write_text("\n".join(last) + "\n")
    message = refusal(tmp_path, shards)
    assert message == (
        f"{shards[2]}:2: duplicate id '002' across shards (an earlier shard or record has it); "
        "--id-key id values must be unique in the whole input"
    )


def test_ids_are_not_checked_without_id_key(tmp_path: Path) -> None:
    shards = [make_shard(tmp_path, i) for i in range(N)]
    last = shards[2].read_text().replace('"id":"009"', '"id":"002"')
    shards[2].write_text(last)
    assert merge_outputs(shards, tmp_path / "all.jsonl").records == TOTAL


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


def test_refuses_summary_of_an_older_version(tmp_path: Path) -> None:
    shards = [make_shard(tmp_path, i) for i in range(N)]
    old = json.loads(summary_path(shards[1]).read_text())
    del old["fingerprint"]
    old["vidcap_version"] = "0.1.0"
    summary_path(shards[1]).write_text(json.dumps(old))
    assert refusal(tmp_path, shards) == (
        f"{summary_path(shards[1])}: written by vidcap 0.1.0, which does not record which input lines the "
        "shard read, so the tiling cannot be checked; rerun the shard with this version (--overwrite)"
    )


def test_refuses_summary_of_a_newer_version(tmp_path: Path) -> None:
    shards = [make_shard(tmp_path, i) for i in range(N)]
    new = json.loads(summary_path(shards[0]).read_text())
    new["fingerprint"]["version"] = 7
    summary_path(shards[0]).write_text(json.dumps(new))
    assert "run fingerprint version 7 is newer than this vidcap reads (1)" in refusal(tmp_path, shards)


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
        ("{not json", "unreadable summary"),
        ("[]", "summary must be a JSON object, found a JSON array"),
        ({"shard": {"index": 0}}, "'shard.count'"),
        ({"complete": 1}, "'complete'"),
        ({"shard": {"index": True, "count": 3}}, "'shard.index'"),
        ({"fingerprint": {"version": 1}}, "'fingerprint.input.path'"),
        ({"fingerprint": "abc"}, "'fingerprint.version'"),
    ],
)
def test_refuses_malformed_summary(tmp_path: Path, summary: str | dict, message: str) -> None:
    shards = [make_shard(tmp_path, i) for i in range(N)]
    if isinstance(summary, dict):  # a valid summary with these fields changed
        summary = json.dumps({**json.loads(summary_path(shards[0]).read_text()), **summary})
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


def test_find_shard_outputs_from_input_glob_and_paths(tmp_path: Path) -> None:
    data = tmp_path / "data.jsonl"
    data.write_text("{}\n")
    names = [f"data.captions.shard-{i}-of-{N}.jsonl" for i in range(N)]
    shards = [make_shard(tmp_path, i, name=name) for i, name in enumerate(names)]
    assert find_shard_outputs([str(data)]) == (shards, data)
    pattern = str(tmp_path / "data.captions.shard-*")  # matches the summaries too; they are left out
    assert find_shard_outputs([pattern]) == (shards, None)
    assert find_shard_outputs([str(shards[1]), str(shards[0])]) == ([shards[1], shards[0]], None)
    for args, message in [
        ([str(tmp_path / "nope.jsonl")], "nope.jsonl: no such file"),
        ([str(tmp_path / "x*.jsonl")], "no file matches"),
        ([str(shards[0].with_name("other.jsonl"))], "no such file"),
    ]:
        with pytest.raises(VidcapError, match=message):
            find_shard_outputs(args)
    lonely = tmp_path / "lonely.jsonl"
    lonely.write_text("{}\n")
    with pytest.raises(VidcapError, match=r"lonely.jsonl: no summary .* no shard outputs beside it named "):
        find_shard_outputs([str(lonely)])


def test_merge_command_by_input_writes_the_default_output(tmp_path: Path) -> None:
    data = tmp_path / "data.jsonl"
    data.write_bytes(b"x" * 10)
    for i in range(N):
        make_shard(tmp_path, i, name=f"data.captions.shard-{i}-of-{N}.jsonl", input_path=str(data), size=10)
    merge_command([str(data)], None)
    merged = tmp_path / "data.captions.jsonl"
    assert [json.loads(line) for line in merged.read_text().splitlines()] == records(range(TOTAL))
    summary = json.loads(summary_path(merged).read_text())
    assert summary["records_per_shard"] == [4, 4, 3] and summary["input"] == str(data.resolve())
    with pytest.raises(VidcapError, match="give --output"):
        merge_command([str(tmp_path / "data.captions.shard-*")], None)


def test_merged_summary_reads_stats_of_other_versions(tmp_path: Path) -> None:
    """Counters a shard summary has that this version does not know, or of the wrong type, are left
    out of the merged statistics rather than failing the merge."""
    shards = [make_shard(tmp_path, i) for i in range(N)]
    stats = [
        {"ok": 4, "prompt_tokens": 10, "new_counter": 3},
        {"ok": "four", "prompt_tokens": 5, "errors_by_kind": {"x": 1}},
        {"ok": 3, "generate_s": 2, "errors_by_kind": {"x": "y"}},
    ]
    for shard, s in zip(shards, stats, strict=True):
        data = json.loads(summary_path(shard).read_text())
        summary_path(shard).write_text(json.dumps({**data, "stats": s}))
    merged = tmp_path / "all.jsonl"
    merge_command([str(s) for s in shards], merged)
    last = json.loads(summary_path(merged).read_text())["shards_last_runs"]
    assert (last["ok"], last["prompt_tokens"], last["generate_s"]) == (7, 15, 2.0)
    assert last["errors_by_kind"] == {"x": 1}


def test_merged_summary_counts_flags_from_the_merged_records(tmp_path: Path) -> None:
    shards = [make_shard(tmp_path, i) for i in range(N)]
    flags = {"000": ["truncated"], "004": ["truncated", "duplicate"], "010": ["repetition"]}
    for shard in shards:
        lines = [json.loads(line) for line in shard.read_text().splitlines()]
        for row in lines:
            row["info"] = {"finish_reason": "stop", "flags": flags.get(row["id"], [])}
        shard.write_text("".join(json.dumps(row) + "\n" for row in lines))
    merged = tmp_path / "all.jsonl"
    merge_command([str(s) for s in shards], merged)
    summary = json.loads(summary_path(merged).read_text())
    assert summary["flag_counts"] == {"truncated": 2, "duplicate": 1, "repetition": 1}
