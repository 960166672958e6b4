"""The console scripts users run. Each installs lmk's signal handling *before* importing its
command (the import of numpy, OpenCV, ONNX Runtime or torch takes a moment, and Ctrl-C then
must still be one line, not a traceback), then runs it through :func:`lmk.core.cli_util.run_cli`.
"""

from __future__ import annotations

import importlib
import os
import signal
import sys
from collections.abc import Callable


def _quiet_interrupts(unraisable: sys.UnraisableHookArgs) -> None:
    """Python prints an interrupt it cannot raise (inside an import-lock callback) as
    "Exception ignored ... Traceback"; :func:`_launch` reports it as one line instead."""
    if not issubclass(unraisable.exc_type, KeyboardInterrupt):
        sys.__unraisablehook__(unraisable)


def _launch(module: str, command: str) -> None:
    received: list[int] = []

    def on_signal(signum: int, _frame: object) -> None:
        received.append(signum)
        raise KeyboardInterrupt

    # Nothing but the standard library is imported before these handlers: the window in which
    # a signal can still print a traceback is the interpreter's own start-up.
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    sys.unraisablehook = _quiet_interrupts
    try:
        from lmk.core import cli_util

        cmd = getattr(importlib.import_module(module), command)
    except KeyboardInterrupt:
        pass
    # ``received`` also catches a signal whose KeyboardInterrupt Python swallowed: one raised
    # inside an import-lock callback is printed as "Exception ignored" and the import goes on.
    if received:
        terminated = received[0] == signal.SIGTERM
        sys.stderr.write("error: terminated\n" if terminated else "error: interrupted\n")
        sys.exit(143 if terminated else 130)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    sys.unraisablehook = sys.__unraisablehook__
    code = cli_util.run_cli(cmd)  # installs lmk's own SIGTERM handling
    # The work is done and reported; a signal during the interpreter's shutdown only ends it.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: os._exit(code))
    sys.exit(code)


def _console_script(module: str, command: str) -> Callable[[], None]:
    """The function a ``[project.scripts]`` entry names: it launches ``module.command``."""

    def script() -> None:
        _launch(module, command)

    script.__doc__ = f"Run {module}.{command} as a console script."
    return script


lmk_run = _console_script("lmk.runtime.cli", "run_command")
lmk_export = _console_script("lmk.export.cli", "export_command")
lmk_synth = _console_script("lmk.synth.cli", "cli")
lmk_train = _console_script("lmk.train.cli", "train_command")
lmk_eval = _console_script("lmk.train.eval_cli", "eval_command")
lmk_bench = _console_script("lmk.bench.cli", "bench_command")
lmk = _console_script("lmk.demo", "lmk_group")
lmk_batch = _console_script("lmk.batch.cli", "batch_command")
