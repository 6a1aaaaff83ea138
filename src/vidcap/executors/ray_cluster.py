"""The Ray cluster a ``--executor ray`` run works on: connect once, disconnect at the end.

Ray is an optional dependency (``pip install 'vidcap[ray]'``), imported only here and by the
other ``ray_*`` modules of the Ray executor, never by a local run.

The cluster is ``--ray-address`` (config ``ray_address``), else ``RAY_ADDRESS``, else a local Ray
that this process starts (and stops when the run ends). The nodes of a cluster started apart
must have vidcap installed (the same version: tasks and actors import it by name); a
``PYTHONPATH`` set for this process is passed on to them, so a source checkout on a shared
filesystem works too.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

from vidcap.errors import VidcapError, one_line

_lock = threading.Lock()
_connected_by_us = False


def import_ray() -> Any:
    """The ``ray`` module, or a one-line error saying how to install it."""
    try:
        import ray
    except ImportError:
        raise VidcapError("--executor ray needs Ray: pip install 'vidcap[ray]'") from None
    return ray


def connect(address: str | None) -> Any:
    """Connect this process to the run's Ray cluster (once; later calls return at once) and
    return the ``ray`` module. ``address``: ``--ray-address``; None: ``RAY_ADDRESS``, else a
    local Ray started here. A cluster that cannot be reached is a VidcapError."""
    global _connected_by_us
    ray = import_ray()
    with _lock:
        if ray.is_initialized():
            return ray
        address = address or os.environ.get("RAY_ADDRESS") or None
        env_vars = forwarded_environment()
        try:
            ray.init(
                address=address,
                include_dashboard=False,
                logging_level=logging.WARNING,
                runtime_env={"env_vars": env_vars} if env_vars else None,
            )
        except Exception as exc:
            where = f"the Ray cluster at {address}" if address else "a local Ray"
            raise VidcapError(f"cannot connect to {where}: {one_line(exc)}") from exc
        _connected_by_us = True
    return ray


# What the run's tasks and actors need of this process's environment on every node: the import
# path, and where the object store is and how to reach it (the endpoint, region, profile and keys
# as each storage library reads them, and --storage-options), so that the decode tasks read
# s3:// videos as this process does. Ray shows a job's runtime_env in its dashboard.
_FORWARDED = (
    "PYTHONPATH",
    "VIDCAP_STORAGE_OPTIONS",  # vidcap.io.object_store.OPTIONS_ENV
    "GOOGLE_APPLICATION_CREDENTIALS",
    "HF_TOKEN",
    "HF_ENDPOINT",
)
_FORWARDED_PREFIXES = ("AWS_", "AZURE_STORAGE_")


def forwarded_environment() -> dict[str, str]:
    """The variables of this process that the cluster's workers get (``runtime_env`` env_vars)."""
    return {
        name: value
        for name, value in os.environ.items()
        if value and (name in _FORWARDED or name.startswith(_FORWARDED_PREFIXES))
    }


def disconnect() -> None:
    """Leave the cluster (a local Ray started by ``connect`` stops with it)."""
    global _connected_by_us
    with _lock:
        if not _connected_by_us:
            return
        _connected_by_us = False
        import ray

        ray.shutdown()
