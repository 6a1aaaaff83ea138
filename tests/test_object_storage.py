"""Input, videos and output in object storage (``s3://``), against a real S3 server on localhost.

The server is moto's standalone server in its own process (``tests/s3_server.py``), reached
through ``AWS_ENDPOINT_URL`` as a user reaches MinIO or S3; nothing is mocked in vidcap's path.
The end-to-end runs go through the real engine (tiny random model) and compare with the same
run on local copies of the same files.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import run_vidcap, write_jsonl
from tests.s3_server import s3_env, s3_server
from vidcap.config import SamplingOptions
from vidcap.errors import OutputLockedError, RecordError
from vidcap.io import object_lock, object_store
from vidcap.video.load import load_video
from vidcap.video.metadata import open_container

BUCKET = "vidcap-test"
CLIPS = ["a.mp4", "b.mp4", "c.avi", "tall.mkv"]


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory, clip_dir: Path) -> Iterator[dict]:
    """The server, this process pointed at it, a bucket holding the test clips under ``data/clips/``."""
    folder = tmp_path_factory.mktemp("s3")
    with s3_server(folder / "moto.log") as endpoint:
        env = s3_env(endpoint)
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        import s3fs

        s3fs.S3FileSystem.clear_instance_cache()
        fs = s3fs.S3FileSystem()
        fs.mkdir(BUCKET)
        for name in CLIPS:
            fs.put_file(str(clip_dir / name), f"{BUCKET}/data/clips/{name}")
        try:
            yield {"endpoint": endpoint, "env": {**os.environ, **env}, "fs": fs, "tmp": folder}
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
            s3fs.S3FileSystem.clear_instance_cache()


def url(key: str) -> str:
    return f"s3://{BUCKET}/{key}"


# -- videos -----------------------------------------------------------------------------------


def test_a_video_in_s3_decodes_to_the_local_files_frames(s3: dict, clip_dir: Path) -> None:
    options = SamplingOptions(nframes=4)
    for name in ("a.mp4", "c.avi"):
        remote = load_video(url(f"data/clips/{name}"), options)
        local = load_video(str(clip_dir / name), options)
        assert remote.plan == local.plan
        assert dataclasses.replace(remote.info, path=local.info.path) == local.info  # all but the name
        assert np.array_equal(np.asarray(remote.frames), np.asarray(local.frames))


def test_a_missing_video_object_is_a_record_error_naming_the_url(s3: dict) -> None:
    with pytest.raises(RecordError, match=rf"^video not found: s3://{BUCKET}/data/clips/none\.mp4$"):
        open_container(url("data/clips/none.mp4"))


def test_local_paths_do_not_go_through_fsspec() -> None:
    assert not object_store.is_url("/data/a.mp4")
    assert not object_store.is_url("clips/a.mp4")
    assert not object_store.is_url("https://example.com/a.mp4")  # FFmpeg opens http(s) itself
    assert object_store.is_url("s3://b/a.mp4") and object_store.is_url("gs://b/a.mp4")


# -- the output lock ------------------------------------------------------------------------------


def test_the_lock_object_keeps_a_second_run_out_until_released(s3: dict) -> None:
    lock_url = url("locks/out.jsonl.lock")
    first = object_lock.acquire(lock_url, url("locks/out.jsonl"))
    try:
        with pytest.raises(OutputLockedError, match=r"another vidcap run is writing this output \(pid \d+"):
            object_lock.acquire(lock_url, url("locks/out.jsonl"))
    finally:
        first.release()
    assert not s3["fs"].exists(f"{BUCKET}/locks/out.jsonl.lock")
    object_lock.acquire(lock_url, url("locks/out.jsonl")).release()


def test_a_dead_runs_lock_object_is_taken_over(s3: dict) -> None:
    """A SIGKILLed run leaves its lock object; a process of this host that is gone holds nothing."""
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    import socket

    stale = {"pid": int(dead.stdout), "host": socket.gethostname(), "heartbeat": time.time(), "token": "x"}
    s3["fs"].pipe_file(f"{BUCKET}/locks/dead.jsonl.lock", json.dumps(stale).encode())
    lock = object_lock.acquire(url("locks/dead.jsonl.lock"), url("locks/dead.jsonl"))
    holder = json.loads(s3["fs"].cat_file(f"{BUCKET}/locks/dead.jsonl.lock"))
    assert holder["pid"] == os.getpid()
    lock.release()


# -- errors before the model loads ------------------------------------------------------------------


def _run(s3: dict, tiny_model: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return run_vidcap("run", *args, "-m", str(tiny_model), env=env or s3["env"], timeout=120)


def test_a_missing_bucket_stops_before_the_model_in_one_line(
    s3: dict, tiny_model: Path, tmp_path: Path
) -> None:
    done = _run(s3, tiny_model, "-i", "s3://no-such-bucket/in.jsonl")
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip() == (
        "error: input: s3://no-such-bucket/in.jsonl: bucket 'no-such-bucket' does not exist"
    )
    data = write_jsonl(tmp_path / "in.jsonl", [{"video": "a.mp4"}])
    done = _run(s3, tiny_model, "-i", str(data), "-o", "s3://no-such-bucket/out.jsonl")
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip() == (
        "error: output: s3://no-such-bucket/out.jsonl: bucket 'no-such-bucket' does not exist"
    )


def test_a_missing_input_object_stops_in_one_line(s3: dict, tiny_model: Path) -> None:
    done = _run(s3, tiny_model, "-i", url("nothing.jsonl"))
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip() == f"error: {url('nothing.jsonl')}: no such input object"


def test_no_credentials_stop_before_the_model_in_one_line(s3: dict, tiny_model: Path, tmp_path: Path) -> None:
    env = {k: v for k, v in s3["env"].items() if k not in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    env["HOME"] = str(tmp_path)  # no ~/.aws either
    done = _run(s3, tiny_model, "-i", url("in.jsonl"), env=env)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        f"error: input: {url('in.jsonl')}: no credentials found"
    ), lines


def test_bad_storage_options_are_one_line(s3: dict, tiny_model: Path) -> None:
    done = _run(s3, tiny_model, "-i", url("in.jsonl"), "--storage-options", "[1]")
    assert done.returncode == 2, done.stderr
    assert (
        done.stderr.strip()
        == 'error: --storage-options must be a JSON object, e.g. \'{"endpoint_url": "http://..."}\''
    )
