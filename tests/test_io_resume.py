"""load_done on every kind of existing output, and the input id check for --id-key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vidcap.errors import VidcapError
from vidcap.io.resume import DoneSet, check_unique_ids, load_done
from vidcap.io.writer import journal_path


def test_missing_output_means_nothing_done(tmp_path: Path) -> None:
    assert load_done(tmp_path / "out.jsonl", id_key="id") == DoneSet(0, frozenset(), None)
    assert load_done(tmp_path / "out.json", id_key=None).count == 0


def test_jsonl_count_without_id_key(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    out.write_text('{"id": "a"}\n\n{"x": 1}\n')
    done = load_done(out, id_key=None)
    assert (done.count, done.ids, done.source) == (2, frozenset(), out)


def test_jsonl_ids_are_strings(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    out.write_text('{"id": "007"}\n{"id": 7}\n{"id": 123456789012345678901234567890}\n')
    done = load_done(out, id_key="id")
    assert done.count == 3
    assert done.ids == {"007", "7", "123456789012345678901234567890"}


def test_torn_last_line_is_not_counted(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    out.write_text('{"id": "a"}\n{"id": "b"}\n{"id": "c", "cap')
    assert load_done(out, id_key="id").ids == {"a", "b"}
    out.write_text('{"id": "a"}\n{"id": "b"}\n{"id": "c"}')  # no newline: the write did not finish
    assert load_done(out, id_key="id").ids == {"a", "b"}
    out.write_text('{"id": "a"}\n{"id": "b", "c\n\n')
    assert load_done(out, id_key="id").ids == {"a"}


def test_damage_before_the_last_line_is_an_error(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    out.write_text('{"id": "a"}\n[1, 2]\n{"id": "c"}\n')
    with pytest.raises(VidcapError) as info:
        load_done(out, id_key=None)
    assert str(info.value).startswith(
        f"{out}:2: record is a JSON array, expected an object (in existing output"
    )


def test_done_record_without_id_key(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    out.write_text('{"id": "a"}\n{"name": "b"}\n')
    with pytest.raises(VidcapError, match=rf"^{out}:2: done record has no 'id' value"):
        load_done(out, id_key="id")


def test_json_array_output(tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    out.write_text(json.dumps([{"id": "a"}, {"id": 2}], indent=2))
    done = load_done(out, id_key="id")
    assert (done.count, done.ids, done.source) == (2, {"a", "2"}, out)


def test_json_array_record_without_id_names_its_line(tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    out.write_text(json.dumps([{"id": "a"}, {"name": "b"}], indent=2))
    with pytest.raises(VidcapError, match=rf"^{out}:5: element 2: done record has no 'id' value"):
        load_done(out, id_key="id")


def test_json_journal_is_preferred_over_the_array(tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    out.write_text(json.dumps([{"id": "a"}]))
    journal_path(out).write_text('{"id": "a"}\n{"id": "b"}\n{"id": "c"')
    done = load_done(out, id_key="id")
    assert (done.count, done.ids, done.source) == (2, {"a", "b"}, journal_path(out))


def test_unsupported_output_extension(tmp_path: Path) -> None:
    with pytest.raises(VidcapError, match="unsupported output file extension"):
        load_done(tmp_path / "out.txt", id_key=None)


def test_unique_ids_pass(tmp_path: Path) -> None:
    data = tmp_path / "data.jsonl"
    data.write_text('{"id": "007"}\n{"id": "7"}\n{"id": "008"}\n')
    assert check_unique_ids(data, "id", "error") is None


def test_duplicate_id_message(tmp_path: Path) -> None:
    data = tmp_path / "data.jsonl"
    others = "".join(f'{{"id": "{i}"}}\n' for i in range(100, 107))  # lines 4-10
    data.write_text('{"id": "001"}\n\n{"id": "007"}\n' + others + '\n{"id": "007"}\n')
    with pytest.raises(VidcapError) as info:
        check_unique_ids(data, "id", "error")
    assert (
        str(info.value) == f"{data}:12: duplicate id '007' (first at line 3); --id-key values must be unique"
    )


def test_ids_compare_as_strings(tmp_path: Path) -> None:
    data = tmp_path / "data.jsonl"
    data.write_text('{"id": 7}\n{"id": "7"}\n')
    with pytest.raises(VidcapError, match=r":2: duplicate id '7' \(first at line 1\)"):
        check_unique_ids(data, "id", "error")


def test_input_record_without_id(tmp_path: Path) -> None:
    data = tmp_path / "data.jsonl"
    data.write_text('{"id": "a"}\n{"id": null}\n')
    with pytest.raises(VidcapError, match=rf"^{data}:2: record has no 'id' value; --id-key needs it"):
        check_unique_ids(data, "id", "error")


def test_unique_ids_skip_and_error_modes(tmp_path: Path) -> None:
    data = tmp_path / "data.jsonl"
    data.write_text('{"id": "a"}\n[1]\n{"id": "b"}\n')
    check_unique_ids(data, "id", "skip")
    with pytest.raises(VidcapError, match=r":2: record is a JSON array"):
        check_unique_ids(data, "id", "error")


def test_duplicate_id_in_json_array_input_names_elements(tmp_path: Path) -> None:
    data = tmp_path / "data.json"
    data.write_text(json.dumps([{"id": "a"}, {"id": "b"}, {"id": "a"}]))
    with pytest.raises(VidcapError, match=r"data\.json: element 3: duplicate id 'a' \(first at element 1\)"):
        check_unique_ids(data, "id", "error")
