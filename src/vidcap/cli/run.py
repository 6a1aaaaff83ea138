"""``vidcap run``: caption a dataset file."""

from __future__ import annotations

import json
import os
import signal
import sys
import traceback
from pathlib import Path
from typing import Annotated, Any

import typer

from vidcap.cli.options import RUN_FLAGS, Config, Quiet, Verbose, with_options
from vidcap.config import RunConfig, build_config, load_config_file
from vidcap.errors import (
    EXIT_INTERRUPTED,
    EngineStartError,
    FailedWhileStoppingError,
    OutputLockedError,
    StopDuringStart,
    VidcapError,
    one_line,
)
from vidcap.procs import STOP_SIGNALS, blocks_stop_signal, descendants, kill_processes
from vidcap.quiet import Capture, capture_output, log_path_for, terminal_err

EPILOG = (
    "Examples:\n\n"
    "  vidcap run data.jsonl -o captions.jsonl -m Qwen/Qwen2.5-VL-7B-Instruct\n\n"
    "  vidcap run data.jsonl -c configs/qwen2.5-vl-7b.toml --prompt 'Describe {x}.'\n\n"
    "  sbatch --array=0-7 scripts/slurm_array.sbatch   # one shard per array task"
)

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


@with_options(RUN_FLAGS, run=True)
def run_command(
    input_file: Annotated[
        str | None,
        typer.Argument(metavar="INPUT", help="The dataset, as with --input.", show_default=False),
    ] = None,
    config: Config = None,
    quiet: Quiet = False,
    verbose: Verbose = False,
    *,
    options: dict[str, Any],
) -> None:
    """Caption every record of a dataset and write the records with captions added."""
    # Each flag of the table (vidcap.option_table), None where not given: the config keys.
    flags = dict(options)
    if input_file is not None:
        if flags["input"] is not None and input_file != flags["input"]:
            raise VidcapError(f"two inputs given: {input_file} and --input {flags['input']}; give one")
        flags["input"] = input_file
    run_config = build_config(load_config_file(config) if config else {}, flags)
    sys.exit(execute(run_config, quiet=quiet, verbose=verbose))


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
    from vidcap.engines import create_engine
    from vidcap.io.lock import acquire_output_lock
    from vidcap.pipeline.check import check_output_is_not_input
    from vidcap.pipeline.runner import run_captioning
    from vidcap.pipeline.shard import default_output_path
    from vidcap.progress import make_progress

    config = finish_config(config)
    run = config.run
    # The log goes beside the output, so each shard of an array has its own (as its output).
    output = Path(run.output or default_output_path(Path(run.input), run.shard_index, run.num_shards))
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    global _stop_requested
    _stop_requested = False
    # The signals the helper processes ignore (vidcap.procs): this process alone acts on them.
    previous = {sig: signal.signal(sig, _request_stop) for sig in STOP_SIGNALS}
    # Helpers alive before this run (another engine of the calling program) are not this run's.
    helpers_before = set(descendants(os.getpid()))
    capture = None
    try:
        check_output_is_not_input(Path(run.input), output)
        with (
            # Locked before the log opens: a run refused here writes nothing, not even a log line
            # into the running job's log.
            acquire_output_lock(output) as lock,
            capture_output(log_path_for(output), enabled=not verbose, release=False) as capture,
            create_engine(config.engine, config.generation) as engine,
        ):
            result = run_captioning(
                config,
                engine,
                progress=make_progress(terminal_err(), enabled=not quiet),
                should_stop=lambda: _stop_requested,
                output_lock=lock,
                on_engine_start=_engine_start,
            )
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


def print_summary(
    data: dict[str, Any], *, interrupted: bool, id_key: str | None = None, overwrite: bool = False
) -> None:
    """A few lines on the terminal: counts by status, time, rates, where the files and failures are.

    The captioning rate counts from the first record on, as the progress bar does; the
    overall rate also counts the checks and the model load.
    """
    counts = data["status_counts"]
    stats = data.get("stats", {})
    load_s, caption_s = stats.get("load_s", 0.0), stats.get("caption_s", 0.0)
    videos = stats.get("videos", 0)
    captioning = f"{videos / caption_s:.2f} videos/s captioning" if caption_s > 0 else "no captioning"
    lines = [
        f"{'Interrupted' if interrupted else 'Done'}: {counts['ok']} ok, {counts['error']} error, "
        f"{counts['skipped']} skipped" + (f", {data['resumed']} already done" if data["resumed"] else ""),
        f"  time:    {data['elapsed_s']:.1f} s in all, {load_s:.1f} s of it loading the model",
        f"  rate:    {captioning}, {data['videos_per_s']:.2f} videos/s overall",
        f"  tokens:  {data['prompt_tokens']} prompt + {data['generated_tokens']} generated "
        f"({data['generated_tokens_per_s']:.1f}/s while generating)",
        f"  output:  {data['output']}",
        f"  summary: {data['output']}.summary.json",
    ]
    engine = data.get("engine") or {}
    if engine.get("busy_fraction") is not None:  # the engine ran (not a run with nothing to do)
        lines.insert(
            4,
            f"  engine:  busy {engine['busy_fraction']:.0%} of the time, {engine['mean_in_flight']:.1f} "
            f"requests in flight on average (at most {engine['max_in_flight']}, "
            f"limit {engine['in_flight_limit']})",
        )
    retries = stats.get("retries", 0)
    if retries:  # --retries: the tries it dropped, whose tokens no record's info counts
        lines.insert(
            4,
            f"  retries: {retries} (their {data.get('retried_prompt_tokens', 0)} prompt + "
            f"{data.get('retried_generated_tokens', 0)} generated tokens are in no record)",
        )
    flag_counts = data.get("flag_counts") or {}
    if flag_counts:  # records with each quality flag (pipeline/assess.py); flags never fail a record
        lines.insert(4, "  flags:   " + ", ".join(f"{n} {flag}" for flag, n in _ordered_flags(flag_counts)))
    if counts["error"]:
        lines.append(f"  failed:  {_failed_records(Path(data['output']), data['status_key'], id_key)}")
    if interrupted:
        lines.append(
            "  rerun without --overwrite to resume" if overwrite else "  rerun the same command to resume"
        )
    print("\n".join(lines), file=terminal_err())


def _ordered_flags(counts: dict[str, int]) -> list[tuple[str, int]]:
    """The flag counts in the order pipeline/assess.py lists the flags, unknown ones after."""
    from vidcap.pipeline.assess import FLAGS

    order = [f for f in FLAGS if f in counts] + [f for f in counts if f not in FLAGS]
    return [(f, counts[f]) for f in order]


def _failed_records(output: Path, status_key: str, id_key: str | None, limit: int = 5) -> str:
    """Where the error records of ``output`` are: their first few ids (or lines), and how many."""
    from vidcap.io.records import iter_records

    found: list[str] = []
    total = 0
    for record in iter_records(output):
        if record.data.get(status_key) == "error":
            total += 1
            if len(found) < limit:
                found.append(str(record.data.get(id_key)) if id_key else str(record.line))
    from vidcap.io.formats import format_for

    # Rows of a Parquet or CSV output, elements of a JSON array, lines of JSON Lines.
    where = "ids" if id_key else f"{format_for(output, 'output').unit}s"
    more = f", ... ({total} in the file)" if total > len(found) else ""
    return f"{where} {', '.join(found)}{more} of {output.name} (see their 'error' field)"
