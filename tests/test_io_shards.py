"""Shard ranges, SLURM job-array environments, shard spans of an input file and their names."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from vidcap.errors import VidcapError
from vidcap.executors.array_share import shard_from_env
from vidcap.io import shards
from vidcap.io.formats import find_span
from vidcap.io.records import SpanReader, iter_records
from vidcap.io.shards import default_output, default_shard_outputs, shard_range

CASES = [(total, n) for total in [*range(0, 40), 97, 1000, 12_345] for n in [*range(1, 13), 16, 64, 100]]


def test_shards_are_contiguous_disjoint_covering_and_balanced() -> None:
    for total, n in CASES:
        ranges = [shard_range(total, i, n) for i in range(n)]
        assert all(r.step == 1 for r in ranges)
        # Contiguous and in order: each starts where the previous one stopped; together [0, total).
        assert ranges[0].start == 0 and ranges[-1].stop == total, (total, n)
        assert all(a.stop == b.start for a, b in itertools.pairwise(ranges)), (total, n)
        sizes = [len(r) for r in ranges]
        assert sum(sizes) == total and max(sizes) - min(sizes) <= 1, (total, n)
        # The first total % n shards are the bigger ones.
        assert sizes == [total // n + (1 if i < total % n else 0) for i in range(n)], (total, n)
        assert ranges == [shard_range(total, i, n) for i in range(n)]  # deterministic


def test_examples() -> None:
    assert [shard_range(10, i, 3) for i in range(3)] == [range(0, 4), range(4, 7), range(7, 10)]
    assert [shard_range(2, i, 4) for i in range(4)] == [range(0, 1), range(1, 2), range(2, 2), range(2, 2)]


@pytest.mark.parametrize(("index", "n"), [(-1, 4), (4, 4), (0, 0), (0, -2)])
def test_invalid_shard(index: int, n: int) -> None:
    with pytest.raises(VidcapError):
        shard_range(10, index, n)


def test_no_job_array() -> None:
    assert shard_from_env({}) is None
    assert shard_from_env({"SLURM_JOB_ID": "123", "SLURM_ARRAY_TASK_COUNT": "4"}) is None


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"SLURM_ARRAY_TASK_ID": "0", "SLURM_ARRAY_TASK_COUNT": "4"}, (0, 4)),
        ({"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_MIN": "0"}, (3, 4)),
        # --array=1-8
        ({"SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_COUNT": "8", "SLURM_ARRAY_TASK_MIN": "1"}, (0, 8)),
        (
            {
                "SLURM_ARRAY_TASK_ID": "8",
                "SLURM_ARRAY_TASK_COUNT": "8",
                "SLURM_ARRAY_TASK_MIN": "1",
                "SLURM_ARRAY_TASK_MAX": "8",
            },
            (7, 8),
        ),
        # --array=0-14:2
        (
            {
                "SLURM_ARRAY_TASK_ID": "6",
                "SLURM_ARRAY_TASK_COUNT": "8",
                "SLURM_ARRAY_TASK_MIN": "0",
                "SLURM_ARRAY_TASK_MAX": "14",
                "SLURM_ARRAY_TASK_STEP": "2",
            },
            (3, 8),
        ),
    ],
)
def test_slurm_env(env: dict[str, str], expected: tuple[int, int]) -> None:
    assert shard_from_env(env) == expected


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"SLURM_ARRAY_TASK_ID": "x", "SLURM_ARRAY_TASK_COUNT": "4"},
            "SLURM_ARRAY_TASK_ID='x' is not an integer",
        ),
        ({"SLURM_ARRAY_TASK_ID": "2"}, "SLURM_ARRAY_TASK_COUNT is not"),
        (
            {"SLURM_ARRAY_TASK_ID": "4", "SLURM_ARRAY_TASK_COUNT": "4"},
            "shard index 4 is out of range for 4 shards",
        ),
        ({"SLURM_ARRAY_TASK_ID": "0", "SLURM_ARRAY_TASK_COUNT": "0"}, "shard count must be at least 1"),
        (
            {"SLURM_ARRAY_TASK_ID": "0", "SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_MIN": "1"},
            "shard index -1 is out of range",
        ),
        # --array=1,4,9: not an evenly spaced range
        (
            {
                "SLURM_ARRAY_TASK_ID": "4",
                "SLURM_ARRAY_TASK_COUNT": "3",
                "SLURM_ARRAY_TASK_MIN": "1",
                "SLURM_ARRAY_TASK_MAX": "9",
            },
            "does not have SLURM_ARRAY_TASK_COUNT=3 evenly spaced tasks",
        ),
        (
            {"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_STEP": "2"},
            "is not on the array's range",
        ),
    ],
)
def test_slurm_env_errors(env: dict[str, str], message: str) -> None:
    with pytest.raises(VidcapError) as info:
        shard_from_env(env)
    assert message in str(info.value)


def test_default_output_names() -> None:
    data = Path("/d/data.jsonl")
    assert default_output(data) == Path("/d/data.captions.jsonl")
    assert default_output(data, (2, 8)) == Path("/d/data.captions.shard-2-of-8.jsonl")
    assert default_output(Path("x.y.json"), (0, 1)) == Path("x.y.captions.shard-0-of-1.json")


def test_default_shard_outputs_are_found_beside_the_input(tmp_path: Path) -> None:
    data = tmp_path / "da[t]a.jsonl"  # glob characters in the name are taken literally
    for name in ["da[t]a.captions.shard-0-of-2.jsonl", "da[t]a.captions.shard-1-of-2.jsonl",
                 "da[t]a.captions.shard-x-of-2.jsonl", "da[t]a.captions.shard-0-of-2.json",
                 "other.captions.shard-0-of-2.jsonl", "da[t]a.captions.jsonl"]:
        (tmp_path / name).write_text("")
    assert [p.name for p in default_shard_outputs(data)] == [
        "da[t]a.captions.shard-0-of-2.jsonl",
        "da[t]a.captions.shard-1-of-2.jsonl",
    ]


LINES = [
    b'{"n": 0}',
    b"",
    b'{"n": 1}',
    b"   ",
    b'{"n": 2, "s": "\\u00e9\xc3\xa9"}',
    b'{"n": 3}',
    b"",
    b'{"n": 4}',
    b'{"n": 5}',
]


@pytest.mark.parametrize("ending", [b"\n", b"\r\n"])
@pytest.mark.parametrize("final_newline", [True, False])
@pytest.mark.parametrize("bom", [False, True])
@pytest.mark.parametrize("chunk", [3, 7, 1 << 24])  # block boundaries inside lines and at newlines
def test_spans_tile_the_lines_and_read_exactly_their_records(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ending: bytes, final_newline: bool, bom: bool, chunk: int
) -> None:
    monkeypatch.setattr(shards, "_CHUNK", chunk)
    path = tmp_path / "data.jsonl"
    body = ending.join(LINES) + (ending if final_newline else b"")
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + body)
    whole = [(r.line, r.data) for r in iter_records(path)]
    for n in [1, 2, 3, 4, 9, 12]:
        spans = [find_span(path, i, n) for i in range(n)]
        assert all(s.units == len(LINES) and s.size == path.stat().st_size for s in spans)
        assert [(s.start, s.stop) for s in spans] == [
            (r.start, r.stop) for r in (shard_range(len(LINES), i, n) for i in range(n))
        ]
        # Byte ranges tile the file too, so no line is read by two shards or by none.
        assert spans[0].byte_start == 0 and spans[-1].byte_stop == path.stat().st_size
        assert all(a.byte_stop == b.byte_start for a, b in itertools.pairwise(spans))
        read = [[(r.line, r.data) for r in SpanReader(s)] for s in spans]
        assert [x for part in read for x in part] == whole
        for span, part in zip(spans, read, strict=True):  # indexes count the span's own records
            assert [r.index for r in SpanReader(span)] == list(range(len(part)))


def test_span_digest_follows_the_span_content(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    path.write_bytes(b"".join(line + b"\n" for line in LINES))

    def digests() -> list[str | None]:
        readers = [SpanReader(find_span(path, i, 3), digest=True) for i in range(3)]
        for reader in readers:
            list(reader)
        return [reader.digest for reader in readers]

    before = digests()
    assert len(set(before)) == 3
    changed = list(LINES)
    changed[7] = b'{"n": 44}'  # in the last shard (lines 6..8) only
    path.write_bytes(b"".join(line + b"\n" for line in changed))
    after = digests()
    assert after[:2] == before[:2] and after[2] != before[2]
    path.write_bytes(b"".join(line + b"\r\n" for line in changed))  # line endings do not count
    assert digests() == after


def test_span_reads_nothing_outside_its_byte_range(tmp_path: Path) -> None:
    """A bad line in another shard's lines does not stop this shard (it never reads it)."""
    path = tmp_path / "data.jsonl"
    path.write_bytes(b'{"n": 0}\n{"n": 1}\nnot json\n{"n": 3}\n')
    assert [r.data["n"] for r in SpanReader(find_span(path, 0, 2))] == [0, 1]
    with pytest.raises(VidcapError, match=r"data.jsonl:3: invalid JSON"):
        list(SpanReader(find_span(path, 1, 2)))
    skip = SpanReader(find_span(path, 1, 2), on_bad_line="skip")
    assert [r.data["n"] for r in skip] == [3] and skip.bad_count == 1


def test_json_array_spans_are_elements(tmp_path: Path) -> None:
    path = tmp_path / "data.json"
    path.write_text("[" + ", ".join(f'{{"n": {i}}}' for i in range(7)) + "]")
    spans = [find_span(path, i, 3) for i in range(3)]
    assert [(s.start, s.stop, s.units, s.unit) for s in spans] == [
        (0, 3, 7, "element"),
        (3, 5, 7, "element"),
        (5, 7, 7, "element"),
    ]
    assert [[r.data["n"] for r in SpanReader(s)] for s in spans] == [[0, 1, 2], [3, 4], [5, 6]]
    assert [r.line for r in SpanReader(spans[1])] == [4, 5]


def test_empty_file_has_no_units(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    path.write_bytes(b"")
    span = find_span(path, 0, 2)
    assert (span.units, span.start, span.stop, span.byte_start, span.byte_stop) == (0, 0, 0, 0, 0)
