"""``--help`` layout: plain text that fits 80 columns, options grouped under headings.

Rich's help tables cut long flag names (``--tensor-parallel-…``) on an 80-column terminal;
click's plain layout never does. This keeps the plain layout and adds back the grouping the
options declare with ``rich_help_panel``, and prints epilogs (examples, exit codes) line by
line instead of re-flowing them.
"""

from __future__ import annotations

from typing import Any

import typer.core

EXIT_CODES = (
    "\n\nExit codes:\n"
    "  0    every record ok\n"
    "  1    some records failed (their 'error' field says why)\n"
    "  2    usage or input error: nothing was captioned\n"
    "  69   the engine could not start: nothing was captioned\n"
    "  70   internal error (a bug: traceback printed), every engine died mid-run\n"
    "       (--data-parallel-size), or failed while stopping\n"
    "  73   another run is writing this output: nothing done (already running)\n"
    "  75   stopped by SIGTERM or Ctrl-C after the current batch (rerun to resume)\n"
    "  130  stopped at once by a second Ctrl-C (rerun to resume)"
)
REQUIRED = "Required, here or in --config."


class GroupedCommand(typer.core.TyperCommand):
    """A command whose plain help lists arguments, then each option group under its heading."""

    def format_options(self, ctx: Any, formatter: Any) -> None:
        """Arguments first, then ungrouped options, then one section per help panel."""
        arguments: list[tuple[str, str]] = []
        groups: dict[str, list[tuple[str, str]]] = {"Options": []}
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is None:
                continue
            if param.param_type_name == "argument":
                arguments.append(record)
            else:
                groups.setdefault(getattr(param, "rich_help_panel", None) or "Options", []).append(record)
        if arguments:
            with formatter.section("Arguments"):
                formatter.write_dl(arguments)
        for title, rows in groups.items():
            if rows:
                with formatter.section(title):
                    formatter.write_dl(rows)

    def format_epilog(self, ctx: Any, formatter: Any) -> None:
        """The epilog as written: example commands must not be re-wrapped."""
        if self.epilog:
            formatter.write_paragraph()
            for line in self.epilog.strip("\n").splitlines():
                formatter.write(f"{' ' * formatter.current_indent}{line}\n" if line else "\n")
