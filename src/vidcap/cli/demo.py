"""``vidcap demo``: the whole pipeline offline, on generated clips and a tiny random model."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Annotated, Literal

import typer

from vidcap.cli.options import MODEL, Quiet, Verbose

EPILOG = (
    "Examples:\n\n  vidcap demo --workdir ./vidcap-demo\n\n"
    "  vidcap demo --gpu-memory-utilization 0.05 --max-tokens 16"
)

NOISE_WARNING = (
    "These captions come from a tiny model with RANDOM weights: they are noise. They show that "
    "decoding, frame planning, the engine and the output all work on this machine, nothing about "
    "caption quality."
)
REAL_COMMAND = (
    "vidcap run {data} --output captions.jsonl --model Qwen/Qwen2.5-VL-7B-Instruct\n"
    "(needs a GPU with vLLM: pip install 'vidcap[vllm]', and network access to the Hugging Face hub once)"
)
REPORT_COMMAND = (
    "Look at the captions beside their frames (one HTML file that works offline):\n  vidcap report {output}"
)

# (file name, encoder, width, height, seconds, fps): a few containers and codecs.
_CLIPS = (
    ("street.mp4", "libx264", 320, 240, 3.0, 24),
    ("park.avi", "mpeg4", 256, 192, 2.0, 25),
    ("portrait.mp4", "libx264", 180, 320, 2.5, 30),
    ("wide.mkv", "libx264", 400, 160, 2.0, 15),
)


def demo_command(
    workdir: Annotated[
        Path, typer.Option(metavar="DIR", help="Where the model, clips and outputs go.")
    ] = Path("vidcap-demo"),
    backend: Annotated[
        Literal["vllm", "transformers"] | None,
        typer.Option(help="The engine (default: vllm if installed).", rich_help_panel=MODEL),
    ] = None,
    gpu_memory_utilization: Annotated[
        float,
        typer.Option(
            help="Fraction of GPU memory vLLM may use; on vLLM's CPU build, of RAM for its KV cache.",
            rich_help_panel=MODEL,
        ),
    ] = 0.1,
    max_model_len: Annotated[
        int, typer.Option(help="Longest prompt + caption in tokens.", rich_help_panel=MODEL)
    ] = 4096,
    max_tokens: Annotated[int, typer.Option(help="Longest caption in tokens.", rich_help_panel=MODEL)] = 24,
    enforce_eager: Annotated[
        bool, typer.Option(help="Disable CUDA graphs (faster start, slower run).", rich_help_panel=MODEL)
    ] = True,
    quiet: Quiet = False,
    verbose: Verbose = False,
) -> None:
    """Caption generated clips with a tiny random-weight model, offline (a smoke test of the install)."""
    from vidcap.config import build_config
    from vidcap.executors.harness import execute
    from vidcap.io.jsonio import dumps
    from vidcap.io.records import iter_records
    from vidcap.quiet import capture_output, log_path_for, terminal_err, terminal_out
    from vidcap.tiny_model import build_tiny_model
    from vidcap.video.synthetic import make_clip

    workdir.mkdir(parents=True, exist_ok=True)
    output = workdir / "captions.jsonl"
    model_dir = workdir / "tiny-qwen2.5-vl"
    if not (model_dir / "config.json").is_file():
        print(f"vidcap: building a tiny random-weight Qwen2.5-VL in {model_dir}", file=sys.stderr)
        with capture_output(log_path_for(output), enabled=not verbose):  # transformers' save bar
            build_tiny_model(model_dir)
    clips_dir = workdir / "clips"
    lines = []
    for number, (name, codec, width, height, seconds, fps) in enumerate(_CLIPS, start=1):
        if not (clips_dir / name).is_file():
            make_clip(clips_dir / name, codec=codec, width=width, height=height, seconds=seconds, fps=fps)
        record = {
            "id": f"{number:03d}",
            "video": [f"clips/{name}"],
            "conversation": [{"from": "human", "value": ""}],
        }
        lines.append(dumps(record))
    data = workdir / "data.jsonl"
    data.write_bytes(b"\n".join(lines) + b"\n")

    backend = backend or ("vllm" if importlib.util.find_spec("vllm") else "transformers")
    # The demo's defaults suit a 1 MB model (and leave the rest of the memory alone); the
    # flags change them as they do for `vidcap run`.
    engine_flags = {
        "max_model_len": max_model_len,
        "gpu_memory_utilization": gpu_memory_utilization,
        "enforce_eager": enforce_eager,
        "max_tokens": max_tokens,
    }
    config = build_config(
        {},
        {
            "input": str(data),
            "output": str(output),
            "model": str(model_dir),
            "backend": backend,
            "overwrite": True,
            **engine_flags,
            "seed": 0,
            "fps": 2.0,
            "max_pixels": 160 * 28 * 28,
            "id_key": "id",
        },
    )
    code = execute(config, quiet=quiet, verbose=verbose, ending=True)  # the command ends next
    # Through the terminal streams: the libraries' output stays in the log until the end.
    print(file=terminal_err())
    for record in iter_records(output):
        print(dumps(record.data).decode(), file=terminal_out())
    print(f"\n{NOISE_WARNING}\nFor real captions:\n  {REAL_COMMAND.format(data=data)}", file=terminal_err())
    print(REPORT_COMMAND.format(output=output), file=terminal_err())
    raise typer.Exit(code)
