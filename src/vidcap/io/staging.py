"""A run whose input or output is an object-store URL: local stand-ins for the run, parts in the store.

The run itself reads and writes local files (every format, resume and check works on them as
on any local run); this module maps the URLs to those stand-ins and keeps the store the truth:

* **input** ``s3://b/in.jsonl``: downloaded once into the run's staging folder (a run reads its
  input at least twice: the check pass, then the records); the fingerprint records the URL, and
  relative video paths are resolved against the URL's folder (``s3://b/``).
* **output** ``s3://b/out.jsonl``: object stores cannot append, so every batch the run writes is
  also put as one object, ``s3://b/out.jsonl.parts/part-NNNNNNNN.jsonl`` (a put is atomic: a part is
  there whole or not at all). When the run completes its range, the output is written whole
  (``out.jsonl`` in its format, one put) and then the parts are deleted. The summary is put beside it
  (``out.jsonl.summary.json``) each time the run writes it, and the log of other libraries' messages
  at the end.
* **resume**: the parts, when there are any, are the output (a run killed after it put the whole
  output but before it deleted the parts left the same records in both); else the whole output
  object. Their records are written into the local stand-in, which the run then resumes as a local one.
* **lock**: ``s3://b/out.jsonl.lock`` (``vidcap.io.object_lock``).

The local stand-ins live in a staging folder per run (``$VIDCAP_STAGING_DIR``, else
``~/.cache/vidcap/staging``), removed when the run ends.
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import hashlib
import os
import posixpath
import shutil
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vidcap.errors import VidcapError
from vidcap.io import jsonio, object_store
from vidcap.io.formats import format_for
from vidcap.io.formats.interface import Columns, RecordWriter, jsonl_chunks
from vidcap.io.shards import default_output

PART = "part-{:08d}.jsonl"


def staging_root() -> Path:
    """Where runs keep the local stand-ins of their URLs."""
    root = os.environ.get("VIDCAP_STAGING_DIR")
    if root:
        return Path(root)
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "vidcap" / "staging"


def url_folder(url: str) -> str:
    """``s3://b/x/in.jsonl`` -> ``s3://b/x``."""
    return url.rsplit("/", 1)[0]


def url_name(url: str) -> str:
    """``s3://b/x/in.jsonl`` -> ``in.jsonl``."""
    return url.rsplit("/", 1)[1]


def join_url(base: str, relative: str) -> str:
    """A relative video path of an input at ``base`` (a URL folder) as a URL."""
    scheme, rest = base.split("://", 1)
    return f"{scheme}://{posixpath.normpath(posixpath.join(rest, relative))}"


@dataclass
class RemoteOutput:
    """An output URL and its local stand-in (``local``, in the run's staging folder)."""

    url: str
    local: Path
    parts: list[str] = field(default_factory=list)  # URLs of the parts in the store, in order
    whole: bool = False  # the whole output object exists
    lock: Any = None  # the object lock, once taken (vidcap.io.object_lock.ObjectLock)

    @property
    def parts_url(self) -> str:
        return self.url + ".parts/"

    @property
    def summary_url(self) -> str:
        return self.url + ".summary.json"

    @property
    def lock_url(self) -> str:
        return self.url + ".lock"

    def refresh(self) -> None:
        """Find what the store holds for this output now."""
        self.parts = [u for u in object_store.list_prefix(self.parts_url) if url_name(u).startswith("part-")]
        self.whole = object_store.exists(self.url)

    def done_records(self) -> Iterator[tuple[object, dict]]:
        """The records the store holds for this output (see the module doc), in order."""
        fmt = format_for(self.local, "output")
        if self.parts:
            for part in self.parts:
                data = object_store.read_bytes(part) or b""
                for number, line in enumerate(data.splitlines(), 1):
                    if line.strip():
                        yield f"{part}:{number}", jsonio.loads(line)
        elif self.whole:
            copy = self.local.with_name(".whole-" + self.local.name)
            object_store.get_file(self.url, copy)
            try:
                yield from fmt.read_output(copy, "output")
            finally:
                copy.unlink(missing_ok=True)


_OUTPUTS: dict[Path, RemoteOutput] = {}
_INPUTS: dict[Path, str] = {}


def remote_output(local: Path | str) -> RemoteOutput | None:
    """The output URL whose local stand-in is ``local`` (None for a plain local output)."""
    return _OUTPUTS.get(Path(local).absolute()) if _OUTPUTS else None


def stand_in(name: str) -> Path:
    """The local file a run wrote for ``name``: an output URL's stand-in, else ``name`` itself."""
    for output in list(_OUTPUTS.values()):
        if output.url == name:
            return output.local
    return Path(name)


def source_name(path: Path) -> str:
    """What a run's fingerprint calls its input: the URL of a staged input, else the absolute path."""
    url = _INPUTS.get(Path(path).absolute()) if _INPUTS else None
    return url if url is not None else str(Path(path).resolve())


def shown(path: Path | str) -> str:
    """``path`` as the user named it: the URL of a stand-in, else the path itself."""
    remote = remote_output(path)
    if remote is not None:
        return remote.url
    if _OUTPUTS:
        for output in _OUTPUTS.values():
            summary = output.local.with_name(output.local.name + ".summary.json")
            if Path(path).absolute() == summary:
                return output.summary_url
    return str(path)


def _stage_folder(url: str) -> Path:
    """A new staging folder for ``url`` in this process; those of killed runs of this host go."""
    digest = hashlib.sha256(url.encode()).hexdigest()[:16]
    host = socket.gethostname()
    root = staging_root()
    for old in root.glob(f"{digest}-{glob.escape(host)}-*"):
        pid = old.name.rsplit("-", 1)[1]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(old, ignore_errors=True)
    folder = root / f"{digest}-{host}-{os.getpid()}"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stage_input(url: str) -> Path:
    """Download the input dataset ``url`` into a staging folder; its local copy (same name)."""
    object_store.check_bucket(url, "input")
    if not object_store.exists(url):
        raise VidcapError(f"{url}: no such input object")
    local = _stage_folder(url) / "input" / url_name(url)
    local.parent.mkdir(parents=True, exist_ok=True)
    object_store.get_file(url, local)
    _INPUTS[local.absolute()] = url
    return local


def unstage_input(local: Path) -> None:
    """Remove a copy :func:`stage_input` made (and its staging folder)."""
    _INPUTS.pop(local.absolute(), None)
    shutil.rmtree(local.parent.parent, ignore_errors=True)


def stage_output(url: str) -> RemoteOutput:
    """The local stand-in of the output ``url`` (an empty folder: :func:`pull` fills it)."""
    format_for(Path(url_name(url)), "output")  # an unsupported extension is refused before any work
    object_store.check_bucket(url, "output")
    local = (_stage_folder(url) / "output" / url_name(url)).absolute()
    if local.parent.exists():
        shutil.rmtree(local.parent)
    local.parent.mkdir(parents=True)
    remote = RemoteOutput(url, local)
    # The summary first: a resume checks the fingerprint before it reads a record.
    summary = object_store.read_bytes(remote.summary_url)
    if summary is not None:
        local.with_name(local.name + ".summary.json").write_bytes(summary)
    remote.refresh()
    _OUTPUTS[local] = remote
    return remote


@contextlib.contextmanager
def staged(config: Any) -> Iterator[Any]:
    """``config`` (a RunConfig) with its URLs replaced by local stand-ins for the run's length.

    A config without URLs is returned as it is, and nothing is imported or created."""
    run = config.run
    output_url = run.output
    if not object_store.is_url(run.input) and not object_store.is_url(output_url):
        yield config
        return
    from vidcap.executors.array_share import shard_numbers

    object_store.set_options(object_store.parse_options(getattr(run, "storage_options", None)))
    changes: dict[str, Any] = {}
    folders: list[Path] = []
    remote = None
    try:
        if object_store.is_url(run.input):
            if output_url is None:  # beside the input, as for a local input
                index, count, explicit = shard_numbers(run.shard_index, run.num_shards)
                name = default_output(Path(url_name(run.input)), (index, count) if explicit else None).name
                output_url = f"{url_folder(run.input)}/{name}"
            if output_url == run.input:
                raise VidcapError(f"{output_url}: the output is the input; choose another --output")
            local_input = stage_input(run.input)
            folders.append(local_input.parent.parent)
            changes["input"] = str(local_input)
            if run.video_root is None:
                changes["video_root"] = url_folder(run.input)
        if object_store.is_url(output_url):
            remote = stage_output(output_url)
            folders.append(remote.local.parent.parent)
            changes["output"] = str(remote.local)
        yield dataclasses.replace(config, run=dataclasses.replace(run, **changes))
    finally:
        if remote is not None:
            _OUTPUTS.pop(remote.local, None)
            log = remote.local.with_name(remote.local.name + ".log")
            if log.exists() and log.stat().st_size:
                with contextlib.suppress(VidcapError):
                    object_store.put_file(log, remote.url + ".log")
        for path in list(_INPUTS):
            if any(folder in path.parents for folder in folders):
                del _INPUTS[path]
        for folder in folders:
            shutil.rmtree(folder, ignore_errors=True)


def load_done_records(output: Path) -> Iterator[tuple[object, dict]] | None:
    """The done records of a staged output (from the store), or None for a plain local output."""
    remote = remote_output(output)
    return None if remote is None else remote.done_records()


def open_remote_writer(
    inner_open: Any, path: Path, *, resume: bool, like: Path | None, columns: Columns
) -> RecordWriter | None:
    """A writer that also puts each batch into the store, for a staged output (else None).

    ``inner_open(path, resume=..., like=..., columns=...)`` opens the local writer. On resume the
    records the store holds are first written into the local stand-in, as the run left them."""
    remote = remote_output(path)
    if remote is None:
        return None
    fmt = format_for(path, "output")
    remote.refresh()
    seed: list[dict] = []
    if resume:
        records = [record for _, record in remote.done_records()]
        if records:
            local = fmt.open_writer(path, resume=False, like=like, columns=columns)
            local.write_batch(records)
            local.close(complete=False)
            if not remote.parts:
                seed = records  # a whole output and no parts: its records become part 0 before more
    inner = inner_open(path, resume=resume, like=like, columns=columns)
    return RemoteWriter(inner, remote, resume=resume, seed=seed)


class RemoteWriter(RecordWriter):
    """The local writer of a staged output, plus the output's parts and whole object in the store."""

    def __init__(self, inner: RecordWriter, remote: RemoteOutput, *, resume: bool, seed: list[dict]) -> None:
        self._inner, self._remote, self._resume, self._seed = inner, remote, resume, seed
        self.path = inner.path
        self.repaired_bytes = inner.repaired_bytes
        self._next = len(remote.parts)
        self._fresh_cleared = resume  # a fresh run clears the old parts at its first batch
        self._closed = False

    @property
    def touched_output(self) -> bool:
        return self._inner.touched_output

    def _put_part(self, records: list[dict]) -> None:
        if self._remote.lock is not None:
            self._remote.lock.check()  # a run that lost its lock must not write another part
        url = self._remote.parts_url + PART.format(self._next)
        object_store.put_bytes(url, b"".join(jsonl_chunks(records)), IfNoneMatch="*")
        self._remote.parts.append(url)
        self._next += 1

    def write_batch(self, records: list[dict]) -> None:
        """Write ``records`` locally, then put them as the output's next part (durable on return)."""
        if not records:
            return
        self._inner.write_batch(records)
        if not self._fresh_cleared:  # --overwrite: the old output goes once the new one has a batch
            object_store.delete([*self._remote.parts, self._remote.url])
            self._remote.parts, self._remote.whole, self._next = [], False, 0
            self._fresh_cleared = True
        if self._seed:
            self._put_part(self._seed)
            self._seed = []
        self._put_part(records)

    def close(self, *, complete: bool) -> None:
        """Close the local writer; a complete run then puts the whole output and deletes its parts."""
        if self._closed:
            return
        self._closed = True
        self._inner.close(complete=complete)
        wrote = self._fresh_cleared and (self._remote.parts or self._resume)
        if complete and wrote and self.path.exists():
            if self._remote.parts or not self._remote.whole:
                object_store.put_file(self.path, self._remote.url)
            object_store.delete(self._remote.parts)
            self._remote.parts = []


def publish_summary(path: Path, data: dict[str, Any]) -> dict[str, Any]:
    """A summary's ``data`` naming the URLs of a staged input and output (what the user reads)."""
    if _INPUTS and isinstance(data.get("input"), str):
        data = {**data, "input": _INPUTS.get(Path(data["input"]).absolute(), data["input"])}
    for output in list(_OUTPUTS.values()):
        if Path(path).absolute() == output.local.with_name(output.local.name + ".summary.json"):
            return {**data, "output": output.url}
    return data


def put_summary(path: Path) -> None:
    """Put a staged output's summary file (just written locally) into the store."""
    for output in list(_OUTPUTS.values()):
        if Path(path).absolute() == output.local.with_name(output.local.name + ".summary.json"):
            object_store.put_file(path, output.summary_url)


_SIDECARS = (".summary.json", ".partial.jsonl", ".lock", ".log")


def _shard_output_urls(arg: str) -> tuple[list[str], str | None]:
    """The shard output URLs ``arg`` names (one, a glob, or an input's default shard outputs),
    and the input URL when ``arg`` is one."""
    import re

    if glob.has_magic(arg):
        found = [u for u in object_store.glob(arg) if not u.endswith(_SIDECARS) and ".parts/" not in u]
        if not found:
            raise VidcapError(f"merge: no object matches {arg}")
        return found, None
    if object_store.exists(arg + ".summary.json"):
        return [arg], None
    if object_store.exists(arg):
        stem, suffix = os.path.splitext(url_name(arg))
        pattern = re.compile(re.escape(stem) + r"\.captions\.shard-\d+-of-\d+" + re.escape(suffix) + "$")
        found = [u for u in object_store.glob(f"{url_folder(arg)}/*") if pattern.match(url_name(u))]
        if not found:
            raise VidcapError(
                f"{arg}: no summary (not a shard output) and no shard outputs beside it named "
                f"{stem}.captions.shard-I-of-N{suffix} (not an input of shards)"
            )
        return found, arg
    raise VidcapError(f"{arg}: no such object")


@contextlib.contextmanager
def staged_merge(args: list[str], output: str | None) -> Iterator[tuple[list[str], str | None, str | None]]:
    """``vidcap merge``'s arguments and output with URLs replaced by local copies, and the output
    URL (None for a local output); on a clean exit, the merged output and its summary are put into
    the store. Plain paths are left as they are."""
    if not any(object_store.is_url(a) for a in [*args, output or ""]):
        yield args, output, None
        return
    folder = _stage_folder("merge:" + " ".join(args))
    local_args: list[str] = []
    inputs: list[str] = []
    try:
        for arg in args:
            if not object_store.is_url(arg):
                local_args.append(arg)
                continue
            urls, input_url = _shard_output_urls(arg)
            for shard in urls:
                if input_url is not None:  # beside the input's copy, where merge looks for them
                    local = folder / "input" / url_name(shard)
                else:
                    digest = hashlib.sha256(shard.encode()).hexdigest()[:8]
                    local = folder / "shards" / digest / url_name(shard)
                local.parent.mkdir(parents=True, exist_ok=True)
                object_store.get_file(shard, local)
                object_store.get_file(shard + ".summary.json", local.with_name(local.name + ".summary.json"))
                if input_url is None:
                    local_args.append(str(local))
            if input_url is not None:
                inputs.append(input_url)
                local_input = folder / "input" / url_name(input_url)
                local_input.parent.mkdir(parents=True, exist_ok=True)
                object_store.get_file(input_url, local_input)
                _INPUTS[local_input.absolute()] = input_url
                local_args.append(str(local_input))
        if output is None and inputs:
            output = f"{url_folder(inputs[0])}/{default_output(Path(url_name(inputs[0]))).name}"
        output_url = output if object_store.is_url(output) else None
        if output_url is not None:
            object_store.check_bucket(output_url, "output")
            output = str(folder / "merged" / url_name(output_url))
        yield local_args, output, output_url
        if output_url is not None and output is not None:
            summary = Path(output + ".summary.json")
            data = jsonio.loads(summary.read_bytes())
            data["output"] = output_url
            object_store.put_file(output, output_url)
            object_store.put_bytes(output_url + ".summary.json", jsonio.dumps_pretty(data) + b"\n")
    finally:
        for path in list(_INPUTS):
            if folder in path.parents:
                del _INPUTS[path]
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def staged_outputs(names: list[str]) -> Iterator[list[Path]]:
    """Finished outputs (``vidcap report``'s arguments) as local paths: an output URL and its
    summary are downloaded for the block's length; local paths are left as they are."""
    if not any(object_store.is_url(n) for n in names):
        yield [Path(n) for n in names]
        return
    folder = _stage_folder("report:" + " ".join(names))
    local: list[Path] = []
    try:
        for number, name in enumerate(names):
            if not object_store.is_url(name):
                local.append(Path(name))
                continue
            copy = folder / str(number) / url_name(name)
            copy.parent.mkdir(parents=True)
            object_store.get_file(name, copy)
            summary = object_store.read_bytes(name + ".summary.json")
            if summary is not None:
                copy.with_name(copy.name + ".summary.json").write_bytes(summary)
            local.append(copy)
        yield local
    finally:
        shutil.rmtree(folder, ignore_errors=True)
