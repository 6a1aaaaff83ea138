"""Crash-safe output writers: the format follows the output's extension (``vidcap.io.formats``).

Runs are killed without warning (pre-empted SLURM nodes), so every batch is made durable
before ``write_batch`` returns: a SIGKILL loses at most the batch in flight, and what it
leaves behind is something a resumed writer repairs or passes over:

* ``.jsonl``/``.ndjson``: records are appended to the output itself; a torn last line is cut off.
* ``.json`` (and ``.csv``): records are appended to a journal, ``<output>.partial.jsonl``,
  and :meth:`RecordWriter.close` writes the whole file at once (temp file + ``os.replace``),
  then deletes the journal.
* ``.parquet``: each batch is a complete Parquet part file in ``<output>.parts/``, renamed
  into place once durable; ``close`` joins the parts into the output atomically.

Starting afresh (``--overwrite``) never loses the old output before the new run has written
its first batch: the new file is written aside and renamed over the old one only then.

Resuming: call :func:`vidcap.io.resume.load_done` first (it reads the same files, raises on
real damage and counts exactly the records the writer keeps), then
``open_writer(path, resume=True)``.
"""

from __future__ import annotations

from pathlib import Path

from vidcap.errors import VidcapError
from vidcap.io import staging
from vidcap.io.files import make_parent_folder
from vidcap.io.formats import format_for
from vidcap.io.formats.interface import Columns, RecordWriter
from vidcap.io.formats.journal import journal_path

__all__ = ["RecordWriter", "journal_path", "open_writer", "side_files"]


def side_files(output: str | Path) -> list[Path]:
    """What a writer of ``output`` keeps beside it while it works (a journal, a parts folder);
    none for an extension no format takes (opening its writer is what refuses it)."""
    output = Path(output)
    try:
        fmt = format_for(output, "output")
    except VidcapError:
        return []
    return fmt.side_files(output)


def open_writer(
    path: str | Path, *, resume: bool, like: str | Path | None = None, columns: Columns = None
) -> RecordWriter:
    """Open an output for writing; the format follows the extension (see ``vidcap.io.formats``).

    ``resume=False`` starts the output afresh, writing aside: the old output stays until the
    first batch is durable (an output written at close is only replaced then).
    ``resume=True`` continues an existing output after cutting off what a kill left torn.
    ``like``: the input file; a typed output (Parquet) keeps the types of its columns.
    ``columns``: vidcap's own fields and their types (``vidcap.io.columns.output_columns``),
    which a typed output gives one fixed type in every output of a run.
    The folder is created if missing; VidcapError if it cannot be created or written.
    """
    path = Path(path)
    fmt = format_for(path, "output")
    if path.is_dir():
        raise VidcapError(f"cannot write output: {path}: Is a directory")
    make_parent_folder(path)
    like = None if like is None else Path(like)
    remote = staging.open_remote_writer(fmt.open_writer, path, resume=resume, like=like, columns=columns)
    if remote is not None:  # the stand-in of an output URL: batches are put into the store too
        return remote
    return fmt.open_writer(path, resume=resume, like=like, columns=columns)
