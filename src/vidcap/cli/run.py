"""``vidcap run``: caption a dataset file."""

from __future__ import annotations

import json
import os
import signal
import sys
import traceback
from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from vidcap.cli.help import REQUIRED
from vidcap.cli.options import (
    CAPTION_SAMPLING,
    MODEL,
    RECORD_FORMATS,
    Backend,
    Config,
    DataParallelSize,
    EnforceEager,
    Family,
    Fps,
    GpuMemoryUtilization,
    MaxFrames,
    MaxModelLen,
    MaxPixels,
    MaxTokens,
    MinFrames,
    MinPixels,
    Nframes,
    Quiet,
    TotalPixels,
    Verbose,
    sampling_values,
)
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
JOB = "Input and output"
PROMPT = "Prompt"
BATCH = "Batch job"
SERVER = "OpenAI-compatible server (--backend openai)"
SAMPLE = CAPTION_SAMPLING
WINDOWS = "Long videos in timed windows"

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


def run_command(
    input_file: Annotated[
        str | None,
        typer.Argument(metavar="INPUT", help="The dataset, as with --input.", show_default=False),
    ] = None,
    input: Annotated[
        str | None,
        typer.Option(
            "--input",
            "-i",
            metavar="FILE",
            help=f"Dataset: {RECORD_FORMATS} (or give it as the argument). {REQUIRED}",
            rich_help_panel=JOB,
        ),
    ] = None,
    output: Annotated[
        str | None,
        typer.Option(
            "--output",
            "-o",
            metavar="FILE",
            help=f"Output: {RECORD_FORMATS} (default: INPUT.captions.EXT, or for a shard "
            "INPUT.captions.shard-I-of-N.EXT); its folder is created if needed.",
            rich_help_panel=JOB,
        ),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            "-m",
            metavar="NAME|DIR",
            help=f"Hugging Face model id or local folder, e.g. Qwen/Qwen2.5-VL-7B-Instruct. {REQUIRED}",
            rich_help_panel=MODEL,
        ),
    ] = None,
    family: Family = None,
    config: Config = None,
    prompt: Annotated[
        str | None,
        typer.Option(
            help="Prompt template; {field} is filled from each record, {{ }} are literal braces. "
            "(default: 'Please describe the video in detail.')",
            rich_help_panel=PROMPT,
        ),
    ] = None,
    prompt_file: Annotated[
        str | None,
        typer.Option(metavar="FILE", help="Read the prompt template from this file.", rich_help_panel=PROMPT),
    ] = None,
    system_prompt: Annotated[
        str | None, typer.Option(help="System prompt for every request.", rich_help_panel=PROMPT)
    ] = None,
    input_video_key: Annotated[
        str | None,
        typer.Option(help="Field holding the video path(s) (default: video).", rich_help_panel=JOB),
    ] = None,
    conversation_key: Annotated[
        str | None,
        typer.Option(help="Field holding the conversation (default: conversation).", rich_help_panel=JOB),
    ] = None,
    output_key: Annotated[
        str | None,
        typer.Option(help="Field the caption is written to (default: caption).", rich_help_panel=JOB),
    ] = None,
    status_key: Annotated[
        str | None, typer.Option(help="Field for ok/error/skipped (default: status).", rich_help_panel=JOB)
    ] = None,
    error_key: Annotated[
        str | None, typer.Option(help="Field for the error message (default: error).", rich_help_panel=JOB)
    ] = None,
    info_key: Annotated[
        str | None,
        typer.Option(
            help="Field for finish reason, token counts and quality flags (default: info).",
            rich_help_panel=JOB,
        ),
    ] = None,
    fail_on: Annotated[
        str | None,
        typer.Option(
            metavar="FLAGS",
            help="Quality flags that make a caption an error, e.g. truncated,repetition,duplicate; "
            "the text is kept in OUTPUT_KEY_raw (default: none).",
            rich_help_panel=JOB,
        ),
    ] = None,
    retries: Annotated[
        int | None,
        typer.Option(
            help="Try a caption that --fail-on fails again, with a new seed, up to N times (default: 0).",
            rich_help_panel=JOB,
        ),
    ] = None,
    id_key: Annotated[
        str | None,
        typer.Option(
            help="Unique record id field for resume (default: input position).", rich_help_panel=BATCH
        ),
    ] = None,
    backend: Backend = None,
    cache_dir: Annotated[
        str | None,
        typer.Option(help="Where hub models are downloaded (default: HF cache).", rich_help_panel=MODEL),
    ] = None,
    tensor_parallel_size: Annotated[
        int | None, typer.Option(help="GPUs to shard the model over (default: 1).", rich_help_panel=MODEL)
    ] = None,
    data_parallel_size: DataParallelSize = None,
    executor: Annotated[
        Literal["local", "ray"] | None,
        typer.Option(
            help="Where engines and decoding run: local (this node), or ray (engines as Ray actors, "
            "decoding as Ray tasks, on the cluster of --ray-address) (default: local).",
            rich_help_panel=MODEL,
        ),
    ] = None,
    ray_address: Annotated[
        str | None,
        typer.Option(
            metavar="ADDRESS",
            help="The Ray cluster of --executor ray, e.g. ray://head:10001 or head:6379 "
            "(default: RAY_ADDRESS, else a local Ray started for the run).",
            rich_help_panel=MODEL,
        ),
    ] = None,
    gpu_memory_utilization: GpuMemoryUtilization = None,
    max_model_len: MaxModelLen = None,
    dtype: Annotated[
        str | None, typer.Option(help="Model dtype (default: auto).", rich_help_panel=MODEL)
    ] = None,
    enforce_eager: EnforceEager = None,
    trust_remote_code: Annotated[
        bool | None, typer.Option(help="Allow model code from the hub.", rich_help_panel=MODEL)
    ] = None,
    device: Annotated[
        Literal["cpu", "cuda", "auto"] | None,
        typer.Option(help="Device of the transformers backend (default: auto).", rich_help_panel=MODEL),
    ] = None,
    temperature: Annotated[
        float | None,
        typer.Option(
            help="Sampling temperature; 0 is greedy (default: the model's).", rich_help_panel=SAMPLE
        ),
    ] = None,
    top_p: Annotated[
        float | None,
        typer.Option(help="Nucleus sampling, in (0, 1] (default: the model's).", rich_help_panel=SAMPLE),
    ] = None,
    top_k: Annotated[
        int | None,
        typer.Option(
            help="Sample from the k likeliest tokens; 0 = off (default: the model's).", rich_help_panel=SAMPLE
        ),
    ] = None,
    min_p: Annotated[
        float | None,
        typer.Option(
            help="Drop tokens less likely than min-p x the likeliest's, in [0, 1] (default: the model's).",
            rich_help_panel=SAMPLE,
        ),
    ] = None,
    repetition_penalty: Annotated[
        float | None,
        typer.Option(
            help="> 1 discourages tokens already in the prompt or caption (default: the model's).",
            rich_help_panel=SAMPLE,
        ),
    ] = None,
    presence_penalty: Annotated[
        float | None,
        typer.Option(
            help="In [-2, 2]; > 0 discourages tokens already generated (default: the model's).",
            rich_help_panel=SAMPLE,
        ),
    ] = None,
    frequency_penalty: Annotated[
        float | None,
        typer.Option(
            help="In [-2, 2]; > 0 discourages tokens by how often they occur (default: the model's).",
            rich_help_panel=SAMPLE,
        ),
    ] = None,
    max_tokens: MaxTokens = None,
    num_captions: Annotated[
        int | None,
        typer.Option(
            help="Captions per video; more than 1 stores a list (default: 1).", rich_help_panel=SAMPLE
        ),
    ] = None,
    seed: Annotated[
        int | None, typer.Option(help="Sampling seed, for repeatable runs.", rich_help_panel=SAMPLE)
    ] = None,
    json_schema: Annotated[
        str | None,
        typer.Option(
            metavar="FILE",
            help="JSON Schema file: captions are generated as JSON objects that validate against it.",
            rich_help_panel=PROMPT,
        ),
    ] = None,
    window: Annotated[
        float | None,
        typer.Option(
            metavar="SECONDS",
            help="Caption each video in consecutive windows of this many seconds (a tail shorter "
            "than half a window joins the last one), written to a 'windows' field: start, end, "
            "caption, status, info per window.",
            rich_help_panel=WINDOWS,
        ),
    ] = None,
    summary_prompt: Annotated[
        str | None,
        typer.Option(
            metavar="TEXT",
            help="With --window: a text-only pass over the windows' captions (each prefixed with "
            "its time range) writes one whole-video caption to the output key.",
            rich_help_panel=WINDOWS,
        ),
    ] = None,
    no_video: Annotated[
        bool | None,
        typer.Option(
            "--no-video",
            help="A text-only pass (e.g. refining captions with a text model): the prompt is filled "
            "from each record's fields ({caption}, {windows}, a JSON caption's fields) and sent "
            "without video; status/error/info go to OUTPUT_KEY_status, _error, _info unless given.",
            rich_help_panel=PROMPT,
        ),
    ] = None,
    fps: Fps = None,
    nframes: Nframes = None,
    min_frames: MinFrames = None,
    max_frames: MaxFrames = None,
    min_pixels: MinPixels = None,
    max_pixels: MaxPixels = None,
    total_pixels: TotalPixels = None,
    batch_size: Annotated[
        int | None,
        typer.Option(
            help="Records per flushed write (at least every 5 s too); the engines without a scheduler "
            "(transformers, openai) generate this many at a time (default: 32).",
            rich_help_panel=BATCH,
        ),
    ] = None,
    max_in_flight: Annotated[
        int | None,
        typer.Option(
            help="Requests kept in the engine at once; each enters as soon as its frames are decoded "
            "(default: vLLM's max_num_seqs plus one batch; --batch-size for the other backends).",
            rich_help_panel=BATCH,
        ),
    ] = None,
    overwrite: Annotated[
        bool | None,
        typer.Option(
            help="Start over instead of resuming from records already in the output; the old output "
            "stays until the new run has written its first batch.",
            rich_help_panel=BATCH,
        ),
    ] = None,
    shard_index: Annotated[
        int | None,
        typer.Option(
            help="This shard's index (default: from SLURM_ARRAY_TASK_ID, or 0).", rich_help_panel=BATCH
        ),
    ] = None,
    num_shards: Annotated[
        int | None,
        typer.Option(help="Number of shards (default: SLURM_ARRAY_TASK_COUNT or 1).", rich_help_panel=BATCH),
    ] = None,
    on_bad_line: Annotated[
        Literal["error", "skip"] | None,
        typer.Option(
            help="A line that is not a record: stop before any work, or report and skip it (default: error).",
            rich_help_panel=JOB,
        ),
    ] = None,
    on_missing_video: Annotated[
        Literal["record", "error"] | None,
        typer.Option(
            help="A video file missing or unreadable before the model loads: record (that record "
            "fails, the run goes on) or error (stop before loading the model) (default: record).",
            rich_help_panel=JOB,
        ),
    ] = None,
    decode_workers: Annotated[
        int | None,
        typer.Option(
            help="Decode processes (default: from the CPU count); 0 decodes in-process.",
            rich_help_panel=BATCH,
        ),
    ] = None,
    decode_timeout: Annotated[
        float | None,
        typer.Option(
            help="Seconds before a hung decode is killed; that record fails (default: 300).",
            rich_help_panel=BATCH,
        ),
    ] = None,
    api_base: Annotated[
        str | None, typer.Option(help="Server URL, e.g. http://127.0.0.1:8000/v1.", rich_help_panel=SERVER)
    ] = None,
    api_key_env: Annotated[
        str | None,
        typer.Option(
            help="Environment variable holding the API key (default: OPENAI_API_KEY).", rich_help_panel=SERVER
        ),
    ] = None,
    concurrency: Annotated[
        int | None, typer.Option(help="Requests in flight at once (default: 8).", rich_help_panel=SERVER)
    ] = None,
    quiet: Quiet = False,
    verbose: Verbose = False,
) -> None:
    """Caption every record of a dataset and write the records with captions added."""
    if input_file is not None and input is not None and input_file != input:
        raise VidcapError(f"two inputs given: {input_file} and --input {input}; give one")
    flags = {
        "input": input_file if input_file is not None else input,
        "output": output,
        "model": model,
        "family": family,
        "prompt": prompt,
        "prompt_file": prompt_file,
        "system_prompt": system_prompt,
        "input_video_key": input_video_key,
        "conversation_key": conversation_key,
        "output_key": output_key,
        "status_key": status_key,
        "error_key": error_key,
        "info_key": info_key,
        "fail_on": fail_on,
        "retries": retries,
        "id_key": id_key,
        "backend": backend,
        "cache_dir": cache_dir,
        "tensor_parallel_size": tensor_parallel_size,
        "data_parallel_size": data_parallel_size,
        "executor": executor,
        "ray_address": ray_address,
        "gpu_memory_utilization": gpu_memory_utilization,
        "max_model_len": max_model_len,
        "dtype": dtype,
        "enforce_eager": enforce_eager,
        "trust_remote_code": trust_remote_code,
        "device": device,
        "temperature": temperature,
        "top_p": top_p,
        "top_k": top_k,
        "min_p": min_p,
        "repetition_penalty": repetition_penalty,
        "presence_penalty": presence_penalty,
        "frequency_penalty": frequency_penalty,
        "max_tokens": max_tokens,
        "num_captions": num_captions,
        "seed": seed,
        "json_schema_file": json_schema,
        "batch_size": batch_size,
        "max_in_flight": max_in_flight,
        "overwrite": overwrite,
        "shard_index": shard_index,
        "num_shards": num_shards,
        "on_bad_line": on_bad_line,
        "on_missing_video": on_missing_video,
        "decode_workers": decode_workers,
        "decode_timeout": decode_timeout,
        "api_base": api_base,
        "api_key_env": api_key_env,
        "concurrency": concurrency,
        "window": window,
        "summary_prompt": summary_prompt,
        "no_video": no_video,
        **sampling_values(fps, nframes, min_frames, max_frames, min_pixels, max_pixels, total_pixels),
    }
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
    from vidcap.executors import create_engine
    from vidcap.executors.array_share import default_output_path
    from vidcap.executors.job import run_captioning
    from vidcap.io.lock import acquire_output_lock
    from vidcap.pipeline.check import check_output_is_not_input
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
