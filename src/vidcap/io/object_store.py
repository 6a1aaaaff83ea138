"""Object storage URLs (``s3://``, ``gs://``, ``az://``, ``hf://``) through fsspec: the small set of
operations vidcap needs (open for range reads, exists, list, get, atomic put, delete).

Local paths never come here: callers test :func:`is_url` first, so a local run does not import
fsspec or pay for it. Credentials are found by each filesystem library as it always does
(``AWS_*`` variables, ``AWS_ENDPOINT_URL``, ``~/.aws``; ``GOOGLE_APPLICATION_CREDENTIALS``;
``AZURE_STORAGE_*``; ``HF_TOKEN``), plus the options of ``--storage-options JSON`` (an endpoint,
a profile, ``anon``...), which :func:`set_options` keeps for this process and, through an
environment variable, for the decode workers it starts.

A put of a whole object is atomic on every object store (a reader sees the old object or the
new one), which is what the output's parts and summary rely on (``vidcap.io.staging``).
"""

from __future__ import annotations

import json
import os
import re
from collections import OrderedDict
from typing import Any, BinaryIO

from vidcap.errors import VidcapError

OPTIONS_ENV = "VIDCAP_STORAGE_OPTIONS"
"""The JSON of ``--storage-options``, for the processes a run starts (decode workers)."""

# The schemes vidcap opens through fsspec, and the extra that brings each one's library.
_EXTRAS = {
    "s3": "s3",
    "s3a": "s3",
    "gs": "gcs",
    "gcs": "gcs",
    "az": "azure",
    "abfs": "azure",
    "abfss": "azure",
    "hf": "hf",
    "memory": None,
}
_URL = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://")

VIDEO_BLOCK_SIZE = 4 * 2**20
"""Range reads of a video fetch blocks of this size; an open video keeps up to
:data:`VIDEO_BLOCKS` of them (an LRU), so memory per open video is bounded (64 MiB)."""
VIDEO_BLOCKS = 16
_OPEN_VIDEOS = 2  # videos kept open per process: a record's probe, scan and decode reuse one

_options: dict[str, Any] | None = None
_videos: OrderedDict[str, Any] = OrderedDict()


def is_url(path: object) -> bool:
    """True for an object-store URL vidcap opens through fsspec (``s3://``, ``gs://``, ``az://``,
    ``hf://``...); False for local paths and for ``http(s)://``, which FFmpeg opens itself."""
    if not isinstance(path, str):
        return False
    match = _URL.match(path)
    return match is not None and match.group(1).lower() in _EXTRAS


def set_options(options: dict[str, Any] | None) -> None:
    """Use ``options`` (``--storage-options``) for every filesystem of this process and its children."""
    global _options
    _options = dict(options or {})
    if options:
        os.environ[OPTIONS_ENV] = json.dumps(options)
    else:
        os.environ.pop(OPTIONS_ENV, None)


def parse_options(text: str | dict | None) -> dict[str, Any]:
    """``--storage-options``' JSON object (a TOML table is already a dict); VidcapError if not one."""
    if text is None or isinstance(text, dict):
        return dict(text or {})
    try:
        value = json.loads(text)
    except ValueError as e:
        raise VidcapError(f"--storage-options: not valid JSON: {e}") from None
    if not isinstance(value, dict):
        raise VidcapError('--storage-options must be a JSON object, e.g. \'{"endpoint_url": "http://..."}\'')
    return value


def options() -> dict[str, Any]:
    """The storage options of this process (from :func:`set_options`, else the environment)."""
    global _options
    if _options is None:
        raw = os.environ.get(OPTIONS_ENV)
        _options = json.loads(raw) if raw else {}
    return _options


def filesystem(url: str) -> tuple[Any, str]:
    """``(fsspec filesystem, path within it)`` for ``url``; VidcapError when its library is missing."""
    scheme = _URL.match(url).group(1).lower()  # type: ignore[union-attr]
    try:
        import fsspec.core
    except ImportError:
        raise VidcapError(
            f"{url}: object storage needs fsspec: pip install 'vidcap[{_EXTRAS[scheme]}]'"
        ) from None
    try:
        return fsspec.core.url_to_fs(url, **options())
    except ImportError:
        raise VidcapError(
            f"{url}: the {scheme}:// filesystem is not installed: pip install 'vidcap[{_EXTRAS[scheme]}]'"
        ) from None
    except (TypeError, ValueError) as e:
        raise VidcapError(f"{url}: bad --storage-options for {scheme}://: {e}") from None


def describe(exc: BaseException) -> str:
    """One line for a storage failure (botocore's, gcsfs', adlfs' or an OSError)."""
    name = type(exc).__name__
    if name in ("NoCredentialsError", "PartialCredentialsError"):
        return "no credentials found (AWS_* variables, ~/.aws, --storage-options)"
    if isinstance(exc, PermissionError) or (name in ("ClientError",) and "AccessDenied" in str(exc)):
        return f"access denied (check the credentials): {_short(exc)}"
    if isinstance(exc, FileNotFoundError):
        return "no such object or bucket"
    return _short(exc) or name


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= 200 else text[:197] + "..."


def check_bucket(url: str, what: str) -> None:
    """Raise one VidcapError line when ``url``'s bucket (container, repo) is missing or cannot be
    reached with the credentials found: before any work, as a missing local folder would."""
    fs, path = filesystem(url)
    if _URL.match(url).group(1).lower() in ("hf", "memory"):  # type: ignore[union-attr]
        return  # no buckets: a hub repo's objects are checked as they are read
    bucket = path.split("/", 1)[0]
    try:
        # A listing, not exists(): exists() says False for "no credentials" and True for a bucket
        # these credentials may not read.
        fs.ls(bucket, detail=False, refresh=True)
    except FileNotFoundError:
        raise VidcapError(f"{what}: {url}: bucket {bucket!r} does not exist") from None
    except Exception as e:  # botocore/aiohttp errors have no common base
        raise VidcapError(f"{what}: {url}: {describe(e)}") from None


def exists(url: str) -> bool:
    """Whether the object ``url`` exists (a failed request raises VidcapError)."""
    fs, path = filesystem(url)
    try:
        return bool(fs.isfile(path))
    except Exception as e:
        raise VidcapError(f"{url}: {describe(e)}") from None


def list_prefix(url: str) -> list[str]:
    """The URLs of the objects under ``url`` (a "folder"), sorted; empty when there are none."""
    fs, path = filesystem(url)
    try:
        fs.invalidate_cache(path)
        names = fs.find(path)
    except FileNotFoundError:
        return []
    except Exception as e:
        raise VidcapError(f"{url}: cannot list: {describe(e)}") from None
    return sorted(_join(url, fs, name) for name in names)


def glob(pattern: str) -> list[str]:
    """The URLs of the objects matching ``pattern`` (``*``, ``?``, ``[...]``), sorted."""
    fs, path = filesystem(pattern)
    try:
        fs.invalidate_cache()
        names = fs.glob(path)
    except Exception as e:
        raise VidcapError(f"{pattern}: cannot list: {describe(e)}") from None
    return sorted(_join(pattern, fs, name) for name in names)


def _join(like: str, fs: Any, path: str) -> str:
    return fs.unstrip_protocol(path) if "://" not in path else path


def read_bytes(url: str) -> bytes | None:
    """The whole object ``url``; None if it does not exist."""
    fs, path = filesystem(url)
    try:
        return fs.cat_file(path)
    except FileNotFoundError:
        return None
    except Exception as e:
        raise VidcapError(f"{url}: cannot read: {describe(e)}") from None


def get_file(url: str, local: str | os.PathLike) -> None:
    """Download ``url`` to the local file ``local``; VidcapError naming the URL if it cannot."""
    fs, path = filesystem(url)
    try:
        fs.get_file(path, os.fspath(local))
    except FileNotFoundError:
        raise VidcapError(f"{url}: no such object") from None
    except Exception as e:
        raise VidcapError(f"{url}: cannot read: {describe(e)}") from None


def put_bytes(url: str, data: bytes, **conditions: Any) -> None:
    """Write the object ``url`` whole (atomic: readers see the old object or this one).

    ``conditions``: the store's conditional-write arguments (``IfNoneMatch="*"``...), passed on."""
    fs, path = filesystem(url)
    try:
        fs.pipe_file(path, data, **conditions)
    except Exception as e:
        raise VidcapError(f"cannot write {url}: {describe(e)}") from None


def put_file(local: str | os.PathLike, url: str) -> None:
    """Upload the local file ``local`` as the object ``url`` (atomic, as :func:`put_bytes`)."""
    fs, path = filesystem(url)
    try:
        fs.put_file(os.fspath(local), path)
    except Exception as e:
        raise VidcapError(f"cannot write {url}: {describe(e)}") from None


def delete(urls: list[str]) -> None:
    """Delete the objects ``urls`` (missing ones are fine)."""
    for url in urls:
        fs, path = filesystem(url)
        try:
            fs.rm_file(path)
        except FileNotFoundError:
            pass
        except Exception as e:
            raise VidcapError(f"cannot delete {url}: {describe(e)}") from None


def open_video(url: str) -> BinaryIO:
    """``url`` as a seekable file object for PyAV: range reads through a bounded block cache.

    The last few videos opened stay open (rewound on reuse): a record's video is opened more
    than once (probe, packet scan, decode), and the blocks the first open fetched (the header,
    an MP4's index at the end) are then read from memory. FileNotFoundError for a missing object.
    """
    cached = _videos.pop(url, None)
    if cached is not None and not cached.closed:
        cached.seek(0)
        _videos[url] = cached
        return _Borrowed(cached)
    fs, path = filesystem(url)
    f = fs.open(
        path,
        "rb",
        block_size=VIDEO_BLOCK_SIZE,
        cache_type="blockcache",
        cache_options={"maxblocks": VIDEO_BLOCKS},
    )
    while _videos and len(_videos) >= _OPEN_VIDEOS:
        _, old = _videos.popitem(last=False)
        old.close()
    if _OPEN_VIDEOS > 0:
        _videos[url] = f
    return _Borrowed(f)


def close_videos() -> None:
    """Close the videos :func:`open_video` keeps open (their cached blocks go with them)."""
    while _videos:
        _, f = _videos.popitem()
        f.close()


class _Borrowed:
    """A cached video file as PyAV sees it: closing it only rewinds (the cache keeps it open)."""

    def __init__(self, f: Any) -> None:
        self._f = f

    def read(self, n: int = -1) -> bytes:
        return self._f.read(n)

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._f.seek(offset, whence)

    def tell(self) -> int:
        return self._f.tell()

    def seekable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True

    @property
    def name(self) -> str:
        return str(self._f.path)

    def close(self) -> None:
        pass
