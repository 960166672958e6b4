"""Ctrl-C and SIGTERM during training: none lost, none landing inside a step or a file move.

The main process alone answers them (it saves where the run stands); DataLoader workers
ignore them, see :func:`worker_init`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader


class Interrupts:
    """Ctrl-C and SIGTERM during training, so that none is lost and none lands inside a step.

    While active, the handler notes the signal and raises at once as the handler it replaced
    would (KeyboardInterrupt, :class:`lmk.core.cli_util.Terminated`), except inside :meth:`held`
    blocks: a training step (the forward pass, which moves BatchNorm statistics, the backward
    pass, the optimizer and the schedule) or writing the run files and moving them into place,
    which then finish first. So the state an interrupt saves is a step boundary and
    ``--resume`` continues with the very next batch. A noted signal is raised again at the
    next :meth:`check` in case the first raise was swallowed (an exception in an at-fork
    hook, which starting DataLoader workers runs, is only reported as "Exception ignored", a
    report this class keeps quiet). Outside the main thread there is nothing to install."""

    def __init__(self) -> None:
        self.pending: list[int] = []
        self.holding = False
        self.previous: dict[int, Callable[[int, Any], Any]] = {}
        self.unraisable = sys.unraisablehook

    def __enter__(self) -> Interrupts:
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                handler = signal.getsignal(signum)
                if callable(handler):  # not SIG_DFL / SIG_IGN: those stay as they are
                    self.previous[signum] = handler
                    signal.signal(signum, self._note)
            self.unraisable, sys.unraisablehook = sys.unraisablehook, self._unraisable
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        if exc_type is None:
            self.check()  # noted, swallowed, and no check since
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)
        sys.unraisablehook = self.unraisable

    def start(self, loader: DataLoader) -> Iterator[Any]:
        """``iter(loader)``, held: an interrupt while it forks its workers would be swallowed
        by an at-fork hook or leave a half-made iterator whose ``__del__`` fails loudly.

        SIGTERM is also blocked in this thread while the workers fork, so each worker starts
        with it blocked: a group-wide SIGTERM landing between a worker's fork and
        :func:`worker_init` waits for that worker's SIGTERM thread instead of killing it
        (torch's worker handler ends the process on a SIGTERM from anyone but the parent,
        and the main process then fails with "DataLoader worker ... is killed by signal",
        from ``iter`` or later from the iterator's ``__del__``)."""
        block = hasattr(signal, "sigwaitinfo")
        block = block and threading.current_thread() is threading.main_thread()
        with self.held():
            mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM}) if block else None
            try:
                return iter(loader)
            finally:
                if mask is not None:  # a SIGTERM that came meanwhile is delivered, and noted, here
                    signal.pthread_sigmask(signal.SIG_SETMASK, mask)

    def _unraisable(self, info: Any) -> None:
        if not (self.pending and isinstance(info.exc_value, KeyboardInterrupt)):
            self.unraisable(info)

    def _note(self, signum: int, frame: Any) -> None:
        self.pending.append(signum)
        if not self.holding:
            self.check()

    def check(self) -> None:
        """Raise a noted signal's exception (once it is caught, the handlers go back)."""
        if self.pending:
            self.previous[self.pending[0]](self.pending[0], None)

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        self.holding = True
        try:
            yield
        finally:
            self.holding = False
        self.check()


def worker_init(_: int) -> None:
    """DataLoader worker set-up: one torch thread, and signals left to the main process."""
    # A worker is one core's worth of work. (OpenCV's own pool is left alone: calling
    # cv2.setNumThreads in a forked worker hangs when the parent has used that pool.)
    torch.set_num_threads(1)
    # Ctrl-C and SIGTERM reach the whole process group (a terminal, docker stop, systemd);
    # the main process alone answers them: it saves where the run stands and shuts its
    # workers down in order. (A worker killed by SIGTERM made the main process fail with
    # "DataLoader worker is killed by signal"; one interrupted while reading its queue printed
    # a traceback of its own.) SIGTERM from the main process itself (DataLoader's terminate(),
    # multiprocessing's exit hook) still ends the worker at once.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if hasattr(signal, "sigwaitinfo"):  # Linux; elsewhere SIGTERM keeps torch's handling
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})  # and later threads'
        threading.Thread(target=_end_on_sigterm_from, args=(os.getppid(),), daemon=True).start()


def _end_on_sigterm_from(parent: int) -> None:
    while True:
        if signal.sigwaitinfo({signal.SIGTERM}).si_pid == parent:
            os._exit(0)
