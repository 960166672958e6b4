"""How every lmk command ends: a one-line ``error: ...`` and exit code 2 for bad input."""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any

import click

from lmk.errors import LmkError
from lmk.fileio import disk_full


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so every command cleans up the same way on both."""


_received: list[int] = []
"""Signals received since :func:`run_cli` started (see :func:`_on_signal`)."""


def _on_signal(signum: int, _frame: object) -> None:
    _received.append(signum)
    raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


def install_signal_handlers() -> None:
    """Ctrl-C and SIGTERM unwind alike (temporary files removed, finished outputs kept), and
    are remembered: a library that turns the interrupt into another error (ONNX Runtime's
    import cut short reads as "not installed") is still reported as an interruption."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _on_signal)
        signal.signal(signal.SIGTERM, _on_signal)


def _interrupt_line(terminated: bool) -> int:
    click.echo("error: terminated" if terminated else "error: interrupted", err=True)
    return 143 if terminated else 130


def interrupted_exit(exc: BaseException) -> int:
    """The one line and exit status for Ctrl-C (130) or SIGTERM (143). Inside a command
    click turns the interrupt into ``Abort`` raised *from* it, so the cause decides."""
    return _interrupt_line(isinstance(exc, Terminated) or isinstance(exc.__cause__, Terminated))


def run_cli(command: click.Command, args: Sequence[str] | None = None) -> int:
    """Run a click command the way every lmk command runs: user errors (flags, files,
    models, a full disk) print one ``error:`` line and return 2; Ctrl-C returns 130 and
    SIGTERM 143, each with one line; ``ctx.exit(N)`` returns N."""
    install_signal_handlers()
    _received.clear()
    try:
        result = command.main(args=list(args) if args is not None else None, standalone_mode=False)
    except (click.exceptions.Abort, KeyboardInterrupt) as exc:
        return interrupted_exit(exc)
    except (LmkError, click.ClickException, OSError) as exc:
        if _received:  # the error is the interruption's doing
            return _interrupt_line(_received[0] == signal.SIGTERM)
        if isinstance(exc, LmkError):
            click.echo(f"error: {exc}", err=True)
        elif isinstance(exc, click.ClickException):  # usage errors: bad flag values, arguments
            click.echo(f"error: {exc.format_message()}", err=True)
        elif disk_full(exc):
            click.echo(f"error: disk full ({exc.strerror})", err=True)
        else:
            raise
        return 2
    # Without standalone mode click returns ctx.exit(N)'s N instead of exiting.
    return result if isinstance(result, int) else 0


def exit_with(command: click.Command) -> None:
    sys.exit(run_cli(command))


FLAGS = {
    "input_size": "--input-size",
    "backbone": "--backbone",
    "num_nb": "--num-nb",
    "net_stride": "--net-stride",
    "num_stacks": "--num-stacks",
    "num_modules": "--num-stacks",
    "num_features": "--num-features",
}
"""The flag that sets each model argument (FAN's modules are ``--num-stacks``)."""


def model_args(
    model: str,
    backbone: str | None,
    input_size: int | None,
    num_nb: int | None,
    net_stride: int | None,
    num_stacks: int | None,
    num_features: int | None,
    num_lms: int | None = None,
) -> dict[str, Any]:
    """Constructor arguments from flags; a flag that does not apply to the model, or a value
    no model can be made of (``--input-size 0``, ``--num-nb 0``), is an error naming the flag,
    raised before any tracing or training. With ``num_lms`` (the layout's points) it is among
    the arguments and bounds ``--num-nb``."""
    from lmk.checkpoint import check_model_args  # torch: only once flags are parsed

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
        "faceapi68": (),
    }[model]
    wrong = [flag for flag, value in given.items() if value is not None and flag not in applies]
    if wrong:
        raise LmkError(f"{', '.join(wrong)} does not apply to --model {model}")
    default_size = 112 if model == "faceapi68" else 256  # faceapi68: fixed by its weights
    args: dict[str, Any] = {"input_size": default_size if input_size is None else input_size}
    if model == "faceapi68":
        if args["input_size"] != default_size:
            raise LmkError(f"--input-size: faceapi68 takes {default_size} px only")
    elif model == "pipnet":
        args.update(backbone=backbone or "resnet18", num_nb=num_nb, net_stride=net_stride)
    elif model == "hourglass":
        args.update(num_stacks=num_stacks, num_features=num_features)
    else:
        args["num_modules"] = num_stacks
    args["num_lms"] = num_lms
    args = {k: v for k, v in args.items() if v is not None}
    check_model_args(model, args, label=lambda key: FLAGS.get(key, key))
    return args
