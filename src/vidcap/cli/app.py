"""The ``vidcap`` command: assembles the sub-commands and turns user errors into one line.

Exit codes: 0 all records ok; 1 some records failed (see their ``error`` field); 2 usage or
input error (nothing was captioned); 69 the engine could not start; 73 another run holds the
output (nothing done); 75 interrupted by SIGTERM/SIGINT (rerun to resume); 70 internal error
(a bug: the traceback is printed), or an error while stopping; 130 stopped at once by a second
Ctrl-C. Every fatal error is one ``error: ...`` line on stderr.
"""

from __future__ import annotations

import os
import sys
import traceback

import typer

from vidcap.cli import clips, demo, merge, probe, report, run
from vidcap.cli.help import EXIT_CODES, GroupedCommand
from vidcap.errors import EXIT_INTERNAL, VidcapError
from vidcap.quiet import TerminalHandler, terminal_err
from vidcap.version import __version__

# click's base error class (bad option, bad value, missing argument). Typer 0.29 ships its own copy
# of click, which exports only BadParameter: the base is found from it, whichever click it is.
_CLICK_ERROR: type[Exception] = next(
    cls for cls in typer.BadParameter.__mro__ if cls.__name__ == "ClickException"
)

app = typer.Typer(
    name="vidcap",
    help="Caption videos with vision-language models, in batch, resumably.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Plain (click) help: it never cuts a flag name at 80 columns, as Rich's tables do.
    rich_markup_mode=None,
    epilog="\b\n" + EXIT_CODES.strip(),  # \b: click keeps the paragraph's lines as they are
)
app.command("run", epilog=run.EPILOG + EXIT_CODES, cls=GroupedCommand)(run.run_command)
app.command("probe", epilog=probe.EPILOG, cls=GroupedCommand)(probe.probe_command)
app.command("clips", epilog=clips.EPILOG, cls=GroupedCommand)(clips.clips_command)
app.command("merge", epilog=merge.EPILOG, cls=GroupedCommand)(merge.merge_command)
app.command("demo", epilog=demo.EPILOG, cls=GroupedCommand)(demo.demo_command)
app.command("report", epilog=report.EPILOG, cls=GroupedCommand)(report.report_command)


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
    """vidcap's own messages as ``vidcap: ...`` lines on the terminal (``vidcap: warning: ...``)."""
    import logging

    logger = logging.getLogger("vidcap")
    if not logger.handlers:
        logger.addHandler(TerminalHandler())
        logger.setLevel(logging.INFO)
        logger.propagate = False


def main() -> None:
    """Entry point: user errors print ``error: ...`` on stderr and exit with their code (2 for
    most); bugs keep their traceback.

    Set ``VIDCAP_DEBUG=1`` to see the traceback of user errors too.
    """
    _log_to_stderr()
    try:
        # Not standalone: click's own handling prints a usage error as four lines starting
        # "Error:"; vidcap's errors are one line in one format (usage_error_line).
        code = app(standalone_mode=False)
    except _CLICK_ERROR as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":
            exc.show()  # `vidcap` alone: the help, as click prints it
        else:
            print(usage_error_line(exc), file=terminal_err())
        sys.exit(exc.exit_code)
    except typer.Abort:
        print("vidcap: aborted", file=terminal_err())
        sys.exit(1)
    except VidcapError as exc:
        if os.environ.get("VIDCAP_DEBUG"):
            traceback.print_exc(file=terminal_err())
        print(f"error: {exc}", file=terminal_err())
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        print("vidcap: interrupted (a second Ctrl-C); rerun the same command to resume", file=terminal_err())
        sys.exit(130)
    except SystemExit:
        raise
    except Exception:
        traceback.print_exc(file=terminal_err())
        print("error: internal error (a bug); please report it with the traceback above", file=terminal_err())
        sys.exit(EXIT_INTERNAL)
    # A command's typer.Exit (and --help, --version) comes back as its exit code.
    sys.exit(code if isinstance(code, int) else 0)


def usage_error_line(exc: Exception) -> str:
    """A click error (unknown option, bad value, missing argument) as vidcap's one line:
    ``error: no such option: --modle (Possible options: --model) (try 'vidcap run --help')``."""
    message = " ".join(exc.format_message().split())  # type: ignore[attr-defined]
    line = f"error: {message[:1].lower()}{message[1:]}"
    ctx = getattr(exc, "ctx", None)
    if ctx is not None and ctx.command.get_help_option(ctx) is not None:
        line = f"{line.rstrip('.')} (try '{ctx.command_path} --help')"
    return line
