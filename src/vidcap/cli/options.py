"""Typer options built from the table of run options (``vidcap.option_table``), and the few
options of the commands themselves (``--config``, ``--quiet``, ``--verbose``).

Every table option defaults to None, meaning "not given": the value then comes from ``--config``
or from the defaults in ``vidcap.config`` (stated in each help text).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable
from typing import Annotated, Any, TypeVar

import typer

from vidcap.cli.help import REQUIRED
from vidcap.config import OPTION_GROUP, build_config, load_config_file, option_type
from vidcap.option_table import MODEL, OPTIONS, RECORD_FORMATS, Option
from vidcap.video.types import SamplingOptions

__all__ = [
    "MODEL",
    "RECORD_FORMATS",
    "RUN_FLAGS",
    "SAMPLING_FLAGS",
    "Config",
    "Quiet",
    "Verbose",
    "typer_parameter",
    "with_options",
]

#: The frame sampling flags (run, probe and report take them all).
SAMPLING_FLAGS = tuple(o.key for o in OPTIONS if o.flag and OPTION_GROUP[o.key] == "sampling")
#: Every flag of the table: vidcap run takes them all.
RUN_FLAGS = tuple(o.key for o in OPTIONS if o.flag)
Command = TypeVar("Command", bound=Callable[..., Any])


def typer_parameter(option: Option, *, run: bool = False) -> inspect.Parameter:
    """The keyword parameter of a Typer command function that declares ``option``'s flag.

    ``run``: for vidcap run, whose help says which options it requires.
    """
    help_text = f"{option.help} {REQUIRED}" if run and option.run_requires else option.help
    declaration = typer.Option(
        *option.flags, help=help_text, metavar=option.metavar, rich_help_panel=option.panel
    )
    kind = (option.cli_type or option_type(option.key)) | None
    return inspect.Parameter(
        option.key, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Annotated[kind, declaration]
    )


def with_options(keys: Iterable[str], *, run: bool = False) -> Callable[[Command], Command]:
    """Add the table's options ``keys`` to a Typer command function, after its own parameters
    and in table order (the order of ``--help``); the function receives their values as one dict,
    its keyword-only parameter ``options`` (None for each option not given)."""
    wanted = set(keys)
    rows = [o for o in OPTIONS if o.key in wanted and o.flag]
    if len(rows) != len(wanted):  # a typo would drop a flag without a word
        raise ValueError(f"not flags of the option table: {sorted(wanted - {o.key for o in rows})}")

    def decorate(func: Command) -> Command:
        own = inspect.signature(func, eval_str=True)
        params = [p for p in own.parameters.values() if p.name != "options"]
        added = [typer_parameter(o, run=run) for o in rows]

        @functools.wraps(func)
        def command(**kwargs: Any) -> Any:
            options = {o.key: kwargs.pop(o.key) for o in rows}
            return func(**kwargs, options=options)

        # Typer reads the parameters from the signature (and the types from __annotations__).
        command.__signature__ = own.replace(parameters=[*params, *added])  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in [*params, *added]}
        return command  # type: ignore[return-value]

    return decorate


Config = Annotated[
    str | None,
    typer.Option(
        "--config",
        "-c",
        metavar="FILE",
        help="TOML file of options (keys are flag names with _); flags override it.",
    ),
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


def sampling_from(config_file: str | None, flags: dict[str, Any]) -> SamplingOptions:
    """SamplingOptions from an optional config file and the sampling flags (flags win)."""
    file_values = load_config_file(config_file) if config_file else {}
    keep = {k: v for k, v in file_values.items() if k in flags or k == "model"}
    return build_config(keep, flags).sampling
