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
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import TINY_ENGINE, assert_only_noise_errors, run_vidcap, write_jsonl
from tests.s3_server import s3_env, s3_server
from vidcap.config import SamplingOptions
from vidcap.errors import OutputLockedError, RecordError
from vidcap.io import object_lock, object_store
from vidcap.io.jsonio import loads
from vidcap.io.records import iter_records
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


def test_another_hosts_lock_holds_while_its_heartbeat_is_fresh_and_is_taken_over_when_stale(s3: dict) -> None:
    key = f"{BUCKET}/locks/other.jsonl.lock"
    holder = {"pid": 1, "host": "another-node", "token": "y", "started_at": "then"}
    s3["fs"].pipe_file(key, json.dumps({**holder, "heartbeat": time.time()}).encode())
    with pytest.raises(OutputLockedError, match="pid 1 on host another-node"):
        object_lock.acquire(url("locks/other.jsonl.lock"), url("locks/other.jsonl"))
    stale = time.time() - object_lock.STALE_S - 1  # that node died: no heartbeat since
    s3["fs"].pipe_file(key, json.dumps({**holder, "heartbeat": stale}).encode())
    lock = object_lock.acquire(url("locks/other.jsonl.lock"), url("locks/other.jsonl"))
    assert lock is not None and json.loads(s3["fs"].cat_file(key))["pid"] == os.getpid()
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


# -- end to end, through the real engine ------------------------------------------------------------

RECORDS = 24


def _config(folder: Path, tiny_model: Path) -> Path:
    config = folder / "tiny.toml"
    config.write_text(
        f'model = "{tiny_model}"\nmax_model_len = {TINY_ENGINE["max_model_len"]}\n'
        f"gpu_memory_utilization = {TINY_ENGINE['gpu_memory_utilization']}\nenforce_eager = true\n"
        "max_tokens = 8\nbatch_size = 4\nmax_in_flight = 4\ndecode_workers = 1\nseed = 0\n"
        "fps = 1.0\nmin_pixels = 12544\nmax_pixels = 50176\n"
    )
    return config


def _records(count: int) -> list[dict]:
    """Relative video paths (from the input's folder, local or in the bucket), one video missing."""
    records = [{"id": f"{i:04d}", "video": f"clips/{CLIPS[i % len(CLIPS)]}", "n": i} for i in range(count)]
    records[5]["video"] = "clips/none.mp4"
    return records


def _ids(path: Path) -> list[str]:
    return [r.data["id"] for r in iter_records(path)]


@pytest.fixture(scope="module")
def runs(s3: dict, clip_dir: Path, tiny_model: Path) -> dict:
    """The same job run on local files and on the bucket (JSONL in and out; Parquet in and out)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder, fs = s3["tmp"] / "runs", s3["fs"]
    (folder / "clips").mkdir(parents=True)
    for name in CLIPS:
        (folder / "clips" / name).write_bytes((clip_dir / name).read_bytes())
    records = _records(RECORDS)
    data = write_jsonl(folder / "data.jsonl", records)
    pq.write_table(pa.Table.from_pylist(records), folder / "data.parquet")
    fs.put_file(str(data), f"{BUCKET}/data/data.jsonl")
    fs.put_file(str(folder / "data.parquet"), f"{BUCKET}/data/data.parquet")
    config = _config(folder, tiny_model)
    env = {**s3["env"], "VIDCAP_STAGING_DIR": str(folder / "staging")}

    def run(*args: str) -> subprocess.CompletedProcess:
        return run_vidcap("run", *args, "-c", str(config), "--quiet", env=env, timeout=1200)

    done = {
        "local": run("-i", str(data), "-o", str(folder / "out.jsonl")),
        "s3": run("-i", url("data/data.jsonl"), "-o", url("out/out.jsonl")),
    }
    if done["s3"].returncode not in (0, 1):  # the other runs would say nothing more
        pytest.fail(f"the run on the bucket failed: {done['s3'].stderr}")
    for suffix in ("", ".summary.json"):
        fs.get_file(f"{BUCKET}/out/out.jsonl{suffix}", str(folder / f"s3-out.jsonl{suffix}"))
    return {"folder": folder, "done": done, "records": records, "fs": fs, "run": run, "env": env}


@pytest.fixture(scope="module")
def more_runs(runs: dict) -> dict:
    """A Parquet input in the bucket, two shards of the JSONL input merged there, a report of its output."""
    folder, fs, run, env, done = runs["folder"], runs["fs"], runs["run"], runs["env"], runs["done"]
    done |= {
        "s3_parquet": run("-i", url("data/data.parquet")),  # default output: beside the input
        "shard0": run("-i", url("data/data.jsonl"), "--shard-index", "0", "--num-shards", "2"),
        "shard1": run("-i", url("data/data.jsonl"), "--shard-index", "1", "--num-shards", "2"),
    }
    done["merge"] = run_vidcap("merge", url("data/data.jsonl"), env=env)
    done["report"] = run_vidcap("report", url("out/out.jsonl"), "-o", str(folder / "report.html"), env=env)
    fs.get_file(f"{BUCKET}/data/data.captions.jsonl", str(folder / "s3-merged.jsonl"))
    for name, remote in (("out.jsonl", "out/out.jsonl"), ("out.parquet", "data/data.captions.parquet")):
        for suffix in ("", ".summary.json"):
            if fs.exists(f"{BUCKET}/{remote}{suffix}"):
                fs.get_file(f"{BUCKET}/{remote}{suffix}", str(folder / f"s3-{name}{suffix}"))
    return runs


@pytest.mark.engine
def test_a_run_on_the_bucket_writes_the_records_of_the_same_run_on_local_files(runs: dict) -> None:
    folder, done = runs["folder"], runs["done"]
    assert_only_noise_errors_or_missing(done["local"], folder / "out.jsonl")
    assert_only_noise_errors_or_missing(done["s3"], folder / "s3-out.jsonl")
    local = [r.data for r in iter_records(folder / "out.jsonl")]
    remote = [r.data for r in iter_records(folder / "s3-out.jsonl")]
    # The missing video's error names its own path (a local file, a URL); all else is the same.
    assert local[5]["error"] == f"video not found: {folder / 'clips' / 'none.mp4'}"
    assert remote[5]["error"] == f"video not found: {url('data/clips/none.mp4')}"
    local[5]["error"] = remote[5]["error"]
    assert remote == local  # same fields, same captions (--seed), same order
    summary = loads((folder / "s3-out.jsonl.summary.json").read_bytes())
    assert summary["complete"] is True and summary["output"] == url("out/out.jsonl")
    assert summary["fingerprint"]["input"]["path"] == url("data/data.jsonl")
    # Committed: the whole object is there; the parts and the lock are gone.
    fs = runs["fs"]
    assert not fs.exists(f"{BUCKET}/out/out.jsonl.parts/") or not fs.ls(f"{BUCKET}/out/out.jsonl.parts/")
    assert not fs.exists(f"{BUCKET}/out/out.jsonl.lock")
    assert done["s3"].stderr.count("\n") < 20


@pytest.mark.engine
def test_a_parquet_input_in_the_bucket_gives_a_parquet_output_beside_it(more_runs: dict) -> None:
    folder, done = more_runs["folder"], more_runs["done"]
    assert done["s3_parquet"].returncode in (0, 1), done["s3_parquet"].stderr
    local = [r.data for r in iter_records(folder / "out.jsonl")]
    remote = [r.data for r in iter_records(folder / "s3-out.parquet")]
    keys = ("id", "video", "n", "caption", "status", "error")
    assert remote[5]["error"] == f"video not found: {url('data/clips/none.mp4')}"  # names its URL
    local[5]["error"] = remote[5]["error"]
    assert [{k: r[k] for k in keys} for r in remote] == [{k: r[k] for k in keys} for r in local]


def assert_only_noise_errors_or_missing(done: subprocess.CompletedProcess, output: Path) -> None:
    """The run ended 1: the missing video's record, and only noise besides."""
    assert done.returncode == 1, done.stderr
    errors = [r.data["error"] for r in iter_records(output) if r.data["status"] == "error"]
    assert sum(e.startswith("video not found: ") for e in errors) == 1, errors
    assert all(
        e.startswith("video not found: ") or e == "the model returned an empty caption" for e in errors
    )


@pytest.mark.engine
def test_sigkill_mid_run_on_the_bucket_then_the_rerun_gives_every_record_once(
    s3: dict, clip_dir: Path, tiny_model: Path
) -> None:
    folder, fs = s3["tmp"] / "kill", s3["fs"]
    folder.mkdir()
    records = [{"id": f"{i:04d}", "video": f"clips/{CLIPS[i % len(CLIPS)]}"} for i in range(64)]
    fs.put_file(str(write_jsonl(folder / "data.jsonl", records)), f"{BUCKET}/kill/data.jsonl")
    for name in CLIPS:
        fs.put_file(str(clip_dir / name), f"{BUCKET}/kill/clips/{name}")
    config = _config(folder, tiny_model)
    env = {**s3["env"], "VIDCAP_STAGING_DIR": str(folder / "staging")}
    args = ["run", "-i", url("kill/data.jsonl"), "-o", url("kill/out.jsonl"), "-c", str(config), "--quiet"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "vidcap", *args],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    parts = f"{BUCKET}/kill/out.jsonl.parts/"
    deadline = time.monotonic() + 900  # the engine's start, on a loaded machine
    try:
        while not (fs.exists(parts) and len(fs.ls(parts, refresh=True)) >= 2):
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < deadline, "no two parts after 900 s"
            time.sleep(0.2)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the whole group: main process, engine, decode workers
        proc.wait(timeout=60)
    left = len(fs.ls(parts, refresh=True))
    assert 2 <= left < 16, "the kill came too late to test anything"
    # What the parts hold (a part is what one flush wrote: not always one batch).
    kept = sum(fs.cat_file(part).count(b"\n") for part in fs.ls(parts, refresh=True))
    assert not fs.exists(f"{BUCKET}/kill/out.jsonl")  # not committed: only parts
    assert fs.exists(f"{BUCKET}/kill/out.jsonl.lock")  # the dead run's lock object is left...

    rerun = run_vidcap(*args, env=env, timeout=1800)  # ...and taken over (its pid is gone)
    fs.get_file(f"{BUCKET}/kill/out.jsonl", str(folder / "out.jsonl"))
    fs.get_file(f"{BUCKET}/kill/out.jsonl.summary.json", str(folder / "out.jsonl.summary.json"))
    assert_only_noise_errors(rerun.returncode, folder / "out.jsonl", rerun.stderr)
    assert _ids(folder / "out.jsonl") == [r["id"] for r in records]  # every record once, in order
    summary = loads((folder / "out.jsonl.summary.json").read_bytes())
    assert summary["complete"] is True and summary["resumed"] == kept
    assert "resuming after" in rerun.stderr or rerun.returncode in (0, 1)
    fs.invalidate_cache()
    assert fs.glob(parts + "*") == []  # the parts are gone once the whole output is put
    assert not fs.exists(f"{BUCKET}/kill/out.jsonl.lock")


@pytest.mark.engine
def test_shards_on_the_bucket_merge_into_the_records_of_the_local_run(more_runs: dict) -> None:
    folder, done = more_runs["folder"], more_runs["done"]
    for shard in ("shard0", "shard1"):
        assert done[shard].returncode in (0, 1), done[shard].stderr
    assert done["merge"].returncode == 0, done["merge"].stderr
    assert done["merge"].stderr.strip().endswith(f"-> {url('data/data.captions.jsonl')}")
    local = [r.data for r in iter_records(folder / "out.jsonl")]
    merged = [r.data for r in iter_records(folder / "s3-merged.jsonl")]
    assert merged[5]["error"] == f"video not found: {url('data/clips/none.mp4')}"  # names its URL
    local[5]["error"] = merged[5]["error"]
    # A shard's `duplicate` flag compares within its own run (README), not across the shards.
    for row in (*merged, *local):
        if row.get("info"):
            row["info"]["flags"] = [f for f in row["info"].get("flags", []) if f != "duplicate"]
    assert merged == local
    assert more_runs["fs"].exists(f"{BUCKET}/data/data.captions.jsonl.summary.json")


@pytest.mark.engine
def test_report_reads_an_output_url_and_its_videos_from_the_bucket(more_runs: dict) -> None:
    done = more_runs["done"]["report"]
    assert done.returncode == 0, done.stderr
    assert "1 video(s) not readable" in done.stderr  # clips/none.mp4, and only it
    assert (more_runs["folder"] / "report.html").stat().st_size > 10_000


def test_probe_reads_a_dataset_url_and_its_videos(s3: dict, tmp_path: Path) -> None:
    records = [{"video": "clips/a.mp4"}, {"video": "clips/none.mp4"}]
    s3["fs"].pipe_file(
        f"{BUCKET}/data/probe.jsonl", b"".join(json.dumps(r).encode() + b"\n" for r in records)
    )
    done = run_vidcap("probe", url("data/probe.jsonl"), "--json", env=s3["env"])
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r["path"] for r in rows] == [url("data/clips/a.mp4"), url("data/clips/none.mp4")]
    assert rows[0].get("error") is None and rows[0]["total_frames"] == 20
    assert rows[1]["error"] == f"video not found: {url('data/clips/none.mp4')}"


# -- the output's parts, in-process (the same code paths a run takes) ---------------------------------


def _staged(data: Path, output: str):
    from vidcap.config import RunConfig, RunOptions
    from vidcap.io import staging

    return staging.staged(RunConfig(run=RunOptions(input=str(data), output=output)))


def test_batches_are_parts_until_the_run_completes_then_one_whole_object(s3: dict, tmp_path: Path) -> None:
    from vidcap.io.lock import acquire_output_lock
    from vidcap.io.resume import load_done
    from vidcap.io.writer import open_writer

    data = write_jsonl(tmp_path / "in.jsonl", [{"id": i} for i in range(6)])
    out, fs = url("parts/out.jsonl"), s3["fs"]
    rows = [{"id": i, "caption": f"c{i}"} for i in range(6)]
    with _staged(data, out) as config:
        local = Path(config.run.output)
        with acquire_output_lock(local):
            writer = open_writer(local, resume=True)
            writer.write_batch(rows[:2])
            writer.write_batch(rows[2:4])
            writer.close(complete=False)  # interrupted: the parts are the output
    parts = fs.ls(f"{BUCKET}/parts/out.jsonl.parts/", refresh=True)
    assert [p.rsplit("/", 1)[1] for p in parts] == ["part-00000000.jsonl", "part-00000001.jsonl"]
    assert not fs.exists(f"{BUCKET}/parts/out.jsonl")
    with _staged(data, out) as config:  # a rerun, maybe on another machine: the store is the truth
        local = Path(config.run.output)
        with acquire_output_lock(local):
            assert load_done(local, id_key="id").ids == frozenset({"0", "1", "2", "3"})
            writer = open_writer(local, resume=True)
            writer.write_batch(rows[4:])
            writer.close(complete=True)
    assert [loads(line) for line in fs.cat_file(f"{BUCKET}/parts/out.jsonl").splitlines()] == rows
    assert not fs.exists(f"{BUCKET}/parts/out.jsonl.parts/") or not fs.ls(f"{BUCKET}/parts/out.jsonl.parts/")
    assert not fs.exists(f"{BUCKET}/parts/out.jsonl.lock")


def test_a_parquet_output_url_is_written_whole_in_its_format(s3: dict, tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    from vidcap.io.writer import open_writer

    data = write_jsonl(tmp_path / "in.jsonl", [{"id": i} for i in range(3)])
    out = url("parts/out.parquet")
    with _staged(data, out) as config:
        writer = open_writer(Path(config.run.output), resume=True)
        writer.write_batch([{"id": 0, "caption": "a"}, {"id": 1, "caption": "b"}])
        writer.write_batch([{"id": 2, "caption": "c"}])
        writer.close(complete=True)
    s3["fs"].get_file(f"{BUCKET}/parts/out.parquet", str(tmp_path / "out.parquet"))
    assert pq.read_table(tmp_path / "out.parquet").to_pylist() == [
        {"id": 0, "caption": "a"},
        {"id": 1, "caption": "b"},
        {"id": 2, "caption": "c"},
    ]
