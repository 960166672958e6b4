"""What a run saves so that ``--resume`` continues it exactly, and reading it back.

``last.pt`` is an lmk checkpoint whose provenance records the run's settings (:data:`RECORDED`);
``last.state.pt`` beside it holds the optimizer, schedule, step counters, the sums of a
partly done epoch and torch's RNG (read back with ``weights_only=True``). Restoring both
puts a resumed run at the very step boundary where the first one stopped.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from lmk.checkpoint import Checkpoint, load_checkpoint, not_a_checkpoint
from lmk.core.errors import LmkError
from lmk.train.data import DataSpec, parse_data_spec

RECORDED = (
    "data",
    "val_data",
    "val_fraction",
    "images",
    "flip",
    "train_size",
    "val_size",
    "steps_per_epoch",
    "batch_size",
    "lr",
    "lr_schedule",
    "weight_decay",
    "seed",
    "augment",
    "heatmap_loss",
    "sigma",
    "backbone_weights",
)
"""The :class:`TrainConfig` fields a run records in its checkpoints (provenance
``train_config``), beside the model, architecture, layout, normalisation and crop that every
checkpoint holds anyway. ``--resume`` takes all of them back; only ``epochs``, ``workers``,
``device``, ``cache`` and the output folder may change when a run is continued."""


def plain_setting(value: Any) -> Any:
    """A :class:`TrainConfig` value as plain JSON data, paths made absolute (a run resumes
    from any working folder)."""
    if isinstance(value, DataSpec):
        return value.kind if value.path is None else f"{value.kind}:{value.path.absolute()}"
    if isinstance(value, Path):
        return str(value.absolute())
    if isinstance(value, tuple):
        return list(value)
    return value


def _from_plain(key: str, value: Any) -> Any:
    if value is None:
        return None
    if key in ("data", "val_data"):
        return parse_data_spec(str(value))
    if key in ("images", "backbone_weights"):
        return Path(value)
    if key == "flip":
        return tuple(int(v) for v in value)
    return value


def run_settings(checkpoint: Checkpoint, path: Path) -> dict[str, Any]:
    """The :class:`TrainConfig` fields an ``lmk-train`` checkpoint fixes: model, architecture,
    layout and crop from the checkpoint itself, the rest of :data:`RECORDED` from its
    provenance (checkpoints written before it was recorded give only the former)."""
    settings: dict[str, Any] = {
        "model": checkpoint.spec.name,
        "model_args": {k: v for k, v in checkpoint.spec.args.items() if k != "num_lms"},
        "layout": checkpoint.layout.name,
        "crop": checkpoint.crop,
    }
    recorded = checkpoint.provenance.get("train_config")
    if recorded is None:
        return settings
    try:
        settings.update({k: _from_plain(k, recorded[k]) for k in RECORDED if k in recorded})
    except (AttributeError, LmkError, TypeError, ValueError):
        raise LmkError(f"cannot resume {path}: its recorded train_config is damaged") from None
    return settings


@dataclass
class Resume:
    """A run to continue: its last checkpoint and the training state saved beside it."""

    path: Path
    checkpoint: Checkpoint
    state: dict[str, Any]


STATE_KEYS = ("epoch", "step", "optimizer", "scheduler", "torch_rng")


def _describe(path: Path) -> str:
    """What a file that is no lmk-train archive is (``lmk.checkpoint`` names wrong files)."""
    return not_a_checkpoint(path) or "it is not a zip archive torch.save wrote"


def _archive_holds_lmk_checkpoint(path: Path) -> bool | None:
    """True/False: the zip archive's pickle does/does not name lmk's checkpoint format (read
    without unpickling); None: not a readable zip archive."""
    try:
        with zipfile.ZipFile(path) as archive:
            pickles = [n for n in archive.namelist() if n.endswith("/data.pkl")]
            return bool(pickles) and b"lmk.checkpoint" in archive.read(pickles[0])
    except (zipfile.BadZipFile, OSError, KeyError, EOFError):
        return None


def resume_checkpoint(path: Path) -> Checkpoint:
    """``--resume``'s checkpoint, checked before the run creates anything: a missing path,
    a folder, or a file lmk-train did not write (text, ONNX, empty, another PyTorch file) is
    one line saying what it is."""
    if path.is_dir():
        raise LmkError(f"--resume {path} is a folder; name the run's {path / 'last.pt'}")
    if not path.exists():
        raise LmkError(f"--resume {path}: no such file")
    if not path.is_file():
        raise LmkError(f"--resume {path} is not a regular file")
    holds = _archive_holds_lmk_checkpoint(path)
    if holds is None:
        raise LmkError(f"--resume {path} is not a checkpoint lmk-train wrote ({_describe(path)})")
    if not holds:
        raise LmkError(
            f"--resume {path} is a PyTorch file but not an lmk checkpoint; lmk-train resumes "
            "only the last.pt of its own runs"
        )
    return load_checkpoint(path)


def read_resume(path: Path) -> Resume:
    """The checkpoint and training state ``--resume`` continues from (both checked)."""
    checkpoint = resume_checkpoint(path)
    spath = state_path(path)
    if not spath.is_file():
        raise LmkError(f"cannot resume: {spath} (optimizer and schedule state) is missing")
    if _archive_holds_lmk_checkpoint(spath) is None:
        raise LmkError(f"cannot resume: {spath} is not lmk-train's state ({_describe(spath)})")
    try:
        state = torch.load(spath, map_location="cpu", weights_only=True)
    except Exception as exc:
        lines = str(exc).strip().splitlines()
        raise LmkError(
            f"cannot read {spath}: {lines[0] if lines else type(exc).__name__}"
        ) from None
    if not isinstance(state, dict) or any(k not in state for k in STATE_KEYS):
        raise LmkError(f"cannot resume: {spath} is not the training state lmk-train writes")
    if checkpoint.provenance.get("step") != state.get("step"):
        raise LmkError(f"{path} and {spath} are from different steps")
    return Resume(path, checkpoint, state)


def state_path(last: Path) -> Path:
    """``DIR/last.pt`` -> ``DIR/last.state.pt``."""
    return last.with_name(last.stem + ".state.pt")


@dataclass
class EpochTotals:
    """Sums over the finished steps of the epoch in progress, for its log record; saved with
    a mid-epoch interrupt so a resumed epoch's record covers the whole epoch."""

    samples: int = 0
    loss_sum: float = 0.0
    parts: dict[str, float] = field(default_factory=dict)
    wait: float = 0.0
    produce: float = 0.0
    compute: float = 0.0

    def add(self, n: int, loss: float, parts: dict[str, float], times: tuple[float, ...]) -> None:
        self.samples += n
        self.loss_sum += loss * n
        for k, v in parts.items():
            self.parts[k] = self.parts.get(k, 0.0) + v * n
        wait, produce, compute = times
        self.wait += wait
        self.produce += produce
        self.compute += compute

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    @classmethod
    def from_dict(cls, data: Any) -> EpochTotals:
        if not isinstance(data, dict):
            return cls()
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


@dataclass
class Progress:
    """Where a run stands: finished epochs, optimizer steps, steps into the next epoch and
    their sums, the best and latest validation NME, and the newest ``last.pt`` (an interrupt
    saves again only when the run moved on since)."""

    completed: int = 0
    step: int = 0
    epoch_step: int = 0
    totals: EpochTotals = field(default_factory=EpochTotals)
    best_nme: float | None = None
    best_epoch: int | None = None
    final_nme: float | None = None
    saved_at: tuple[int, int] | None = None
    """(completed, step) of the newest last.pt ..."""
    saved_in: Path | None = None
    """... and where it is."""


def restore_progress(
    resume: Resume,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    epochs: int,
    steps: int,
) -> Progress:
    """Load the optimizer, schedule and torch's RNG from ``resume`` and say where the run
    stands; refuse a run that has nothing left to do or whose epochs were longer."""
    state = resume.state
    try:
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise LmkError(
            f"cannot resume: {state_path(resume.path)} does not fit the model ({exc})"
        ) from None
    completed, step = int(state["epoch"]), int(state["step"])
    progress = Progress(
        completed=completed,
        step=step,
        epoch_step=int(state.get("epoch_step", 0)),
        totals=EpochTotals.from_dict(state.get("epoch_totals")),
        best_nme=state.get("best_nme"),
        best_epoch=state.get("best_epoch"),
        final_nme=resume.checkpoint.provenance.get("final_nme"),
        saved_at=(completed, step),
        saved_in=resume.path,
    )
    torch.set_rng_state(state["torch_rng"])
    if completed >= epochs:
        raise LmkError(
            f"{resume.path} has already trained {completed} epochs; ask for more with "
            f"--epochs (now {epochs})"
        )
    if progress.epoch_step > steps:
        raise LmkError(
            f"{resume.path} stopped {progress.epoch_step} steps into an epoch, but an epoch "
            f"here has {steps} steps"
        )
    return progress
