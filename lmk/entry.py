"""The console scripts users run. Each installs lmk's signal handling *before* importing its
command (the import of numpy, OpenCV, ONNX Runtime or torch takes a moment, and Ctrl-C then
must still be one line, not a traceback), then runs it through :func:`lmk.cli_util.run_cli`.
"""

from __future__ import annotations

import importlib
import sys
from typing import NoReturn

from lmk.cli_util import install_signal_handlers, interrupted_exit, run_cli


def _launch(module: str, command: str) -> NoReturn:
    install_signal_handlers()
    try:
        cmd = getattr(importlib.import_module(module), command)
    except KeyboardInterrupt as exc:
        sys.exit(interrupted_exit(exc))
    sys.exit(run_cli(cmd))


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
