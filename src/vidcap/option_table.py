"""The table of run options: each option of ``vidcap run`` (and of a config file) is one row here.

A row is keyed by its config key, which is also the name of its field in one of the option groups
of ``vidcap.config`` (``RunOptions``, ``EngineConfig``, ``GenerationOptions``, ``SamplingOptions``):
that field is the option's type and default, as the Python API sees them. Everything else about
the option is the row: its help text and help panel, its flag names where Typer's default
(``--max-model-len``, ``--overwrite / --no-overwrite``) is not it, whether it is a flag at all,
whether a config file may set it, and whether it changes the run's fingerprint. From the table:

- ``vidcap.cli.options`` builds the Typer options of ``run``, ``probe`` and ``report``;
- ``vidcap.config`` takes its config keys (and their groups);
- ``vidcap.pipeline.fingerprint`` takes the options a resume must match.

Order matters twice. ``--help`` lists each panel's options in table order (the panels in the
order their first option comes). The fingerprint lists its ``ALWAYS`` options in table order, then
the generation and sampling groups, then its ``WHEN_SET`` options in table order: written summaries
keep that order, so a new fingerprinted option goes after the others of its kind.

A leaf module: it imports nothing of vidcap.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

#: Every record format's extensions, for help texts (a test keeps it equal to vidcap.io.formats, which
#: is not imported here: `vidcap --help` stays instant).
RECORD_FORMATS = ".jsonl, .ndjson, .json (an array), .parquet or .csv"

# Help panels.
JOB = "Input and output"
MODEL = "Model and engine"
PROMPT = "Prompt"
BATCH = "Batch job"
SERVER = "OpenAI-compatible server (--backend openai)"
WINDOWS = "Long videos in timed windows"
SAMPLING = "Frame sampling"
# Sampling values left unset come from the model's generation_config.json, as vLLM applies them.
CAPTION_SAMPLING = "Caption sampling (default: the model's generation_config.json)"

#: In the fingerprint whatever its value.
ALWAYS = "always"
#: In the fingerprint unless at its default: outputs written before the option existed still resume.
WHEN_SET = "when set"
Fingerprint = Literal["always", "when set"]


@dataclass(frozen=True)
class Option:
    """One run option: a row of the table (see the module docstring)."""

    key: str  # the config key, the field of a config group, the Python name of the flag's value
    help: str  # the flag's help text; for an option with no flag, what it is
    panel: str | None = None  # the --help section (None: "Options")
    flags: tuple[str, ...] = ()  # the flag's names; () for Typer's: --key-name (bools: --x / --no-x)
    metavar: str | None = None  # None: Typer's, from the type (<int>, <vllm|transformers|openai>)
    cli_type: Any = None  # the flag's type where it differs from the field's (a list given as text)
    flag: bool = True  # a command-line flag (else only a config key, or only the Python API's)
    config: bool = True  # a config-file key
    fingerprint: Fingerprint | None = None  # changes what a record's output says (None: only how fast)
    run_requires: bool = False  # vidcap run needs it, from the command line or the config file


def _config_only(key: str, help: str, *, fingerprint: Fingerprint | None = None) -> Option:
    return Option(key, help, flag=False, fingerprint=fingerprint)


def _internal(key: str, help: str, *, fingerprint: Fingerprint | None = None) -> Option:
    return Option(key, help, flag=False, config=False, fingerprint=fingerprint)


_THE_MODELS = "(default: the model's)"

OPTIONS: tuple[Option, ...] = (
    Option(
        "input",
        f"Dataset: {RECORD_FORMATS} (or give it as the argument).",
        JOB,
        flags=("--input", "-i"),
        metavar="FILE",
        run_requires=True,
    ),
    Option(
        "output",
        f"Output: {RECORD_FORMATS} (default: INPUT.captions.EXT, or for a shard "
        "INPUT.captions.shard-I-of-N.EXT); its folder is created if needed.",
        JOB,
        flags=("--output", "-o"),
        metavar="FILE",
    ),
    Option(
        "storage_options",
        "Options for s3://, gs://, az://, hf:// URLs (input, videos, output), as a JSON object "
        'given to fsspec, e.g. \'{"endpoint_url": "http://localhost:9000"}\'; credentials are '
        "found as the storage library finds them (AWS_* variables, ~/.aws, ...).",
        JOB,
        metavar="JSON",
        cli_type=str,
    ),
    Option(
        "model",
        "Hugging Face model id or local folder, e.g. Qwen/Qwen2.5-VL-7B-Instruct.",
        MODEL,
        flags=("--model", "-m"),
        metavar="NAME|DIR",
        fingerprint=ALWAYS,
        run_requires=True,
    ),
    Option(
        "family",
        "Model family, for a checkpoint whose config.json does not name one vidcap knows "
        "(default: detected from config.json; the README lists the families).",
        MODEL,
        metavar="NAME",
    ),
    Option("backend", "The engine (default: vllm).", MODEL),
    Option("cache_dir", "Where hub models are downloaded (default: HF cache).", MODEL),
    Option("tensor_parallel_size", "GPUs to shard the model over (default: 1).", MODEL),
    Option(
        "data_parallel_size",
        "Engines on this node, each in its own process on its own "
        "--tensor-parallel-size GPUs; on CPU, each on its share of the cores (default: 1).",
        MODEL,
    ),
    Option(
        "executor",
        "Where engines and decoding run: local (this node), or ray (engines as Ray actors, "
        "decoding as Ray tasks, on the cluster of --ray-address) (default: local).",
        MODEL,
    ),
    Option(
        "ray_address",
        "The Ray cluster of --executor ray, e.g. ray://head:10001 or head:6379 "
        "(default: RAY_ADDRESS, else a local Ray started for the run).",
        MODEL,
        metavar="ADDRESS",
    ),
    Option(
        "gpu_memory_utilization",
        "Fraction of GPU memory vLLM may use; on vLLM's CPU build, of RAM for its KV cache (default: 0.9).",
        MODEL,
    ),
    # The context length bounds the default pixel budget, so it changes the frames too.
    Option(
        "max_model_len",
        "Longest prompt + caption in tokens (default: the model's); longer prompts fail per record.",
        MODEL,
        fingerprint=ALWAYS,
    ),
    Option("dtype", "Model dtype (default: auto).", MODEL),
    Option("enforce_eager", "Disable CUDA graphs (faster start, slower run).", MODEL),
    Option("trust_remote_code", "Allow model code from the hub.", MODEL),
    Option("device", "Device of the transformers backend (default: auto).", MODEL),
    # The fingerprint holds the template the run uses: from --prompt, --prompt-file or the default.
    Option(
        "prompt",
        "Prompt template; {field} is filled from each record, {{ }} are literal braces. "
        "(default: 'Please describe the video in detail.')",
        PROMPT,
        fingerprint=ALWAYS,
    ),
    Option("prompt_file", "Read the prompt template from this file.", PROMPT, metavar="FILE"),
    Option("system_prompt", "System prompt for every request.", PROMPT, fingerprint=ALWAYS),
    Option("input_video_key", "Field holding the video path(s) (default: video).", JOB, fingerprint=ALWAYS),
    Option(
        "conversation_key",
        "Field holding the conversation (default: conversation).",
        JOB,
        fingerprint=ALWAYS,
    ),
    Option("output_key", "Field the caption is written to (default: caption).", JOB, fingerprint=ALWAYS),
    Option("status_key", "Field for ok/error/skipped (default: status).", JOB, fingerprint=ALWAYS),
    Option("error_key", "Field for the error message (default: error).", JOB, fingerprint=ALWAYS),
    Option(
        "info_key",
        "Field for finish reason, token counts and quality flags (default: info).",
        JOB,
        fingerprint=ALWAYS,
    ),
    Option("id_key", "Unique record id field for resume (default: input position).", BATCH),
    Option(
        "temperature",
        f"Sampling temperature; 0 is greedy {_THE_MODELS}.",
        CAPTION_SAMPLING,
        fingerprint=ALWAYS,
    ),
    Option("top_p", f"Nucleus sampling, in (0, 1] {_THE_MODELS}.", CAPTION_SAMPLING, fingerprint=ALWAYS),
    Option(
        "top_k",
        f"Sample from the k likeliest tokens; 0 = off {_THE_MODELS}.",
        CAPTION_SAMPLING,
        fingerprint=ALWAYS,
    ),
    Option(
        "min_p",
        f"Drop tokens less likely than min-p x the likeliest's, in [0, 1] {_THE_MODELS}.",
        CAPTION_SAMPLING,
        fingerprint=ALWAYS,
    ),
    Option(
        "repetition_penalty",
        f"> 1 discourages tokens already in the prompt or caption {_THE_MODELS}.",
        CAPTION_SAMPLING,
        fingerprint=ALWAYS,
    ),
    Option(
        "presence_penalty",
        f"In [-2, 2]; > 0 discourages tokens already generated {_THE_MODELS}.",
        CAPTION_SAMPLING,
        fingerprint=ALWAYS,
    ),
    Option(
        "frequency_penalty",
        f"In [-2, 2]; > 0 discourages tokens by how often they occur {_THE_MODELS}.",
        CAPTION_SAMPLING,
        fingerprint=ALWAYS,
    ),
    Option(
        "max_tokens",
        "Longest caption in tokens (default: the model's, else 1024).",
        CAPTION_SAMPLING,
        fingerprint=ALWAYS,
    ),
    Option(
        "num_captions",
        "Captions per video; more than 1 stores a list (default: 1).",
        CAPTION_SAMPLING,
        fingerprint=ALWAYS,
    ),
    Option("seed", "Sampling seed, for repeatable runs.", CAPTION_SAMPLING, fingerprint=ALWAYS),
    _internal(
        "json_schema",
        "The schema of --json-schema, read from its file (structured captions).",
        fingerprint=ALWAYS,
    ),
    # The file's content is in the fingerprint (json_schema), not its path.
    Option(
        "json_schema_file",
        "JSON Schema file: captions are generated as JSON objects that validate against it.",
        PROMPT,
        flags=("--json-schema",),
        metavar="FILE",
    ),
    # Windows change what is captioned, and the summary prompt what the caption says.
    Option(
        "window",
        "Caption each video in consecutive windows of this many seconds (a tail shorter "
        "than half a window joins the last one), written to a 'windows' field: start, end, "
        "caption, status, info per window.",
        WINDOWS,
        metavar="SECONDS",
        fingerprint=WHEN_SET,
    ),
    Option(
        "summary_prompt",
        "With --window: a text-only pass over the windows' captions (each prefixed with "
        "its time range) writes one whole-video caption to the output key.",
        WINDOWS,
        metavar="TEXT",
        fingerprint=WHEN_SET,
    ),
    # A text pass sends no frames: its output is not a video run's.
    Option(
        "no_video",
        "A text-only pass (e.g. refining captions with a text model): the prompt is filled "
        "from each record's fields ({caption}, {windows}, a JSON caption's fields) and sent "
        "without video; status/error/info go to OUTPUT_KEY_status, _error, _info unless given.",
        PROMPT,
        flags=("--no-video",),
        fingerprint=WHEN_SET,
    ),
    _internal(
        "prompt_first",
        "The template is every record's prompt, even where its conversation has a human turn "
        "(the Python API's prompt_template).",
        fingerprint=WHEN_SET,
    ),
    # --fail-on and --retries change statuses and captions.
    Option(
        "fail_on",
        "Quality flags that make a caption an error, e.g. truncated,repetition,duplicate; "
        "the text is kept in OUTPUT_KEY_raw (default: none).",
        JOB,
        metavar="FLAGS",
        cli_type=str,
        fingerprint=WHEN_SET,
    ),
    Option(
        "retries",
        "Try a caption that --fail-on fails again, with a new seed, up to N times (default: 0).",
        JOB,
        fingerprint=WHEN_SET,
    ),
    Option(
        "fps",
        "Frames sampled per second of video (default: 2.0).",
        SAMPLING,
        fingerprint=ALWAYS,
    ),
    Option(
        "nframes",
        "Sample exactly this many frames per video (instead of --fps).",
        SAMPLING,
        fingerprint=ALWAYS,
    ),
    Option(
        "min_frames",
        "At least this many frames (default: 4).",
        SAMPLING,
        fingerprint=ALWAYS,
    ),
    Option(
        "max_frames",
        "At most this many frames (default: 768).",
        SAMPLING,
        fingerprint=ALWAYS,
    ),
    Option(
        "min_pixels",
        "Minimum pixels per frame (default: 128 x factor^2).",
        SAMPLING,
        fingerprint=ALWAYS,
    ),
    Option(
        "max_pixels",
        "Maximum pixels per frame (default: 768 x factor^2).",
        SAMPLING,
        fingerprint=ALWAYS,
    ),
    Option(
        "total_pixels",
        "Pixel budget for all frames of a video (default: 128000 x factor^2 x 0.9).",
        SAMPLING,
        fingerprint=ALWAYS,
    ),
    _config_only(
        "image_factor",
        "Pixels per side of a merged patch: frame sizes are multiples of it.",
        fingerprint=ALWAYS,
    ),
    _config_only(
        "temporal_patch_size",
        "Frames per temporal patch: frame counts are multiples of it.",
        fingerprint=ALWAYS,
    ),
    _config_only(
        "model_seq_len", "The context length the default --total-pixels budget is cut to.", fingerprint=ALWAYS
    ),
    Option(
        "batch_size",
        "Records per flushed write (at least every 5 s too); the engines without a scheduler "
        "(transformers, openai) generate this many at a time (default: 32).",
        BATCH,
    ),
    Option(
        "max_in_flight",
        "Requests kept in the engine at once; each enters as soon as its frames are decoded "
        "(default: vLLM's max_num_seqs plus one batch; --batch-size for the other backends).",
        BATCH,
    ),
    Option(
        "overwrite",
        "Start over instead of resuming from records already in the output; the old output "
        "stays until the new run has written its first batch.",
        BATCH,
    ),
    Option("shard_index", "This shard's index (default: from SLURM_ARRAY_TASK_ID, or 0).", BATCH),
    Option("num_shards", "Number of shards (default: SLURM_ARRAY_TASK_COUNT or 1).", BATCH),
    Option(
        "on_bad_line",
        "A line that is not a record: stop before any work, or report and skip it (default: error).",
        JOB,
    ),
    Option(
        "on_missing_video",
        "A video file missing or unreadable before the model loads: record (that record "
        "fails, the run goes on) or error (stop before loading the model) (default: record).",
        JOB,
    ),
    Option("decode_workers", "Decode processes (default: from the CPU count); 0 decodes in-process.", BATCH),
    Option(
        "decode_timeout", "Seconds before a hung decode is killed; that record fails (default: 300).", BATCH
    ),
    _config_only("decode_threads", "Threads of each decode process (default: 2)."),
    Option("api_base", "Server URL, e.g. http://127.0.0.1:8000/v1.", SERVER),
    Option("api_key_env", "Environment variable holding the API key (default: OPENAI_API_KEY).", SERVER),
    Option("concurrency", "Requests in flight at once (default: 8).", SERVER),
    _config_only("request_timeout", "Seconds before a request to the server is given up (default: 600)."),
    _config_only("max_retries", "Tries again of a failed request to the server, with backoff (default: 5)."),
    _config_only(
        "engine_kwargs", "The config file's [engine_kwargs] table: more arguments of vllm.LLM(...)."
    ),
    _internal(
        "video_root",
        "The folder relative video paths start from (None: the input file's folder; the Python API: "
        "the current directory).",
    ),
)

#: The rows by key.
BY_KEY: dict[str, Option] = {option.key: option for option in OPTIONS}
