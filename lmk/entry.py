"""The console scripts users run. Each installs lmk's signal handling *before* importing its
command (the import of numpy, OpenCV, ONNX Runtime or torch takes a moment, and Ctrl-C then
must still be one line, not a traceback), then runs it through :func:`lmk.cli_util.run_cli`.
"""

from __future__ import annotations

import importlib
import os
import signal
import sys
from typing import NoReturn


def _launch(module: str, command: str) -> NoReturn:
    # Nothing but the standard library is imported before this try: the window in which
    # Ctrl-C can still print a traceback is the interpreter's own start-up.
    try:
        from lmk import cli_util

        cli_util.install_signal_handlers()
        cmd = getattr(importlib.import_module(module), command)
    except KeyboardInterrupt as exc:
        # SIGTERM arrives as cli_util.Terminated once its handler is installed.
        util = sys.modules.get("lmk.cli_util")
        if util is not None and isinstance(exc, getattr(util, "Terminated", ())):
            sys.stderr.write("error: terminated\n")
            sys.exit(143)
        sys.stderr.write("error: interrupted\n")
        sys.exit(130)
    code = cli_util.run_cli(cmd)
    # The work is done and reported; a signal during the interpreter's shutdown only ends it.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: os._exit(code))
    sys.exit(code)


def lmk_run() -> NoReturn:
    _launch("lmk.runtime.cli", "run_command")


def lmk_export() -> NoReturn:
    _launch("lmk.export.cli", "export_command")


def lmk_synth() -> NoReturn:
    _launch("lmk.synth.cli", "cli")


def lmk_train() -> NoReturn:
    _launch("lmk.train.cli", "train_command")


def lmk_eval() -> NoReturn:
    _launch("lmk.train.eval_cli", "eval_command")


def lmk_bench() -> NoReturn:
    _launch("lmk.bench.cli", "bench_command")


def lmk() -> NoReturn:
    _launch("lmk.demo", "lmk_group")
