"""Low-level file helpers: what the record formats build on, and atomic writes for every file vidcap writes.

Kept in one place so that the reader, the writer, resume and merge agree on the details
that matter for correctness: how a line is split and parsed, what a "torn" last line is,
and how a file is replaced atomically. Which extension means which format is
``vidcap.io.formats``' job.
"""

from __future__ import annotations

import contextlib
import glob
import os
import secrets
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from vidcap.errors import VidcapError
from vidcap.io import jsonio

BOM = b"\xef\xbb\xbf"
_JSON_KINDS = {
    dict: "a JSON object",
    list: "a JSON array",
    str: "a JSON string",
    bool: "a JSON boolean",
    type(None): "JSON null",
}


def open_for_reading(path: Path) -> BinaryIO:
    """Open ``path`` in binary mode, turning the usual OS failures into one-line VidcapErrors."""
    try:
        return open(path, "rb")
    except FileNotFoundError:
        raise VidcapError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise VidcapError(f"{path}: is a directory, not a file") from None
    except OSError as e:
        raise VidcapError(f"{path}: cannot read: {e.strerror or e}") from None


def make_parent_folder(path: Path, what: str = "output") -> None:
    """Create ``path``'s folder (and its parents) if missing, or raise a one-line VidcapError.

    A file where a folder is needed is named as such: the OS says only "File exists" (the
    folder itself is a file) or "Not a directory" (one above it is)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        folders = (path.parent, *path.parent.parents)
        blocker = next((p for p in folders if p.exists() and not p.is_dir()), None)
        why = f"{blocker} is a file, not a folder" if blocker is not None else e.strerror or str(e)
        raise VidcapError(f"cannot write {what}: {path}: cannot create folder: {why}") from None


def read_error(path: Path, e: OSError) -> VidcapError:
    """A VidcapError for an I/O failure while reading ``path`` (e.g. EIO on a flaky mount)."""
    return VidcapError(f"{path}: cannot read: {e.strerror or e}")


def iter_lines(f: Iterable[bytes], first_line: int = 1) -> Iterator[tuple[int, bytes, bool]]:
    """Yield ``(line_number, content, ended_with_newline)`` for each line of a JSONL stream.

    Streams (one line in memory at a time). A UTF-8 BOM on the file's first line and the line
    terminator (``\\n`` or ``\\r\\n``) are removed from ``content``. ``first_line``: the
    number of the stream's first line, when it starts inside a file (a shard's span).
    """
    for number, raw in enumerate(f, start=first_line):
        if number == 1 and raw.startswith(BOM):
            raw = raw[len(BOM) :]
        if raw.endswith(b"\n"):
            yield number, raw[:-2] if raw.endswith(b"\r\n") else raw[:-1], True
        else:
            yield number, raw, False


def is_blank(content: bytes) -> bool:
    """True for a line holding only whitespace (such lines are ignored everywhere)."""
    return not content.strip()


def describe_kind(value: object) -> str:
    """'a JSON array', 'a JSON string', ...: how a parsed JSON value's type is named in messages."""
    return _JSON_KINDS.get(type(value), "a JSON number")


def parse_record(content: bytes) -> tuple[dict | None, str | None]:
    """Parse one JSONL line into a record: ``(record, None)`` or ``(None, what is wrong)``."""
    try:
        value = jsonio.loads(content)
    except UnicodeDecodeError as e:
        return None, f"invalid UTF-8 (byte 0x{content[e.start]:02x} at column {e.start + 1})"
    except ValueError as e:  # json.JSONDecodeError (stdlib wording, line and column)
        msg = getattr(e, "msg", str(e))
        col = getattr(e, "colno", None)
        return None, f"invalid JSON: {msg}" + (f" (column {col})" if col else "")
    except RecursionError:
        return None, "invalid JSON: nested too deeply"
    if not isinstance(value, dict):
        return None, f"record is {describe_kind(value)}, expected an object"
    return value, None


def write_all(fd: int, data: bytes) -> None:
    """``os.write`` until all of ``data`` is written (a single write may be partial)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def fsync_dir(folder: Path) -> None:
    """fsync a directory so that a create/rename/unlink in it survives a crash (best effort)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems (e.g. certain network mounts) refuse fsync on directories
    finally:
        os.close(fd)


def json_array_chunks(records: Iterable[dict]) -> Iterator[bytes]:
    """The pretty-printed JSON array of ``records`` in pieces, one record per piece.

    Same layout as ``json.dump(records, f, indent=2, ensure_ascii=False)`` plus a final
    newline. Re-indenting by replacing newlines is safe: inside JSON strings a newline is
    always escaped, so every raw newline is structural.
    """
    first = True
    for record in records:
        body = jsonio.dumps_pretty(record).replace(b"\n", b"\n  ")
        yield (b"[\n  " if first else b",\n  ") + body
        first = False
    yield b"[]\n" if first else b"\n]\n"


def temp_path(path: Path) -> Path:
    """A new temporary sibling of ``path`` for atomic replacement (same folder, same filesystem).

    Unique per call (pid and a random part): two writers of the same file (a run and a
    merge, two runs before the output lock existed) never write into each other's temp
    file. A killed writer's leftovers are removed by :func:`remove_stale_temps`.
    """
    return path.with_name(f".{path.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")


def remove_stale_temps(path: Path) -> int:
    """Delete temp files of ``path`` left by killed writers; returns how many.

    Only for a caller that owns ``path`` (holds its output lock): a live writer's temp file
    looks the same as a dead one's.
    """
    removed = 0
    for stale in path.parent.glob(f".{glob.escape(path.name)}.tmp-*"):
        with contextlib.suppress(OSError):
            stale.unlink()
            removed += 1
    return removed


def atomic_write(path: Path, chunks: Iterable[bytes]) -> None:
    """Write ``chunks`` to ``path`` atomically: temp file, fsync, ``os.replace``, fsync the folder.

    Readers see either the old file or the complete new one, never a half-written one. If
    producing a chunk raises, the temp file is removed and ``path`` is untouched.
    """
    tmp = temp_path(path)
    f = open(tmp, "xb")  # noqa: SIM115 - exclusive create, outside the try: never unlink another's file
    try:
        with f:
            for chunk in chunks:
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    fsync_dir(path.parent)


def load_json_array(path: Path, what: str) -> tuple[list, str]:
    """Read a whole ``.json`` file: ``(value, text)``; raise VidcapError if it is not a JSON array.

    ``what`` names the file's role in the message ("input", "output"). An empty or
    whitespace-only file gives ``([], "")``.
    """
    with open_for_reading(path) as f:
        try:
            raw = f.read()
        except OSError as e:
            raise read_error(path, e) from None
    if raw.startswith(BOM):
        raw = raw[len(BOM) :]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise VidcapError(f"{path}:{line}: invalid UTF-8 (byte 0x{raw[e.start]:02x})") from None
    if not text.strip():
        return [], ""
    try:
        value = jsonio.loads(text)
    except ValueError as e:
        line, col = getattr(e, "lineno", None), getattr(e, "colno", None)
        where = f"{path}:{line}" if line else str(path)
        detail = f" (column {col})" if col else ""
        raise VidcapError(f"{where}: invalid JSON: {getattr(e, 'msg', e)}{detail}") from None
    except RecursionError:
        raise VidcapError(f"{path}: invalid JSON: nested too deeply") from None
    if not isinstance(value, list):
        raise VidcapError(
            f"{path}: {what} .json file must hold a JSON array of records, found {describe_kind(value)}"
        )
    return value, text


def iter_output_records(path: Path) -> Iterator[tuple[int, dict]]:
    """Yield ``(line, record)`` from a JSONL output or journal, tolerating a torn end.

    "Torn" means what a kill in the middle of a batch write can leave: a last line without
    its newline, and/or a last complete non-blank line that is not a JSON object. Those are
    not yielded (their records will be redone). A bad line with records after it is real
    damage and raises VidcapError. The writer's tail repair (``formats.jsonl.repair_tail``) drops
    exactly the lines this function passes over, so counts and file always agree.
    """
    pending: str | None = None  # a bad line: fine if nothing but blanks/a fragment follows
    with open_for_reading(path) as f:
        try:
            for line, content, ended in iter_lines(f):
                if is_blank(content):
                    continue
                if not ended:
                    return  # a fragment can only be the last line
                if pending is not None:
                    raise VidcapError(pending)
                record, problem = parse_record(content)
                if problem is not None:
                    pending = f"{path}:{line}: {problem} (in existing output; fix or remove that line)"
                    continue
                assert record is not None
                yield line, record
        except OSError as e:
            raise read_error(path, e) from None
