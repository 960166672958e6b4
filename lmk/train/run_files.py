"""The run folder and rank 0's files in it: ``best.pt``, ``last.pt``, ``last.state.pt``, ``log.jsonl``.

``last.pt`` and ``best.pt`` are lmk checkpoints (:meth:`Checkpoint.save`'s format) whose
provenance says how the run was made; ``last.state.pt`` is what ``--resume`` needs besides the
weights (:mod:`lmk.train.resume`); ``log.jsonl`` has one line per finished epoch. Each epoch's
files are written to temporary names and moved into place together, so they always agree.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import torch
from torch import nn

from lmk.checkpoint import Checkpoint
from lmk.core.errors import LmkError
from lmk.core.fileio import OutputSet
from lmk.core.geometry import CropPolicy
from lmk.core.layouts import Layout
from lmk.core.normalise import Normalisation
from lmk.models import ModelSpec
from lmk.train.interrupts import Interrupts
from lmk.train.resume import EpochTotals, Progress, Resume

RUN_FILES = ("best.pt", "last.pt", "last.state.pt", "log.jsonl")


def out_dir(out: Path | None, resume: Path | None) -> Path:
    """The run folder: ``--out``, or the folder of the run ``--resume`` continues."""
    out = out or (resume.parent if resume else None)
    if out is None:
        raise LmkError("--out DIR is required (or --resume DIR/last.pt)")
    return out


def check_out(out: Path, resume: Path | None, overwrite: bool) -> None:
    """Refuse to write over another run: a fresh run (or a resumed one moved to a new folder)
    needs a folder without run files unless --overwrite."""
    if out.exists() and not out.is_dir():
        raise LmkError(f"--out {out} exists and is not a folder")
    same_run = resume is not None and out.resolve() == resume.parent.resolve()
    if same_run or overwrite:
        return
    taken = [name for name in RUN_FILES if (out / name).exists()]
    if taken:
        raise LmkError(
            f"{out} already holds a run ({', '.join(taken)}); continue it with --resume "
            f"{out / 'last.pt'} or pass --overwrite to replace it"
        )


def earlier_log(resume: Resume | None) -> list[str]:
    """The log lines of the run ``resume`` continues (the log is rewritten whole each epoch)."""
    if resume is None:
        return []
    earlier = resume.path.parent / "log.jsonl"
    try:
        if earlier.is_file():
            return earlier.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise LmkError(f"cannot read {earlier}: {exc}") from None
    return []


@dataclass
class RunWriter:
    """Rank 0's writer of one run's files: checkpoints with the run's provenance, the
    training state beside ``last.pt``, and the log (``log_lines``: what it holds so far)."""

    out: Path
    model: nn.Module
    spec: ModelSpec
    layout: Layout
    normalisation: Normalisation
    crop: CropPolicy
    provenance: dict[str, Any]
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    log_lines: list[str]

    def checkpoint_file(
        self, epochs: int, step: int, extra: dict[str, Any]
    ) -> Callable[[BinaryIO], None]:
        info = {**self.provenance, "epochs": epochs, "step": step, **extra}
        ckpt = Checkpoint.from_model(
            self.model, self.spec, self.layout, self.normalisation, self.crop, info
        )
        return lambda fh: torch.save(ckpt.to_dict(), fh)

    def write_last(
        self,
        files: OutputSet,
        epochs: int,
        step: int,
        at_step: int,
        sums: EpochTotals,
        best: tuple[float | None, int | None],
        final: float | None,
        interrupted: bool,
    ) -> None:
        """last.state.pt and last.pt: ``epochs`` finished and ``at_step`` steps into the next
        (the optimizer step count is ``step``)."""
        payload = {
            "epoch": epochs,
            "step": step,
            "epoch_step": at_step,
            "epoch_totals": sums.to_dict(),
            "best_nme": best[0],
            "best_epoch": best[1],
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "interrupted": interrupted,
        }
        files.write(self.out / "last.state.pt", lambda fh: torch.save(payload, fh))
        extra = {
            "epoch_step": at_step,
            "best_nme": best[0],
            "best_epoch": best[1],
            "final_nme": final,
            "interrupted": interrupted,
        }
        files.write(self.out / "last.pt", self.checkpoint_file(epochs, step, extra))

    def write_epoch(
        self,
        files: OutputSet,
        record: dict[str, Any],
        is_best: bool,
        best: tuple[float | None, int | None],
        val_started: float,
    ) -> list[str]:
        """An epoch's files (``best.pt`` if it is the best, ``last.*``, the log with
        ``record``, whose ``seconds`` count the writing); returns the log's new lines."""
        epochs, step, nme_now = record["epoch"], record["step"], record["val"]["nme"]
        extra = {"best_nme": best[0], "best_epoch": best[1], "final_nme": nme_now}
        if is_best:
            files.write(self.out / "best.pt", self.checkpoint_file(epochs, step, extra))
        self.write_last(files, epochs, step, 0, EpochTotals(), best, nme_now, False)
        record["seconds"] = record["train_seconds"] + time.perf_counter() - val_started
        lines = [*self.log_lines, json.dumps(record)]
        text = "".join(f"{line}\n" for line in lines).encode()
        files.write(self.out / "log.jsonl", lambda fh: fh.write(text))
        return lines

    def save_interrupted(self, progress: Progress, steps: int, echo: Callable[[str], None]) -> None:
        """On Ctrl-C / SIGTERM: save where the run stands (a step boundary, see
        :class:`Interrupts`) unless last.pt already holds it, and say how to go on."""
        p = progress
        if p.saved_at == (p.completed, p.step) or (p.saved_at is None and p.step == 0):
            echo(
                "interrupted before the first training step; nothing saved"
                if p.saved_in is None
                else f"interrupted before a new training step; continue with --resume {p.saved_in}"
            )
            return
        # a second signal waits for the files (one inside torch.save would become its error)
        with OutputSet() as files, Interrupts() as again, again.held():
            self.write_last(
                files,
                p.completed,
                p.step,
                p.epoch_step,
                p.totals,
                (p.best_nme, p.best_epoch),
                p.final_nme,
                True,
            )
            files.commit()
        last = self.out / "last.pt"
        echo(
            f"interrupted in epoch {p.completed + 1} after step {p.epoch_step} of {steps}: saved "
            f"{last} (step {p.step}); continue with --resume {last}"
        )
