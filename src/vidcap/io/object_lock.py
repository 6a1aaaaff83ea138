"""One writer per output URL: a lock object beside it, created and renewed by conditional writes.

An object store has no ``flock``. The lock is the object ``OUTPUT.lock``, holding its owner
(pid, host, a random token, start time) and a heartbeat time:

* taking it is a create-only put (``If-None-Match: *``, S3's conditional write, which MinIO and
  moto honour too): of two runs, exactly one creates it;
* the owner rewrites it every :data:`HEARTBEAT_S` seconds with ``If-Match`` its last ETag, so a
  run that lost the lock finds out at its next heartbeat (and then writes no further part);
* a lock whose heartbeat is older than :data:`STALE_S` (the owner's node died), or whose owner is a
  process of this host that no longer exists (a SIGKILLed run), is taken over by a conditional
  overwrite of exactly the ETag that was read, so two runs cannot both take over one stale lock;
* a run that ends removes it.

A live run on another host holds it: the refused run exits 73, as for a local output.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import socket
import threading
import time
from datetime import UTC, datetime
from typing import Any

from vidcap.errors import OutputLockedError, VidcapError
from vidcap.io import object_store

log = logging.getLogger(__name__)

HEARTBEAT_S = 15.0
STALE_S = 90.0


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _alive_here(info: dict[str, Any]) -> bool:
    """False when ``info``'s owner ran on this host and its process is gone."""
    if info.get("host") != socket.gethostname():
        return True
    try:
        os.kill(int(info["pid"]), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, KeyError, ValueError, TypeError):
        return True
    return True


class ObjectLock:
    """The lock of one output URL, held until :meth:`release`; take it with :func:`acquire`."""

    def __init__(self, url: str, info: dict[str, Any], etag: str) -> None:
        self.url, self._info, self._etag = url, info, etag
        self.lost: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="vidcap-lock-heartbeat", daemon=True)
        self._thread.start()

    def _put(self) -> None:
        self._info["heartbeat_at"] = _now()
        self._info["heartbeat"] = time.time()
        fs, path = object_store.filesystem(self.url)
        fs.pipe_file(path, json.dumps(self._info).encode(), IfMatch=self._etag)
        self._etag = fs.info(path, refresh=True)["ETag"]

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            try:
                self._put()
            except Exception as e:  # precondition failed: another run took it over; or the store is down
                if type(e).__name__ in ("FileExistsError", "OSError") and "pre-condition" in str(e):
                    self.lost = f"another run took over the output lock {self.url}"
                    return
                # A store that cannot be reached now may answer at the next beat.

    def check(self) -> None:
        """Raise VidcapError when this run lost its lock (another run took it over)."""
        if self.lost:
            raise VidcapError(f"{self.lost}; this run stops writing")

    def release(self) -> None:
        """Stop the heartbeat and remove the lock object (if it is still ours)."""
        self._stop.set()
        self._thread.join(timeout=5)
        if self.lost:
            return
        fs, path = object_store.filesystem(self.url)
        try:
            data = fs.cat_file(path)
            if json.loads(data).get("token") == self._info["token"]:
                fs.rm_file(path)
        except Exception:  # gone already, or the store is down: a stale lock is taken over later
            pass


def _read(fs: Any, path: str) -> tuple[dict[str, Any], str] | None:
    try:
        info = fs.info(path, refresh=True)
        data = json.loads(fs.cat_file(path))
    except FileNotFoundError:
        return None
    except ValueError:
        data = {}
    return (data if isinstance(data, dict) else {}), info["ETag"]


def acquire(url: str, output: str) -> ObjectLock | None:
    """Take the lock object ``url`` of ``output`` at once, or raise :class:`OutputLockedError`.

    None (after a warning) where the store's filesystem takes no conditional writes: the run goes
    on unlocked, as on a local filesystem without ``flock``."""
    fs, path = object_store.filesystem(url)
    info = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "token": secrets.token_hex(8),
        "started_at": _now(),
        "heartbeat_at": _now(),
        "heartbeat": time.time(),
    }
    body = json.dumps(info).encode()
    for _ in range(3):
        try:
            fs.pipe_file(path, body, IfNoneMatch="*")
            return ObjectLock(url, info, fs.info(path, refresh=True)["ETag"])
        except FileExistsError:
            pass
        except TypeError:  # this filesystem's pipe_file takes no IfNoneMatch
            log.warning(
                "cannot lock %s: this store's filesystem does not do conditional writes, so a second "
                "run on this output would not be stopped",
                url,
            )
            return None
        except Exception as e:
            if "pre-condition" not in str(e):
                raise VidcapError(f"cannot lock output: {url}: {object_store.describe(e)}") from None
        found = _read(fs, path)
        if found is None:
            continue  # released meanwhile: try the create again
        holder, etag = found
        stale = time.time() - float(holder.get("heartbeat", 0)) > STALE_S
        if not stale and _alive_here(holder):
            raise OutputLockedError(
                f"{output}: another vidcap run is writing this output (pid {holder.get('pid')} on host "
                f"{holder.get('host')}, since {holder.get('started_at')}); nothing done"
            )
        try:
            fs.pipe_file(path, body, IfMatch=etag)  # take over exactly the stale lock we read
            return ObjectLock(url, info, fs.info(path, refresh=True)["ETag"])
        except Exception as e:
            if "pre-condition" not in str(e) and not isinstance(e, FileExistsError):
                raise VidcapError(f"cannot lock output: {url}: {object_store.describe(e)}") from None
    raise OutputLockedError(f"{output}: another vidcap run is taking this output's lock; nothing done")
