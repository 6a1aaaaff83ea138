"""The summary sidecar beside an output (``out.jsonl.summary.json``): where it is, how it is read."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vidcap.errors import VidcapError
from vidcap.io import files, jsonio

FINGERPRINT_VERSION = 1
"""The version of the summary's ``fingerprint`` layout this vidcap writes and reads."""

def summary_path(output: Path) -> Path:
    """The summary sidecar of an output file: ``out.jsonl`` -> ``out.jsonl.summary.json``."""
    output = Path(output)
    return output.with_name(output.name + ".summary.json")


def read_summary(output: Path) -> dict[str, Any] | None:
    """The summary of ``output`` as a dict; None if there is none.

    VidcapError (one line naming the file) if it cannot be read or is not a JSON object:
    a summary is written atomically, so a damaged one was not written by vidcap.
    """
    path = summary_path(output)
    if not path.exists():
        return None
    with files.open_for_reading(path) as f:
        try:
            data = jsonio.loads(f.read())
        except (ValueError, OSError) as e:
            raise VidcapError(f"{path}: unreadable summary: {e}") from None
    if not isinstance(data, dict):
        raise VidcapError(f"{path}: summary must be a JSON object, found {files.describe_kind(data)}")
    return data
