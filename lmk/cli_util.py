"""How every lmk command ends: a one-line ``error: ...`` and exit code 2 for bad input."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

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


def model_args(
    model: str,
    backbone: str | None,
    input_size: int | None,
    num_nb: int | None,
    net_stride: int | None,
    num_stacks: int | None,
    num_features: int | None,
) -> dict[str, Any]:
    """Constructor arguments from flags; a flag that does not apply to the model is an error."""
    given = {
        "--backbone": backbone,
        "--num-nb": num_nb,
        "--net-stride": net_stride,
        "--num-stacks": num_stacks,
        "--num-features": num_features,
    }
    applies = {
        "pipnet": ("--backbone", "--num-nb", "--net-stride"),
        "hourglass": ("--num-stacks", "--num-features"),
        "fan": ("--num-stacks",),
    }[model]
    wrong = [flag for flag, value in given.items() if value is not None and flag not in applies]
    if wrong:
        raise LmkError(f"{', '.join(wrong)} does not apply to --model {model}")
    args: dict[str, Any] = {"input_size": input_size or 256}
    if model == "pipnet":
        args.update(backbone=backbone or "resnet18", num_nb=num_nb, net_stride=net_stride)
    elif model == "hourglass":
        args.update(num_stacks=num_stacks, num_features=num_features)
    else:
        args["num_modules"] = num_stacks
    return {k: v for k, v in args.items() if v is not None}
