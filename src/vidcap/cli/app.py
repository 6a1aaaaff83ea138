"""The ``vidcap`` command: assembles the sub-commands and turns user errors into one line.

Exit codes: 0 all records ok; 1 some records failed (see their ``error`` field); 2 usage or
input error (nothing was captioned); 75 interrupted by SIGTERM/SIGINT (rerun to resume);
70 internal error (a bug: the traceback is printed).
"""

from __future__ import annotations

import os
import sys
import traceback

import typer

from vidcap import __version__
from vidcap.cli import demo, merge, probe_cli, report, run
from vidcap.errors import EXIT_INTERNAL, EXIT_USAGE, VidcapError

app = typer.Typer(
    name="vidcap",
    help="Caption videos with vision-language models, in batch, resumably.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)
app.command("run", epilog=run.EPILOG)(run.run_command)
app.command("probe", epilog=probe_cli.EPILOG)(probe_cli.probe_cli_command)
app.command("merge", epilog=merge.EPILOG)(merge.merge_command)
app.command("demo", epilog=demo.EPILOG)(demo.demo_command)
app.command("report", epilog=report.EPILOG)(report.report_command)


def _version(value: bool) -> None:
    if value:
        print(f"vidcap {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Caption videos with vision-language models, in batch, resumably."""


def _log_to_stderr() -> None:
    """vidcap's own warnings as ``vidcap: warning: ...`` lines on stderr (engine logs untouched)."""
    import logging

    logger = logging.getLogger("vidcap")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("vidcap: %(levelname)s: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False


def main() -> None:
    """Entry point: user errors print ``Error: ...`` on stderr and exit 2; bugs keep their traceback.

    Set ``VIDCAP_DEBUG=1`` to see the traceback of user errors too.
    """
    _log_to_stderr()
    try:
        app(standalone_mode=True)
    except VidcapError as exc:
        if os.environ.get("VIDCAP_DEBUG"):
            traceback.print_exc()
        print(f"Error: {exc}", file=sys.stderr)
        sys.exit(EXIT_USAGE)
    except KeyboardInterrupt:
        print("Interrupted.", file=sys.stderr)
        sys.exit(130)
    except SystemExit:
        raise
    except Exception:
        traceback.print_exc()
        print("vidcap: internal error (a bug); please report it with the traceback above.", file=sys.stderr)
        sys.exit(EXIT_INTERNAL)
