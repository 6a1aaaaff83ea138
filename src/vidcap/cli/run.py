"""``vidcap run``: caption a dataset file."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from vidcap.cli.options import RUN_FLAGS, Config, Quiet, Verbose, with_options
from vidcap.config import build_config, load_config_file
from vidcap.errors import VidcapError
from vidcap.executors.harness import execute

EPILOG = (
    "Examples:\n\n"
    "  vidcap run data.jsonl -o captions.jsonl -m Qwen/Qwen2.5-VL-7B-Instruct\n\n"
    "  vidcap run data.jsonl -c configs/qwen2.5-vl-7b.toml --prompt 'Describe {x}.'\n\n"
    "  sbatch --array=0-7 scripts/slurm_array.sbatch   # one shard per array task"
)


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
    sys.exit(execute(run_config, quiet=quiet, verbose=verbose, ending=True))
