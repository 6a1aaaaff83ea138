"""Run configuration: one flat set of keys shared by CLI flags and ``--config FILE.toml``.

Every key of a config file is a flag name with ``_`` for ``-`` (``max_model_len = 32768``
is ``--max-model-len 32768``); flags given on the command line override the file. The
flat keys are spread over four small option groups: ``RunOptions`` (the job),
``EngineConfig`` (loading the model), ``GenerationOptions`` (sampling) and
``SamplingOptions`` (which frames, at what size). A field of these groups is an option (its type
and default) when the table of run options (``vidcap.option_table``) has a row for it; the row
says whether a config file may set it.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from vidcap.errors import VidcapError
from vidcap.generation import GenerationOptions, sampling_problem
from vidcap.option_table import BY_KEY
from vidcap.video.types import SamplingOptions

DEFAULT_PROMPT = "Please describe the video in detail."
#: The quality flags ``--fail-on`` may name (``empty`` is always an error).
FAILABLE_FLAGS = ("truncated", "repetition", "duplicate")
Backend = Literal["vllm", "transformers", "openai"]


@dataclass(frozen=True)
class EngineConfig:
    """How to load the model; vLLM names where one exists."""

    model: str = ""
    # The model family (vidcap.families) when config.json does not say; None: detected from it.
    family: str | None = None
    backend: Backend = "vllm"
    cache_dir: str | None = None
    tensor_parallel_size: int = 1
    # Engines on this node, one per group of tensor_parallel_size GPUs (executors/data_parallel.py).
    data_parallel_size: int = 1
    # How the engines and the decoding run: "local" (this node), or "ray" (engines as Ray actors and
    # decoding as Ray tasks on the cluster at ray_address, else RAY_ADDRESS, else a local Ray).
    executor: Literal["local", "ray"] = "local"
    ray_address: str | None = None
    max_model_len: int | None = None
    gpu_memory_utilization: float = 0.9
    dtype: str = "auto"
    enforce_eager: bool = False
    trust_remote_code: bool = False
    # transformers backend
    device: Literal["cpu", "cuda", "auto"] = "auto"
    # openai backend
    api_base: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    concurrency: int = 8
    request_timeout: float = 600.0
    max_retries: int = 5
    # Anything else for vllm.LLM(...), from the config file's [engine_kwargs] table.
    engine_kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RunOptions:
    """What to caption and where the results go."""

    input: str = ""
    output: str | None = None
    prompt: str | None = None
    prompt_file: str | None = None
    system_prompt: str | None = None
    input_video_key: str = "video"
    conversation_key: str = "conversation"
    output_key: str = "caption"
    status_key: str = "status"
    error_key: str = "error"
    info_key: str = "info"
    # Quality flags that make a caption an error (raw text kept), and how often such a record is
    # tried again with a new seed first (pipeline/assess.py).
    fail_on: tuple[str, ...] = ()
    retries: int = 0
    id_key: str | None = None
    batch_size: int = 32
    # Requests the feed keeps in the engine at once; None: the engine's own default
    # (CaptionEngine.max_in_flight: vLLM's max_num_seqs plus a batch, else one batch).
    max_in_flight: int | None = None
    overwrite: bool = False
    shard_index: int | None = None
    num_shards: int | None = None
    on_bad_line: Literal["error", "skip"] = "error"
    on_missing_video: Literal["record", "error"] = "record"
    decode_workers: int | None = None
    decode_timeout: float = 300.0
    decode_threads: int = 2
    json_schema_file: str | None = None
    # Timed windows of long videos (pipeline/windowed.py): their length in seconds, and the prompt
    # of the text-only pass that turns the windows' captions into one whole-video caption.
    window: float | None = None
    summary_prompt: str | None = None
    # A text-only pass (--no-video): the prompt is filled from each record's fields (its caption,
    # windows, a JSON caption's fields) and sent without any video (pipeline/text_pass.py).
    no_video: bool = False
    # The template is every record's prompt, even where its conversation has a human turn (DataFlow's
    # PromptedVQAGenerator with a prompt_template: the template replaces that turn's text).
    prompt_first: bool = False
    # The folder relative video paths start from: the input file's folder when None (the CLI);
    # the current directory for the Python API, as in DataFlow.
    video_root: str | None = None
    # fsspec options for object-store URLs (--storage-options JSON, or a [storage_options] table):
    # endpoints, profiles; credentials come from where each storage library finds them (io/staging.py).
    storage_options: str | dict | None = None


@dataclass(frozen=True)
class RunConfig:
    """Everything one run needs, grouped."""

    run: RunOptions = field(default_factory=RunOptions)
    engine: EngineConfig = field(default_factory=EngineConfig)
    generation: GenerationOptions = field(default_factory=GenerationOptions)
    sampling: SamplingOptions = field(default_factory=SamplingOptions)


_GROUPS: dict[str, type] = {
    "run": RunOptions,
    "engine": EngineConfig,
    "generation": GenerationOptions,
    "sampling": SamplingOptions,
}
#: Fields set from the model, not options: the family the frames are planned for, its frame size.
DERIVED = {("sampling", "family"), ("sampling", "frame_size"), ("sampling", "frame_tokens")}
#: The option group of each option of the table (vidcap.option_table): the group with its field.
OPTION_GROUP: dict[str, str] = {
    key: next(
        group
        for group, cls in _GROUPS.items()
        if key in {f.name for f in dataclasses.fields(cls)} and (group, key) not in DERIVED
    )
    for key in BY_KEY
}
#: The config keys (a file's keys, build_config's flags) and their groups.
KEY_GROUP: dict[str, str] = {key: OPTION_GROUP[key] for key, option in BY_KEY.items() if option.config}


def option_type(key: str) -> Any:
    """The type of option ``key``: its field's, in the group that holds it."""
    return _field_types(OPTION_GROUP[key])[key]


@functools.cache
def _field_types(group: str) -> dict[str, Any]:
    return typing.get_type_hints(_GROUPS[group])


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a TOML config file into flat keys; unknown keys are an error with a suggestion."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise VidcapError(f"config file not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise VidcapError(f"{path}: invalid TOML: {exc}") from None
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = key.replace("-", "_")
        if name in ("engine_kwargs", "storage_options") and isinstance(value, dict):
            flat[name] = value
        elif isinstance(value, dict):
            raise VidcapError(f"{path}: unexpected table [{key}]; only [engine_kwargs] is a table")
        else:
            flat[name] = value
    _check_keys(flat, source=str(path))
    return flat


# Alternatives for one setting: a flag for either replaces the config file's value for both
# (a file's `fps` does not clash with `--nframes` on the command line).
ALTERNATIVES = (("prompt", "prompt_file"), ("fps", "nframes"))


def build_config(file_values: dict[str, Any], flag_values: dict[str, Any]) -> RunConfig:
    """Merge file values and flags (flags win; a flag left as None is 'not given')."""
    flags = {k: v for k, v in flag_values.items() if v is not None}
    merged = dict(file_values)
    for group in ALTERNATIVES:
        if any(key in flags for key in group):
            for key in group:
                merged.pop(key, None)
    merged.update(flags)
    _check_keys(merged, source="options")
    if merged.get("no_video"):
        # A second pass over vidcap's own output: its status, error and info fields are named after
        # its output key, so that they do not clash with the first pass's (unless given).
        output_key = merged.get("output_key", RunOptions.output_key)
        for name in ("status", "error", "info"):
            merged.setdefault(f"{name}_key", f"{output_key}_{name}")
    if "fail_on" in merged:
        merged["fail_on"] = parse_flag_list(merged["fail_on"])
    groups: dict[str, dict[str, Any]] = {name: {} for name in _GROUPS}
    for key, value in merged.items():
        groups[KEY_GROUP[key]][key] = value
    try:
        config = RunConfig(**{name: _GROUPS[name](**values) for name, values in groups.items()})
    except TypeError as exc:  # pragma: no cover - keys are checked above
        raise VidcapError(f"invalid options: {exc}") from None
    validate(config)
    return config


def validate(config: RunConfig) -> None:
    """Reject option values that cannot work, with the flag name in the message."""
    s, g, r, e = config.sampling, config.generation, config.run, config.engine
    if s.fps is not None and s.nframes is not None:
        raise VidcapError("--fps and --nframes are exclusive; give one")
    checks = [
        (s.fps is None or s.fps > 0, "--fps must be > 0"),
        (s.nframes is None or s.nframes >= 2, "--nframes must be >= 2"),
        (s.min_frames >= 1 and s.max_frames >= s.min_frames, "need 1 <= --min-frames <= --max-frames"),
        (r.batch_size >= 1, "--batch-size must be >= 1"),
        (r.max_in_flight is None or r.max_in_flight >= 1, "--max-in-flight must be >= 1"),
        (r.decode_timeout > 0, "--decode-timeout must be > 0"),
        (0 < e.gpu_memory_utilization <= 1, "--gpu-memory-utilization must be in (0, 1]"),
        (e.tensor_parallel_size >= 1, "--tensor-parallel-size must be >= 1"),
        (e.data_parallel_size >= 1, "--data-parallel-size must be >= 1"),
        (
            e.data_parallel_size == 1 or e.backend != "openai",
            "--data-parallel-size runs local engines; with --backend openai, run more server "
            "replicas behind --api-base and raise --concurrency",
        ),
        (e.executor in ("local", "ray"), "--executor must be local or ray"),
        (
            e.executor == "local" or e.backend != "openai",
            "--executor ray runs engines on the cluster; with "
            "--backend openai, the server does the work: use --executor local",
        ),
        (e.backend in ("vllm", "transformers", "openai"), "--backend must be vllm, transformers or openai"),
        (r.on_bad_line in ("error", "skip"), "--on-bad-line must be error or skip"),
        (r.on_missing_video in ("record", "error"), "--on-missing-video must be record or error"),
        (r.window is None or (math.isfinite(r.window) and r.window > 0), "--window must be > 0 seconds"),
        (r.summary_prompt is None or r.window is not None, "--summary-prompt needs --window"),
        (r.summary_prompt is None or bool(r.summary_prompt.strip()), "--summary-prompt is empty"),
        (not (r.no_video and r.window is not None), "--no-video sends no video: it cannot take --window"),
        (
            not r.no_video or r.prompt is not None or r.prompt_file is not None,
            "--no-video needs --prompt or --prompt-file: the prompt that fills in each record's fields",
        ),
    ]
    for ok, message in checks:
        if not ok:
            raise VidcapError(message)
    unknown = [f for f in r.fail_on if f not in FAILABLE_FLAGS]
    if unknown:
        raise VidcapError(
            f"--fail-on: unknown flag {unknown[0]!r}; choose from {', '.join(FAILABLE_FLAGS)}"
            " (an empty caption is an error already)"
        )
    if r.retries < 0:
        raise VidcapError("--retries must be >= 0")
    if r.retries and not r.fail_on:
        raise VidcapError("--retries retries the captions --fail-on fails; give --fail-on too")
    if r.retries and g.temperature == 0:
        raise VidcapError("--retries draws a new sample: it needs --temperature > 0 (0 repeats the caption)")
    problem = sampling_problem(g)
    if problem is not None:
        raise VidcapError(problem)
    keys = [r.output_key, r.status_key, r.error_key, r.info_key]
    if len(set(keys)) != len(keys):
        raise VidcapError("--output-key, --status-key, --error-key and --info-key must be different names")
    if r.window is not None and "windows" in keys:
        raise VidcapError("with --window, no --*-key may be 'windows': that field holds the windows")


def needs_video_model(config: RunConfig) -> bool:
    """Whether the run sends videos, so its model must be of a video family: not with --no-video,
    which runs any text model (a model-family check before loading branches here)."""
    return not config.run.no_video


def parse_flag_list(value: Any) -> tuple[str, ...]:
    """``fail_on`` from a flag (``"truncated,repetition"``) or a config file (a string or a list)."""
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not all(isinstance(i, str) for i in items):
        raise VidcapError("fail_on must be a comma-separated string or a list of flag names")
    return tuple(dict.fromkeys(i.strip() for i in items if i.strip()))


def _check_keys(values: dict[str, Any], *, source: str) -> None:
    for key in values:
        if key not in KEY_GROUP:
            close = difflib.get_close_matches(key, KEY_GROUP, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise VidcapError(f"{source}: unknown key '{key}'{hint}")
