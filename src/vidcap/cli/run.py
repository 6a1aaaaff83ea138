"""``vidcap run``: caption a dataset file."""

from __future__ import annotations

import sys
from typing import Annotated, Literal

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
from vidcap.config import build_config, load_config_file
from vidcap.errors import VidcapError
from vidcap.executors.harness import execute

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
