"""Writing output: fsynced JSONL batches, torn-line repair on resume, the JSON journal and atomic array."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from vidcap.errors import VidcapError
from vidcap.io import jsonio
from vidcap.io.records import iter_records
from vidcap.io.resume import load_done
from vidcap.io.writer import journal_path, open_writer

AWKWARD = {
    "id": "007",
    "video": ["./a.mp4"],
    "conversation": [{"from": "human", "value": ""}],
    "big": 123456789012345678901234567890,
    "float": 0.1,
    "negzero": -0.0,
    "flags": [True, False, None],
    "text": 'emoji 😀 cjk 视频 rtl مرحبا "quoted"\nnewline\ttab',
    "nested": {"z": {}, "a": [[], [1, {"k": "v"}]]},
    "caption": "A cat.",
}


def batch(start: int, n: int) -> list[dict]:
    return [{"id": f"{i:03d}", "caption": f"caption {i}"} for i in range(start, start + n)]


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text("utf-8").splitlines()]


def test_jsonl_batches_are_appended(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    writer = open_writer(out, resume=False)
    writer.write_batch(batch(0, 2))
    writer.write_batch([])
    writer.write_batch(batch(2, 1))
    assert read_jsonl(out) == batch(0, 3)  # durable before close
    writer.close(complete=True)
    writer.close(complete=True)  # idempotent
    with pytest.raises(ValueError):
        writer.write_batch(batch(3, 1))


def test_awkward_record_round_trips_through_input_and_both_outputs(tmp_path: Path) -> None:
    """read -> write -> read keeps every value and the key order, for .jsonl and .json outputs."""
    source = tmp_path / "in.jsonl"
    source.write_bytes(jsonio.dumps(AWKWARD) + b"\n")
    (record,) = iter_records(source)
    for name in ("out.jsonl", "out.json"):
        out = tmp_path / name
        writer = open_writer(out, resume=False)
        writer.write_batch([record.data])
        writer.close(complete=True)
        (again,) = iter_records(out)
        assert again.data == AWKWARD
        assert jsonio.dumps(again.data) == jsonio.dumps(AWKWARD)  # same keys in the same order
        assert type(again.data["big"]) is int and str(again.data["negzero"]) == "-0.0"


def test_resume_false_truncates(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    out.write_text('{"old": 1}\n{"old": 2}\n')
    writer = open_writer(out, resume=False)
    writer.write_batch(batch(0, 1))
    writer.close(complete=True)
    assert read_jsonl(out) == batch(0, 1)


def test_resume_appends_after_existing(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    out.write_text('{"id": "000"}\n')
    writer = open_writer(out, resume=True)
    assert writer.repaired_bytes == 0
    writer.write_batch(batch(1, 1))
    writer.close(complete=True)
    assert read_jsonl(out) == [{"id": "000"}, *batch(1, 1)]


@pytest.mark.parametrize(
    "torn",
    [
        b'{"id": "002", "capt',  # cut mid-record, no newline
        b'{"id": "002"}',  # complete JSON but its newline never made it
        b"\x00\x00\x00\x00",  # zeros a crash can leave
        b'{"id": "002", "capt\n',  # garbage that does end with a newline
        b'{"id": "002", "capt\n\n  \n{"id": "0',  # a garbage line, blanks, then a fragment
    ],
)
def test_resume_cuts_off_a_torn_last_line(tmp_path: Path, torn: bytes) -> None:
    out = tmp_path / "out.jsonl"
    writer = open_writer(out, resume=False)
    writer.write_batch(batch(0, 2))
    writer.close(complete=False)
    clean = out.read_bytes()
    with open(out, "ab") as f:
        f.write(torn)
    assert load_done(out, id_key="id").count == 2  # the torn record is not counted ...
    writer = open_writer(out, resume=True)
    assert out.read_bytes() == clean  # ... and it is cut away
    assert writer.repaired_bytes == len(torn)
    writer.write_batch(batch(2, 2))
    writer.close(complete=True)
    assert read_jsonl(out) == batch(0, 4)


def test_resume_repairs_a_torn_line_longer_than_the_read_block(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    big = {"id": "000", "caption": "x" * 200_000}
    out.write_bytes(jsonio.dumps(big) + b"\n" + jsonio.dumps({"id": "001", "caption": "y" * 150_000})[:-10])
    writer = open_writer(out, resume=True)
    writer.write_batch(batch(1, 1))
    writer.close(complete=True)
    assert read_jsonl(out) == [big, *batch(1, 1)]


def test_resume_keeps_blank_lines_and_crlf_before_a_good_last_line(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    content = b'\xef\xbb\xbf{"id": "000"}\r\n\r\n'
    out.write_bytes(content)
    writer = open_writer(out, resume=True)
    assert writer.repaired_bytes == 0 and out.read_bytes() == content
    writer.close(complete=True)


def test_resume_never_cuts_more_than_the_torn_tail(tmp_path: Path) -> None:
    """Damage above the last line is left for load_done to report, not silently eaten."""
    out = tmp_path / "out.jsonl"
    out.write_bytes(b'{"id": "000"}\nGARBAGE\n{"id": "002"}\n')
    with pytest.raises(VidcapError, match=r"out\.jsonl:2: invalid JSON"):
        load_done(out, id_key=None)
    open_writer(out, resume=True).close(complete=False)
    assert out.read_bytes() == b'{"id": "000"}\nGARBAGE\n{"id": "002"}\n'


def test_sigkill_during_writes_loses_at_most_the_batch_in_flight(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    child = textwrap.dedent(
        f"""
        import sys
        from vidcap.io.writer import open_writer
        w = open_writer({str(out)!r}, resume=False)
        n = 0
        while True:
            w.write_batch([{{"id": f"{{i:06d}}", "caption": "x" * 5000}} for i in range(n, n + 50)])
            n += 50
            print(n, flush=True)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    acknowledged = 0
    while acknowledged < 500:
        acknowledged = int(proc.stdout.readline())
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = load_done(out, id_key="id")
    assert done.count >= acknowledged  # every acknowledged (fsynced) batch is there
    writer = open_writer(out, resume=True)
    writer.write_batch([{"id": "next"}])
    writer.close(complete=True)
    lines = read_jsonl(out)  # every line parses: no torn line left in the middle
    assert [r["id"] for r in lines[:-1]] == [f"{i:06d}" for i in range(done.count)]
    assert lines[-1] == {"id": "next"}


def test_json_output_uses_a_journal_then_writes_the_array(tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    writer = open_writer(out, resume=False)
    writer.write_batch(batch(0, 2))
    writer.write_batch([AWKWARD])
    assert not out.exists()  # never a half array
    assert read_jsonl(journal_path(out)) == [*batch(0, 2), AWKWARD]
    writer.close(complete=True)
    assert not journal_path(out).exists()
    records = [*batch(0, 2), AWKWARD]
    assert out.read_text("utf-8") == json.dumps(records, indent=2, ensure_ascii=False) + "\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]  # no temp file left behind


def test_json_output_with_no_records_is_an_empty_array(tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    open_writer(out, resume=False).close(complete=True)
    assert out.read_text() == "[]\n"


@pytest.mark.parametrize("name", ["out.jsonl", "out.json"])
def test_fresh_writer_keeps_the_old_output_until_its_first_batch(tmp_path: Path, name: str) -> None:
    """--overwrite: a run that fails before writing anything (a model that does not load) loses nothing."""
    out = tmp_path / name
    old = b'[{"old": 1}]\n' if name.endswith(".json") else b'{"old": 1}\n'
    out.write_bytes(old)
    open_writer(out, resume=False).close(complete=False)
    assert out.read_bytes() == old
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]  # the aside file is gone

    writer = open_writer(out, resume=False)
    assert out.read_bytes() == old
    writer.write_batch(batch(0, 2))
    if name.endswith(".jsonl"):
        assert read_jsonl(out) == batch(0, 2)  # replaced as soon as the first batch is durable
        writer.write_batch(batch(2, 1))  # later batches append to the new file
    else:
        assert read_jsonl(journal_path(out)) == batch(0, 2)
        writer.write_batch(batch(2, 1))
    writer.close(complete=False)
    assert load_done(out, id_key="id").count == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]


def test_fresh_jsonl_writer_with_no_records_empties_the_output_when_complete(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    out.write_bytes(b'{"old": 1}\n')
    open_writer(out, resume=False).close(complete=True)
    assert out.read_bytes() == b""


def test_json_interrupted_close_writes_what_is_done_then_resume_continues(tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    writer = open_writer(out, resume=False)
    writer.write_batch(batch(0, 3))
    writer.close(complete=False)
    assert json.loads(out.read_text()) == batch(0, 3)
    assert not journal_path(out).exists()
    assert load_done(out, id_key="id").count == 3
    # Resume from the array: the journal is seeded from it, and the array is rewritten at close.
    writer = open_writer(out, resume=True)
    assert read_jsonl(journal_path(out)) == batch(0, 3)
    writer.write_batch(batch(3, 2))
    writer.close(complete=True)
    assert json.loads(out.read_text()) == batch(0, 5)
    assert not journal_path(out).exists()


def test_json_resume_continues_a_journal_left_by_a_kill(tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    out.write_text(json.dumps(batch(0, 1)))  # an older array; the journal is newer
    writer = open_writer(out, resume=True)
    writer.write_batch(batch(1, 2))
    # Simulate SIGKILL: no close; then a torn line from the batch in flight.
    with open(journal_path(out), "ab") as f:
        f.write(b'{"id": "00')
    assert load_done(out, id_key="id").count == 3
    writer = open_writer(out, resume=True)
    writer.write_batch(batch(3, 1))
    writer.close(complete=True)
    assert json.loads(out.read_text()) == batch(0, 4)


def test_json_resume_false_replaces_old_array_only_at_close(tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    out.write_text(json.dumps([{"old": True}]))
    journal_path(out).write_text('{"stale": true}\n')
    writer = open_writer(out, resume=False)
    assert journal_path(out).read_text() == '{"stale": true}\n'  # until the first batch is written
    writer.write_batch(batch(0, 1))
    assert read_jsonl(journal_path(out)) == batch(0, 1)
    assert json.loads(out.read_text()) == [{"old": True}]
    writer.close(complete=True)
    assert json.loads(out.read_text()) == batch(0, 1)


def test_json_resume_refuses_a_non_record_array(tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    out.write_text('[{"id": 1}, 2]')
    with pytest.raises(VidcapError, match=r"out\.json: existing output's element 2 is a JSON number"):
        open_writer(out, resume=True)


def test_output_folder_is_created(tmp_path: Path) -> None:
    out = tmp_path / "a" / "b" / "out.jsonl"
    writer = open_writer(out, resume=True)
    writer.write_batch(batch(0, 1))
    writer.close(complete=True)
    assert read_jsonl(out) == batch(0, 1)


def test_output_folder_cannot_be_created(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(VidcapError, match=r"^cannot write output: .*file/out\.jsonl: cannot create folder: "):
        open_writer(tmp_path / "file" / "out.jsonl", resume=False)


def test_output_path_is_a_directory(tmp_path: Path) -> None:
    (tmp_path / "out.json").mkdir()
    with pytest.raises(VidcapError, match=r"^cannot write output: .*out\.json: Is a directory$"):
        open_writer(tmp_path / "out.json", resume=False)


def test_unsupported_output_extension(tmp_path: Path) -> None:
    with pytest.raises(VidcapError, match=r"unsupported output file extension '\.txt'"):
        open_writer(tmp_path / "out.txt", resume=False)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_unwritable_folder(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    for name in ("out.jsonl", "out.json"):
        with pytest.raises(VidcapError, match=rf"^cannot write output: .*ro/{name}: Permission denied$"):
            open_writer(folder / name, resume=False)


@pytest.mark.parametrize("name", ["out.jsonl", "out.json"])
def test_unwritable_output_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """Same check as above where tests run as root: the open fails with EACCES."""
    real_open = os.open

    def fake_open(path, flags, *args, **kwargs):
        if flags & os.O_CREAT:
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", fake_open)
    out = tmp_path / name
    with pytest.raises(VidcapError) as info:
        open_writer(out, resume=False)
    assert str(info.value) == f"cannot write output: {out}: Permission denied"
