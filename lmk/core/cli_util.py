"""How every lmk command ends: a one-line ``error: ...`` and exit code 2 for bad input."""

from __future__ import annotations

import functools
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any

import click

from lmk.core.errors import LmkError
from lmk.core.fileio import disk_full


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


def stdout_closed(what: str) -> LmkError:
    """The error for a reader of standard output that left (``| head``) before ``what`` was
    written. Standard output is pointed at /dev/null first: Python's flush of it at exit
    would fail again and print a traceback."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.close(devnull)
    return LmkError(f"standard output was closed before {what}")


def option_group(
    name: str, options: Sequence[Callable], pack: Callable[..., Any] = dict
) -> Callable[[Callable], Callable]:
    """A decorator that adds ``options`` (``click.option(...)`` decorators) to a command, in
    their listed order, and hands their values to it as ONE argument, ``name`` =
    ``pack(**values)``. Commands that share a group of flags then share its definition, its
    help and the code that reads it, instead of each repeating the parameters."""
    names = option_names(options)

    def decorate(command: Callable) -> Callable:
        @functools.wraps(command)
        def with_group(*args: Any, **kwargs: Any) -> Any:
            group = pack(**{key: kwargs.pop(key) for key in names})
            return command(*args, **{name: group}, **kwargs)

        return _with_options(with_group, options)

    return decorate


def option_names(options: Sequence[Callable]) -> list[str]:
    """The parameter names ``options`` (``click.option(...)`` decorators) give a command."""
    probe = _with_options(lambda: None, options)
    return [param.name for param in probe.__click_params__]  # type: ignore[attr-defined]


def _with_options(function: Callable, options: Sequence[Callable]) -> Callable:
    for option in reversed(options):  # decorators apply bottom-up; click lists them top-down
        function = option(function)
    return function
