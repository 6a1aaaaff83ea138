"""``FileStorage``: DataFlow's step-based file storage, without pandas in the record path.

Step 0 reads ``first_entry_file_name`` (JSON array, JSONL, Parquet or CSV, by extension). Each operator
writes the next step's file, ``{cache_path}/{file_name_prefix}_step{N}.{cache_type}``, which
the next ``step()`` reads. With the quick start's arguments, captions land in
``./cache/video_caption_step1.json``, with a run summary beside it
(``video_caption_step1.json.summary.json``).

Records never pass through a DataFrame: ids like ``"007"``, big integers, nested values and
key order reach the output unchanged with ``json``/``jsonl``, and keep their column types
with ``parquet``. ``csv`` is lossy for types, as in DataFlow: every cell reads back as a
string, an empty cell as null, and nested values are stored as JSON text.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Literal

from vidcap.errors import VidcapError

CacheType = Literal["json", "jsonl", "csv", "parquet", "pickle"]  # DataFlow's; vidcap refuses pickle


class FileStorage:
    """Where an operator reads its records and writes its results, step by step.

    DataFlow-MM's parameters and defaults. ``cache_type``: ``json``, ``jsonl``, ``parquet`` or
    ``csv`` (lossy for types, see the module doc); ``pickle``, which DataFlow also takes, is
    refused in one line (a pickle runs code when it is read).
    """

    def __init__(
        self,
        first_entry_file_name: str,
        cache_path: str = "./cache",
        file_name_prefix: str = "dataflow_cache",
        cache_type: CacheType = "jsonl",
    ) -> None:
        if cache_type not in ("json", "jsonl", "parquet", "csv"):
            raise VidcapError(
                f"FileStorage: cache_type {cache_type!r} is not supported by vidcap; use 'jsonl', 'json', "
                "'parquet' or 'csv' (csv is lossy for types)"
            )
        self.first_entry_file_name = first_entry_file_name
        self.cache_path = cache_path
        self.file_name_prefix = file_name_prefix
        self.cache_type = cache_type
        self.operator_step = -1

    def step(self) -> FileStorage:
        """Advance to the next operator step; returns a copy bound to that step."""
        self.operator_step += 1
        return copy.copy(self)

    def reset(self) -> FileStorage:
        """Back to before the first step."""
        self.operator_step = -1
        return self

    def _step_path(self, step: int) -> Path:
        if step < 0:
            raise VidcapError("call storage.step() before reading or writing")
        if step == 0:
            return Path(self.first_entry_file_name)
        return Path(self.cache_path) / f"{self.file_name_prefix}_step{step}.{self.cache_type}"

    def read_path(self) -> Path:
        """The file this step reads."""
        return self._step_path(self.operator_step)

    def write_path(self) -> Path:
        """The file this step writes (the next step's input)."""
        return self._step_path(self.operator_step + 1)

    def read(self, output_type: Literal["dict", "dataframe"] = "dataframe") -> Any:
        """This step's records: a pandas DataFrame (DataFlow's default; pandas needed) or, with
        ``output_type="dict"``, a list of dicts exactly as in the file."""
        from vidcap.io.records import iter_records

        if output_type not in ("dict", "dataframe"):
            raise VidcapError(f"output_type must be 'dict' or 'dataframe', got {output_type!r}")
        records = [r.data for r in iter_records(self.read_path())]
        if output_type == "dict":
            return records
        try:
            import pandas as pd
        except ImportError:
            raise VidcapError(
                "FileStorage.read(): a DataFrame needs pandas (pip install pandas); "
                "read('dict') gives the records as a list of dicts"
            ) from None
        return pd.DataFrame(records)

    def write(self, data: Any) -> str:
        """Write records (list of dicts, or a DataFrame) as this step's output; returns the path."""
        from vidcap.io.writer import open_writer

        records = data.to_dict(orient="records") if hasattr(data, "to_dict") else list(data)
        path = self.write_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        # A Parquet step file keeps the types of the columns this step read.
        writer = open_writer(path, resume=False, like=self.read_path() if self.operator_step >= 0 else None)
        writer.write_batch(records)
        writer.close(complete=True)
        return str(path)
