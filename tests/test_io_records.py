"""Reading input: formats, bad lines and their messages, skip mode, empty input, BOM/CRLF, ranges."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from vidcap.errors import VidcapError
from vidcap.io.records import InputRecord, iter_records, scan_input


def write(path: Path, data: str | bytes) -> Path:
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


def test_jsonl_records_indexes_and_lines(tmp_path: Path) -> None:
    path = write(
        tmp_path / "data.jsonl", '{"id": "007", "video": ["./a.mp4"]}\n\n   \n{"id": 2}\n{"id": 3}\n'
    )
    scan = scan_input(path)
    assert (scan.records, scan.blank_lines, scan.bad_count, scan.bad_lines, scan.format) == (
        3,
        2,
        0,
        (),
        "jsonl",
    )
    records = list(iter_records(path))
    assert records == [
        InputRecord(0, 1, {"id": "007", "video": ["./a.mp4"]}),
        InputRecord(1, 4, {"id": 2}),
        InputRecord(2, 5, {"id": 3}),
    ]
    with pytest.raises(dataclasses.FrozenInstanceError):
        records[0].index = 5  # type: ignore[misc]


def test_ndjson_and_uppercase_extension(tmp_path: Path) -> None:
    for name in ("d.ndjson", "d.JSONL"):
        path = write(tmp_path / name, '{"a": 1}\n')
        assert [r.data for r in iter_records(path)] == [{"a": 1}]


def test_bom_crlf_and_missing_final_newline(tmp_path: Path) -> None:
    path = write(tmp_path / "data.jsonl", b'\xef\xbb\xbf{"id": "a"}\r\n\r\n{"id": "b"}\r\n{"id": "c"}')
    assert scan_input(path).records == 3
    assert [(r.line, r.data["id"]) for r in iter_records(path)] == [(1, "a"), (3, "b"), (4, "c")]


def test_bom_on_json_array(tmp_path: Path) -> None:
    path = write(tmp_path / "data.json", b'\xef\xbb\xbf[\r\n {"id": "a"},\r\n {"id": "b"}\r\n]')
    assert [(r.index, r.line, r.data) for r in iter_records(path)] == [
        (0, 1, {"id": "a"}),
        (1, 2, {"id": "b"}),
    ]


BAD_LINES = [
    ('{"id": 1 "video": 2}', "invalid JSON: Expecting ',' delimiter (column 10)"),
    ('{"id": 1,}', "invalid JSON: Expecting property name enclosed in double quotes (column 10)"),
    ('{"id": 1', "invalid JSON: Expecting ',' delimiter (column 9)"),
    ('["./a.mp4"]', "record is a JSON array, expected an object"),
    ('"just a string"', "record is a JSON string, expected an object"),
    ("42", "record is a JSON number, expected an object"),
    ("true", "record is a JSON boolean, expected an object"),
    ("null", "record is JSON null, expected an object"),
    (b'{"id": "caf\xe9"}', "invalid UTF-8 (byte 0xe9 at column 12)"),
]


@pytest.mark.parametrize(("line", "problem"), BAD_LINES)
def test_each_bad_line_kind_names_file_and_line(tmp_path: Path, line: str | bytes, problem: str) -> None:
    raw = line.encode() if isinstance(line, str) else line
    path = write(tmp_path / "data.jsonl", b'{"id": 0}\n\n' + raw + b'\n{"id": 3}\n')
    with pytest.raises(VidcapError) as info:
        scan_input(path)
    assert str(info.value) == f"{path}:3: {problem}"
    with pytest.raises(VidcapError, match=":3: "):
        list(iter_records(path))


@pytest.mark.parametrize(("line", "problem"), BAD_LINES)
def test_skip_reports_bad_lines_and_excludes_them(tmp_path: Path, line: str | bytes, problem: str) -> None:
    raw = line.encode() if isinstance(line, str) else line
    path = write(tmp_path / "data.jsonl", b'{"id": 0}\n' + raw + b'\n{"id": 2}\n' + raw + b"\n")
    scan = scan_input(path, on_bad_line="skip")
    assert scan.records == 2 and scan.bad_count == 2
    assert [(b.line, b.message) for b in scan.bad_lines] == [
        (2, f"{path}:2: {problem}"),
        (4, f"{path}:4: {problem}"),
    ]
    records = list(iter_records(path, on_bad_line="skip"))
    assert [(r.index, r.line, r.data) for r in records] == [(0, 1, {"id": 0}), (1, 3, {"id": 2})]


def test_bad_line_far_down_stops_the_scan(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    with open(path, "w") as f:
        for i in range(89_999):
            f.write(f'{{"id": {i}, "video": ["v{i}.mp4"]}}\n')
        f.write('{"id": oops}\n')
    with pytest.raises(VidcapError, match=r"data\.jsonl:90000: invalid JSON: Expecting value \(column 8\)"):
        scan_input(path)


def test_huge_integer_and_string_ids_survive_reading(tmp_path: Path) -> None:
    path = write(tmp_path / "data.jsonl", '{"id": "007", "n": 123456789012345678901234567890, "x": 1.5}\n')
    (record,) = iter_records(path)
    assert record.data == {"id": "007", "n": 123456789012345678901234567890, "x": 1.5}
    assert type(record.data["n"]) is int


@pytest.mark.parametrize("content", ["", "\n\n  \n", "\ufeff", "[]", "  [ ]\n"])
def test_empty_input_is_an_error(tmp_path: Path, content: str) -> None:
    path = write(tmp_path / ("data.json" if "[" in content else "data.jsonl"), content)
    with pytest.raises(VidcapError, match=r"input is empty: no records found"):
        scan_input(path)


def test_all_bad_lines_in_skip_mode_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path / "data.jsonl", "[1]\n\nnope\n")
    with pytest.raises(VidcapError) as info:
        scan_input(path, on_bad_line="skip")
    message = str(info.value)
    assert message.startswith(f"{path}: no valid records: all 2 non-blank lines are bad (first: {path}:1: ")
    assert "\n" not in message


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(VidcapError, match=r"nope\.jsonl: no such file$"):
        scan_input(tmp_path / "nope.jsonl")


def test_directory(tmp_path: Path) -> None:
    folder = tmp_path / "folder.jsonl"
    folder.mkdir()
    with pytest.raises(VidcapError, match=r"folder\.jsonl: is a directory"):
        scan_input(folder)


def test_unsupported_extension(tmp_path: Path) -> None:
    path = write(tmp_path / "data.txt", "a,b\n")
    with pytest.raises(
        VidcapError, match=r"data\.txt: unsupported input file extension '\.txt'; use \.jsonl"
    ):
        scan_input(path)
    with pytest.raises(VidcapError, match=r"data: input file has no extension; use \.jsonl"):
        scan_input(write(tmp_path / "data", "{}\n"))


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files regardless of permissions")
def test_unreadable_file(tmp_path: Path) -> None:
    path = write(tmp_path / "data.jsonl", '{"a": 1}\n')
    path.chmod(0)
    with pytest.raises(VidcapError, match=r"data\.jsonl: cannot read: Permission denied"):
        scan_input(path)


def test_unreadable_file_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Same check as above where tests run as root: the open fails with EACCES."""
    import builtins

    path = write(tmp_path / "data.jsonl", '{"a": 1}\n')
    real_open = builtins.open

    def fake_open(file, *args, **kwargs):
        if Path(file) == path:
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", fake_open)
    with pytest.raises(VidcapError, match=r"data\.jsonl: cannot read: Permission denied$"):
        scan_input(path)


def test_json_array_lines_are_element_numbers(tmp_path: Path) -> None:
    path = write(tmp_path / "data.json", '[\n  {"id": "a"},\n  {"id": "b"},\n  {"id": "c"}\n]\n')
    assert scan_input(path).format == "json"
    assert [(r.index, r.line) for r in iter_records(path)] == [(0, 1), (1, 2), (2, 3)]


def test_json_array_bad_element_names_its_line(tmp_path: Path) -> None:
    path = write(tmp_path / "data.json", '[\n  {"id": "a"},\n  "oops",\n  {"id": "c"},\n  [\n 1]\n]\n')
    with pytest.raises(VidcapError) as info:
        scan_input(path)
    assert str(info.value) == f"{path}:3: element 2: record is a JSON string, expected an object"
    scan = scan_input(path, on_bad_line="skip")
    assert scan.records == 2
    assert [b.message for b in scan.bad_lines] == [
        f"{path}:3: element 2: record is a JSON string, expected an object",
        f"{path}:5: element 4: record is a JSON array, expected an object",
    ]
    assert [(r.index, r.line, r.data["id"]) for r in iter_records(path, on_bad_line="skip")] == [
        (0, 1, "a"),
        (1, 3, "c"),
    ]


def test_json_file_invalid_json_names_line(tmp_path: Path) -> None:
    path = write(tmp_path / "data.json", '[\n  {"id": "a"},\n  {"id": "b" "x": 1}\n]\n')
    with pytest.raises(VidcapError) as info:
        scan_input(path)
    assert str(info.value) == f"{path}:3: invalid JSON: Expecting ',' delimiter (column 14)"


def test_json_file_must_be_an_array(tmp_path: Path) -> None:
    path = write(tmp_path / "data.json", '{"id": "a"}')
    with pytest.raises(VidcapError, match=r"must hold a JSON array of records, found a JSON object"):
        scan_input(path)


def test_json_file_invalid_utf8_names_line(tmp_path: Path) -> None:
    path = write(tmp_path / "data.json", b'[\n{"id": "a"},\n{"id": "\xff"}\n]')
    with pytest.raises(VidcapError, match=r"data\.json:3: invalid UTF-8 \(byte 0xff\)"):
        scan_input(path)


def test_range_start_stop(tmp_path: Path) -> None:
    path = write(tmp_path / "data.jsonl", "".join(f'{{"i": {i}}}\n' for i in range(10)))
    assert [r.data["i"] for r in iter_records(path, start=3, stop=6)] == [3, 4, 5]
    assert [r.index for r in iter_records(path, start=8)] == [8, 9]
    assert list(iter_records(path, start=4, stop=4)) == []
    assert list(iter_records(path, start=20)) == []
    with pytest.raises(ValueError):
        list(iter_records(path, start=-1))


def test_range_counts_valid_records_only_in_skip_mode(tmp_path: Path) -> None:
    path = write(tmp_path / "data.jsonl", '{"i": 0}\nbad\n{"i": 1}\n\n{"i": 2}\n')
    assert [(r.index, r.line) for r in iter_records(path, on_bad_line="skip", start=1)] == [(1, 3), (2, 5)]


def test_jsonl_is_streamed_and_stops_at_stop(tmp_path: Path) -> None:
    """Reading stops at ``stop``: a bad line after it is never reached, even in error mode."""
    path = write(tmp_path / "data.jsonl", '{"i": 0}\n{"i": 1}\nnot json\n')
    assert [r.data["i"] for r in iter_records(path, stop=2)] == [0, 1]
    with pytest.raises(VidcapError, match=":3: invalid JSON"):
        list(iter_records(path, stop=3))
