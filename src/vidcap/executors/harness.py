"""The run harness: from a checked ``RunConfig`` to an exit code, with what a process needs
around the job (the stop signals, the output's lock, the log of other libraries' output, the
engine's lifetime, the helper processes left over)."""

from __future__ import annotations

import json
import os
import signal
import traceback
from pathlib import Path
from typing import Any

from vidcap.config import RunConfig
from vidcap.errors import (
    EXIT_INTERRUPTED,
    EngineStartError,
    FailedWhileStoppingError,
    OutputLockedError,
    StopDuringStart,
    VidcapError,
    one_line,
)
from vidcap.pipeline.summary_lines import print_summary
from vidcap.procs import STOP_SIGNALS, blocks_stop_signal, descendants, kill_processes
from vidcap.quiet import Capture, capture_output, log_path_for, terminal_err

_stop_requested = False
_engine_starting = False  # while the model loads, a stop ends the start at once


def _request_stop(signum: int, _frame: Any) -> None:
    global _stop_requested
    if _stop_requested and signum == signal.SIGINT:
        raise KeyboardInterrupt  # a second Ctrl-C: stop now
    _stop_requested = True
    name = signal.Signals(signum).name
    stream = terminal_err()
    if _engine_starting:
        # Nothing is in flight yet, and a load can take minutes: abandon it (the engine's
        # processes are killed on the way out, see vidcap.procs).
        print(f"vidcap: {name} received while loading the model; stopping", file=stream, flush=True)
        raise StopDuringStart()
    print(f"vidcap: {name} received; finishing what is in flight, then stopping", file=stream, flush=True)


def _engine_start(starting: bool) -> None:
    global _engine_starting
    _engine_starting = starting


def finish_config(config: RunConfig) -> RunConfig:
    """Check what the flags point at and load the prompt and schema files."""
    import dataclasses

    from vidcap.model.processor import check_model_exists

    run, engine, generation = config.run, config.engine, config.generation
    if not run.input:
        raise VidcapError("missing the input dataset: vidcap run DATA.jsonl (or --input, or input= in -c)")
    if not engine.model:
        raise VidcapError("missing --model (a Hugging Face model id or a local model folder)")
    if not Path(run.input).is_file():
        raise VidcapError(f"input file not found: {run.input}")
    if engine.backend != "openai":
        check_model_exists(engine.model, cache_dir=engine.cache_dir)
    if run.prompt is not None and not run.prompt.strip():
        raise VidcapError("--prompt is empty")
    if run.prompt_file:
        if run.prompt is not None:
            raise VidcapError("--prompt and --prompt-file are exclusive; give one")
        try:
            run = dataclasses.replace(run, prompt=Path(run.prompt_file).read_text(encoding="utf-8").strip())
        except OSError as exc:
            raise VidcapError(f"cannot read --prompt-file {run.prompt_file}: {exc.strerror}") from None
    if run.json_schema_file:
        try:
            schema = json.loads(Path(run.json_schema_file).read_text(encoding="utf-8"))
        except OSError as exc:
            raise VidcapError(f"cannot read --json-schema {run.json_schema_file}: {exc.strerror}") from None
        except json.JSONDecodeError as exc:
            raise VidcapError(f"{run.json_schema_file}: invalid JSON: {exc}") from None
        _check_schema(run.json_schema_file, schema)
        generation = dataclasses.replace(generation, json_schema=schema)
    return dataclasses.replace(config, run=run, generation=generation)


def _check_schema(path: str, schema: Any) -> None:
    import jsonschema

    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise VidcapError(f"{path}: not a valid JSON Schema: {exc.message}") from None


def execute(config: RunConfig, *, quiet: bool = False, verbose: bool = False) -> int:
    """Run a checked config with signal handling and a printed summary; returns the exit code.

    Without ``verbose``, other libraries' output (this process's and its children's) goes to
    ``OUTPUT.log`` (see ``vidcap.quiet``) until the command ends; the terminal keeps vidcap's
    own lines, printed through ``terminal_out``/``terminal_err``.
    """
    from vidcap.executors import executor_for
    from vidcap.executors.job import Job, RunHooks
    from vidcap.progress import make_progress

    config = finish_config(config)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    global _stop_requested
    _stop_requested = False
    # The signals the helper processes ignore (vidcap.procs): this process alone acts on them.
    previous = {sig: signal.signal(sig, _request_stop) for sig in STOP_SIGNALS}
    # Helpers alive before this run (another engine of the calling program) are not this run's.
    helpers_before = set(descendants(os.getpid()))
    capture = None
    try:
        job = Job.plan(config)  # the output path, and that it is not the input
        executor = executor_for(config)
        with (
            # Locked before the log opens: a run refused here writes nothing, not even a log line
            # into the running job's log. The log goes beside the output, so each shard of an
            # array has its own (as its output).
            job.locked(),
            capture_output(log_path_for(job.output_path), enabled=not verbose, release=False) as capture,
            executor.engine() as engine,
        ):
            hooks = RunHooks(
                progress=make_progress(terminal_err(), enabled=not quiet),
                should_stop=lambda: _stop_requested,
                on_engine_start=_engine_start,
            )
            result = executor.run(job, engine, hooks)
            if result.stats.load_s:  # vLLM's processes take seconds to end, with nothing to show
                print("vidcap: output written; closing the engine", file=terminal_err(), flush=True)
    except StopDuringStart:  # the runner returns a stopped start as interrupted: a safety net
        _print_note(capture)
        return EXIT_INTERRUPTED
    except VidcapError as exc:
        if capture is not None and capture.captured_bytes:  # e.g. the engine's root cause
            # The same type: its exit code tells a locked output or a failed engine start apart.
            exc = type(exc)(f"{exc} (more in {capture.path})")
        if _stop_requested and not isinstance(exc, OutputLockedError | EngineStartError):
            # Failing while stopping is a failure (exit 70), even when the error is a known one.
            raise FailedWhileStoppingError(f"the run failed while stopping for a signal: {exc}") from exc
        raise exc
    except Exception as exc:
        _print_note(capture)
        if not _stop_requested:
            raise
        # Failing while stopping is a failure: say so (75 would tell a requeue to try again).
        if verbose:
            traceback.print_exc(file=terminal_err())
        raise FailedWhileStoppingError(
            f"the run failed while stopping for a signal: {one_line(exc)} (--verbose shows the traceback)"
        ) from exc
    except BaseException:
        _print_note(capture)
        raise
    finally:
        _engine_start(False)
        _end_leftover_processes(helpers_before)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    _print_note(capture)
    print_summary(
        result.summary_data,
        interrupted=result.interrupted,
        id_key=config.run.id_key,
        overwrite=config.run.overwrite,
    )
    return result.exit_code


def _end_leftover_processes(before: set[int]) -> None:
    """SIGKILL any helper this run started that is still alive (none, when every path closed
    what it opened): the helpers hold SIGTERM back (vidcap.procs), so nothing else would end
    them. Processes that take signals (multiprocessing's resource tracker) end by themselves.
    Those in ``before`` were there when the run began (a library caller's own engine): kept."""
    kill_processes(pid for pid in descendants(os.getpid()) if pid not in before and blocks_stop_signal(pid))


def _print_note(capture: Capture | None) -> None:
    """Name the log of other libraries' messages, if they wrote any."""
    note = capture.note() if capture is not None else None
    if note:
        print(note, file=terminal_err())
