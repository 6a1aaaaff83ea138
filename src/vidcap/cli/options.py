"""Option declarations shared by several commands (one definition, one help text).

Every option defaults to None, meaning "not given": the value then comes from ``--config``
or from the defaults in ``vidcap.config`` (stated in each help text).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import typer

from vidcap.config import build_config, load_config_file
from vidcap.video.types import SamplingOptions

# Every record format's extensions, for help texts (a test keeps it equal to vidcap.io.formats, which
# is not imported here: `vidcap --help` stays instant).
RECORD_FORMATS = ".jsonl, .ndjson, .json (an array), .parquet or .csv"
SAMPLING = "Frame sampling"
MODEL = "Model and engine"
# Sampling values left unset come from the model's generation_config.json, as vLLM applies them.
CAPTION_SAMPLING = "Caption sampling (default: the model's generation_config.json)"

Fps = Annotated[
    float | None,
    typer.Option(
        "--fps", help="Frames sampled per second of video (default: 2.0).", rich_help_panel=SAMPLING
    ),
]
Nframes = Annotated[
    int | None,
    typer.Option(
        "--nframes",
        help="Sample exactly this many frames per video (instead of --fps).",
        rich_help_panel=SAMPLING,
    ),
]
MinFrames = Annotated[
    int | None,
    typer.Option("--min-frames", help="At least this many frames (default: 4).", rich_help_panel=SAMPLING),
]
MaxFrames = Annotated[
    int | None,
    typer.Option("--max-frames", help="At most this many frames (default: 768).", rich_help_panel=SAMPLING),
]
MinPixels = Annotated[
    int | None,
    typer.Option(
        "--min-pixels", help="Minimum pixels per frame (default: 128 x factor^2).", rich_help_panel=SAMPLING
    ),
]
MaxPixels = Annotated[
    int | None,
    typer.Option(
        "--max-pixels", help="Maximum pixels per frame (default: 768 x factor^2).", rich_help_panel=SAMPLING
    ),
]
TotalPixels = Annotated[
    int | None,
    typer.Option(
        "--total-pixels",
        help="Pixel budget for all frames of a video (default: 128000 x factor^2 x 0.9).",
        rich_help_panel=SAMPLING,
    ),
]
Model = Annotated[
    str | None,
    typer.Option(
        "--model",
        "-m",
        metavar="NAME|DIR",
        help="Hugging Face model id or local folder, e.g. Qwen/Qwen2.5-VL-7B-Instruct.",
        rich_help_panel=MODEL,
    ),
]
Config = Annotated[
    str | None,
    typer.Option(
        "--config",
        "-c",
        metavar="FILE",
        help="TOML file of options (keys are flag names with _); flags override it.",
    ),
]
Backend = Annotated[
    Literal["vllm", "transformers", "openai"] | None,
    typer.Option(help="The engine (default: vllm).", rich_help_panel=MODEL),
]
GpuMemoryUtilization = Annotated[
    float | None,
    typer.Option(
        help="Fraction of GPU memory vLLM may use; on vLLM's CPU build, of RAM for its KV cache "
        "(default: 0.9).",
        rich_help_panel=MODEL,
    ),
]
Family = Annotated[
    str | None,
    typer.Option(
        "--family",
        metavar="NAME",
        help="Model family, for a checkpoint whose config.json does not name one vidcap knows "
        "(default: detected from config.json; the README lists the families).",
        rich_help_panel=MODEL,
    ),
]
MaxModelLen = Annotated[
    int | None,
    typer.Option(
        help="Longest prompt + caption in tokens (default: the model's); longer prompts fail per record.",
        rich_help_panel=MODEL,
    ),
]
MaxTokens = Annotated[
    int | None,
    typer.Option(
        help="Longest caption in tokens (default: the model's, else 1024).", rich_help_panel=CAPTION_SAMPLING
    ),
]
DataParallelSize = Annotated[
    int | None,
    typer.Option(
        help="Engines on this node, each in its own process on its own "
        "--tensor-parallel-size GPUs; on CPU, each on its share of the cores (default: 1).",
        rich_help_panel=MODEL,
    ),
]
EnforceEager = Annotated[
    bool | None,
    typer.Option(help="Disable CUDA graphs (faster start, slower run).", rich_help_panel=MODEL),
]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress display.")]
Verbose = Annotated[
    bool,
    typer.Option(
        "--verbose",
        "-v",
        help="Show other libraries' messages (vLLM, torch, transformers) here instead of in OUTPUT.log.",
    ),
]


def sampling_values(
    fps: float | None,
    nframes: int | None,
    min_frames: int | None,
    max_frames: int | None,
    min_pixels: int | None,
    max_pixels: int | None,
    total_pixels: int | None,
) -> dict[str, Any]:
    """The sampling flags as config keys."""
    return {
        "fps": fps,
        "nframes": nframes,
        "min_frames": min_frames,
        "max_frames": max_frames,
        "min_pixels": min_pixels,
        "max_pixels": max_pixels,
        "total_pixels": total_pixels,
    }


def sampling_from(config_file: str | None, flags: dict[str, Any]) -> SamplingOptions:
    """SamplingOptions from an optional config file and the sampling flags (flags win)."""
    file_values = load_config_file(config_file) if config_file else {}
    keep = {k: v for k, v in file_values.items() if k in flags or k == "model"}
    return build_config(keep, flags).sampling
