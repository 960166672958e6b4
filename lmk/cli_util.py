"""How every lmk command ends: a one-line ``error: ...`` and exit code 2 for bad input."""

from __future__ import annotations

import sys
from collections.abc import Sequence

import click

from lmk.errors import LmkError


def run_cli(command: click.Command, args: Sequence[str] | None = None) -> int:
    """Run a click command; user errors (flags, files, models) print one line and return 2."""
    try:
        command.main(args=list(args) if args is not None else None, standalone_mode=False)
    except LmkError as exc:
        click.echo(f"error: {exc}", err=True)
        return 2
    except click.exceptions.Abort:
        click.echo("error: interrupted", err=True)
        return 130
    except click.ClickException as exc:  # usage errors: bad flag values, missing arguments
        click.echo(f"error: {exc.format_message()}", err=True)
        return 2
    return 0


def exit_with(command: click.Command) -> None:
    sys.exit(run_cli(command))
