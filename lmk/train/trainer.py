"""The training loop behind ``lmk-train``: single process or DistributedDataParallel.

Run under ``torchrun`` (RANK / WORLD_SIZE set) it joins a process group (gloo on the CPU, nccl
on CUDA); every rank trains on its DistributedSampler shard, rank 0 alone validates, writes
files and shows progress. Buffers (BatchNorm statistics) are broadcast from rank 0 after every
epoch, so every rank ends an epoch with exactly the weights rank 0 saves.

Files in ``out``: ``last.pt`` and ``best.pt`` (lmk checkpoints, :meth:`Checkpoint.save`),
``last.state.pt`` (optimizer, scheduler, epoch, RNG: what ``--resume`` needs besides the
weights; read back with ``weights_only=True``) and ``log.jsonl`` (one line per epoch).
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import math
import os
import shlex
import signal
import sys
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import click
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import BatchSampler, DataLoader, DistributedSampler, Sampler
from tqdm import tqdm

from lmk.augment import AugmentConfig
from lmk.checkpoint import Checkpoint, load_checkpoint, not_a_checkpoint
from lmk.core.errors import LmkError
from lmk.core.fileio import OutputSet, output_folder
from lmk.core.geometry import CropPolicy
from lmk.core.layouts import Layout
from lmk.core.normalise import Normalisation
from lmk.models import ModelSpec, get_family
from lmk.models.backbones import imagenet_state_dict, load_backbone_weights
from lmk.train.data import (
    DataSpec,
    LandmarkDataset,
    build_sources,
    data_layout,
    parse_data_spec,
)
from lmk.train.engine import (
    Objective,
    collect,
    loader_batches,
    loader_error,
    score,
    torch_predictor,
)

RUN_FILES = ("best.pt", "last.pt", "last.state.pt", "log.jsonl")
HASH_ENV = "LMK_TRAIN_STATE_HASH_DIR"
"""When set, every rank writes ``rank<R>.sha256`` of its final state_dict there (tests)."""


@dataclass
class TrainConfig:
    """Everything a run depends on; ``lmk-train``'s flags map one to one onto it."""

    model: str = "pipnet"
    model_args: dict[str, Any] = field(default_factory=dict)
    data: DataSpec = field(default_factory=lambda: DataSpec("synth"))
    layout: str | None = None
    val_data: DataSpec | None = None
    val_fraction: float = 0.1
    images: Path | None = None
    flip: tuple[int, ...] | None = None
    train_size: int | None = None
    val_size: int | None = None
    epochs: int = 60
    steps_per_epoch: int | None = None
    batch_size: int = 16
    lr: float = 1e-4
    lr_schedule: str = "cosine"
    weight_decay: float = 0.0
    workers: int = 2
    seed: int = 0
    device: str | None = None
    backbone_weights: Path | None = None
    augment: bool = True
    cache: bool = False
    heatmap_loss: str = "mse"
    sigma: float = 1.5
    crop: CropPolicy = field(default_factory=CropPolicy)
    out: Path | None = None
    resume: Path | None = None
    overwrite: bool = False
    command: str = "lmk-train"


# ---- distributed set-up ----------------------------------------------------------------------


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1


def dist_from_env() -> Dist:
    """Rank and world size from torchrun's environment (1 process when unset)."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError:
        raise LmkError("RANK / WORLD_SIZE / LOCAL_RANK must be integers") from None
    return Dist(rank, world, local)


def pick_device(name: str | None, ddp: Dist) -> torch.device:
    if name is None:
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise LmkError("--device cuda: no CUDA device is available to torch here")
        return torch.device("cuda", ddp.local_rank % torch.cuda.device_count())
    if name != "cpu":
        raise LmkError(f"--device must be cpu or cuda, got {name!r}")
    return torch.device("cpu")


def set_threads(device: torch.device, ddp: Dist) -> None:
    """Share the CPU between ranks: cores / local ranks torch threads each (1 on 2 cores x 2)."""
    if ddp.active and device.type == "cpu":
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(ddp.world)))
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        torch.set_num_threads(max(1, (cores or 1) // max(1, local_world)))


def _worker_init(_: int) -> None:
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


# ---- schedule, state ---------------------------------------------------------------------------


def lr_lambda(schedule: str, total_steps: int) -> Callable[[int], float]:
    """Per-step multiplier: cosine to 0 over the run, or x0.1 at 50 % and again at 80 %."""
    total = max(1, total_steps)
    if schedule == "cosine":
        return lambda step: 0.5 * (1.0 + math.cos(math.pi * min(step, total) / total))
    if schedule == "step":
        return lambda step: 0.1 ** sum(step >= m for m in (0.5 * total, 0.8 * total))
    raise LmkError(f"--lr-schedule must be cosine or step, got {schedule!r}")


def make_optimizer(model: nn.Module, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """AdamW (Adam when ``weight_decay`` is 0, as the official PIPNet recipe); the fused kernel
    where this torch has it for the device (several times faster on the CPU)."""
    params = list(model.parameters())
    try:
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)


def state_path(last: Path) -> Path:
    """``DIR/last.pt`` -> ``DIR/last.state.pt``."""
    return last.with_name(last.stem + ".state.pt")


def state_hash(model: nn.Module) -> str:
    """sha256 over every state_dict tensor (names and bytes): equal weights, equal hash."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def model_spec(config: TrainConfig, layout: Layout) -> ModelSpec:
    args = dict(config.model_args)
    args["num_lms"] = layout.num_points
    if get_family(config.model).decoder.uses_neighbours:
        args.setdefault("num_nb", min(layout.num_nb, layout.num_points - 1))
    return ModelSpec(config.model, {k: v for k, v in args.items() if v is not None})


# ---- what a run records, and --resume takes back ---------------------------------------------

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


# ---- the run folder ---------------------------------------------------------------------------


def _out_dir(config: TrainConfig) -> Path:
    out = config.out or (config.resume.parent if config.resume else None)
    if out is None:
        raise LmkError("--out DIR is required (or --resume DIR/last.pt)")
    return out


def _check_out(config: TrainConfig, out: Path) -> None:
    """Refuse to write over another run: a fresh run (or a resumed one moved to a new folder)
    needs a folder without run files unless --overwrite."""
    if out.exists() and not out.is_dir():
        raise LmkError(f"--out {out} exists and is not a folder")
    same_run = config.resume is not None and out.resolve() == config.resume.parent.resolve()
    if same_run or config.overwrite:
        return
    taken = [name for name in RUN_FILES if (out / name).exists()]
    if taken:
        raise LmkError(
            f"{out} already holds a run ({', '.join(taken)}); continue it with --resume "
            f"{out / 'last.pt'} or pass --overwrite to replace it"
        )


class _Interrupts:
    """Ctrl-C and SIGTERM during training, so that none is lost and none lands inside a step.

    While active, the handler notes the signal and raises at once as the handler it replaced
    would (KeyboardInterrupt, :class:`lmk.core.cli_util.Terminated`), except inside :meth:`held`
    blocks: a training step (the forward pass, which moves BatchNorm statistics, the backward
    pass, the optimizer and the schedule) or moving the run files into place, which then finish
    first. So the state an interrupt saves is a step boundary and ``--resume`` continues with
    the very next batch. A noted signal is raised again at the next :meth:`check` in case the
    first raise was swallowed (an exception in an at-fork hook, which starting DataLoader
    workers runs, is only reported as "Exception ignored", a report this class keeps quiet).
    Outside the main thread there is nothing to install."""

    def __init__(self) -> None:
        self.pending: list[int] = []
        self.holding = False
        self.previous: dict[int, Callable[[int, Any], Any]] = {}
        self.unraisable = sys.unraisablehook

    def __enter__(self) -> _Interrupts:
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
        by an at-fork hook or leave a half-made iterator whose ``__del__`` fails loudly."""
        with self.held():
            return iter(loader)

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


# ---- the run -------------------------------------------------------------------------------------


@dataclass
class RunResult:
    """What a finished run reports (an interrupted one raises KeyboardInterrupt after saving)."""

    out: Path
    epochs: int
    best_nme: float | None
    final_nme: float | None
    log: list[dict[str, Any]] = field(default_factory=list)


@contextlib.contextmanager
def _process_group(ddp: Dist, device: torch.device) -> Iterator[None]:
    if not ddp.active:
        yield
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend=backend, rank=ddp.rank, world_size=ddp.world)
    try:
        yield
    finally:
        with contextlib.suppress(Exception):
            dist.destroy_process_group()


def train(config: TrainConfig, echo: Callable[[str], None] | None = None) -> RunResult:
    """Train as ``config`` says; returns the run's summary (rank 0's view).

    Ctrl-C or SIGTERM (:class:`lmk.core.cli_util.Terminated`) saves ``last.pt`` at the last
    finished step, says how to continue, and re-raises."""
    ddp = dist_from_env()
    device = pick_device(config.device, ddp)
    set_threads(device, ddp)
    with _process_group(ddp, device):
        return _train(config, ddp, device, echo or (lambda s: click.echo(s, err=True)))


def _train(
    config: TrainConfig, ddp: Dist, device: torch.device, echo: Callable[[str], None]
) -> RunResult:
    out = _out_dir(config)
    resume = read_resume(config.resume) if config.resume is not None else None
    if not ddp.main:  # only rank 0 writes, so only rank 0 judges and creates the folder
        return _run(config, ddp, device, echo, out, resume)
    _check_out(config, out)
    # A folder this run creates is removed again when the run ends (error, Ctrl-C) before it
    # wrote a file into it: the first files are the first epoch's, or what an interrupt after
    # the first training step saves. _check_out above decides what else may be in it.
    with output_folder(out, overwrite=True):
        return _run(config, ddp, device, echo, out, resume)


def _run(
    config: TrainConfig,
    ddp: Dist,
    device: torch.device,
    echo: Callable[[str], None],
    out: Path,
    resume: Resume | None,
) -> RunResult:
    resumed = resume.checkpoint if resume is not None else None
    input_size = int(config.model_args.get("input_size") or 256)
    train_src, val_src, data_info = build_sources(
        config.data,
        seed=config.seed,
        layout=config.layout,
        input_size=input_size,
        train_size=config.train_size,
        val_size=config.val_size,
        val_spec=config.val_data,
        val_fraction=config.val_fraction,
        images=config.images,
    )
    if resumed is not None:
        layout = resumed.layout
    else:
        layout = data_layout(
            config.data, train_src, config.layout, config.crop, input_size, config.flip
        )
    spec = model_spec(config, layout)
    if resumed is not None and (resumed.spec != spec or resumed.layout.name != layout.name):
        raise LmkError(
            f"cannot resume: {config.resume} is {resumed.spec.name} {resumed.spec.args} on "
            f"{resumed.layout.name}; the flags ask for {spec.name} {spec.args}"
        )
    if resumed is not None and resumed.crop != config.crop:
        raise LmkError(
            f"cannot resume: {config.resume} crops faces as {resumed.crop.to_dict()}, the flags "
            f"as {config.crop.to_dict()}"
        )
    normalisation: Normalisation
    if resumed is not None:
        normalisation = resumed.normalisation
    else:
        normalisation = spec.family.normalisation

    augment = AugmentConfig() if config.augment else None
    train_set = LandmarkDataset(
        train_src,
        layout,
        input_size,
        config.crop,
        normalisation,
        augment,
        config.seed,
        config.cache,
    )
    val_set = LandmarkDataset(
        val_src, layout, input_size, config.crop, normalisation, None, config.seed, config.cache
    )

    torch.manual_seed(config.seed)
    model = spec.build()
    if config.backbone_weights is not None and resumed is None:
        backbone = spec.full_args().get("backbone")
        if backbone is None:  # only PIPNet has an ImageNet backbone
            raise LmkError("--backbone-weights applies to PIPNet's ImageNet backbone only")
        load_backbone_weights(
            model, backbone, imagenet_state_dict(backbone, config.backbone_weights)
        )
    if resumed is not None:
        model.load_state_dict(resumed.state_dict)
    model.to(device)
    objective = Objective(spec, layout, config.heatmap_loss, config.sigma)

    sampler = DistributedSampler(
        train_set, num_replicas=ddp.world, rank=ddp.rank, shuffle=True, seed=config.seed
    )
    plan = PassBatches(sampler, config.batch_size, drop_last=len(sampler) > config.batch_size)
    # Each loader has its own generator: worker seeds (unused, the data set seeds its own
    # draws) do not consume the global RNG, so a resumed run's RNG is the interrupted run's.
    loader_args: dict[str, Any] = {
        "num_workers": config.workers,
        "pin_memory": device.type == "cuda",
        "worker_init_fn": _worker_init if config.workers else None,
        "generator": torch.Generator().manual_seed(config.seed),
    }
    train_loader = DataLoader(train_set, batch_sampler=plan, **loader_args)
    per_pass = len(plan)
    if per_pass == 0:
        raise LmkError("the training set gives no batch; lower --batch-size")
    steps = config.steps_per_epoch or per_pass
    passes = math.ceil(steps / per_pass)  # > 1 when an epoch is longer than the data
    val_loader = DataLoader(val_set, batch_size=config.batch_size, shuffle=False, **loader_args)

    net: nn.Module = model
    if ddp.active:
        net = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    optimizer = make_optimizer(net, config.lr, config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lr_lambda(config.lr_schedule, config.epochs * steps)
    )

    # Where the run stands: finished epochs, optimizer steps, steps into the next epoch.
    completed, step, epoch_step = 0, 0, 0
    best_nme: float | None = None
    best_epoch: int | None = None
    final_nme: float | None = None
    totals = EpochTotals()
    saved_at: tuple[int, int] | None = None  # (completed, step) of the newest last.pt ...
    saved_in: Path | None = config.resume  # ... and where it is
    if resume is not None:
        state = resume.state
        try:
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise LmkError(
                f"cannot resume: {state_path(resume.path)} does not fit the model ({exc})"
            ) from None
        completed, step = int(state["epoch"]), int(state["step"])
        epoch_step = int(state.get("epoch_step", 0))
        totals = EpochTotals.from_dict(state.get("epoch_totals"))
        best_nme, best_epoch = state.get("best_nme"), state.get("best_epoch")
        final_nme = resume.checkpoint.provenance.get("final_nme")
        torch.set_rng_state(state["torch_rng"])
        saved_at = (completed, step)
        if completed >= config.epochs:
            raise LmkError(
                f"{config.resume} has already trained {completed} epochs; ask for more with "
                f"--epochs (now {config.epochs})"
            )
        if epoch_step > steps:
            raise LmkError(
                f"{config.resume} stopped {epoch_step} steps into an epoch, but an epoch here "
                f"has {steps} steps"
            )

    provenance: dict[str, Any] = {
        "command": config.command,
        "seed": config.seed,
        "data": str(config.data),
        "data_info": data_info,
        "layout": layout.name,
        "epochs_planned": config.epochs,
        "steps_per_epoch": steps,
        "batch_size": config.batch_size,
        "world_size": ddp.world,
        "lr": config.lr,
        "lr_schedule": config.lr_schedule,
        "weight_decay": config.weight_decay,
        "augment": config.augment,
        "device": device.type,
        "backbone_weights": str(config.backbone_weights) if config.backbone_weights else None,
        "train_config": {k: plain_setting(getattr(config, k)) for k in RECORDED},
    }
    if resumed is not None:
        provenance["resumed_from"] = str(config.resume)
        provenance["commands"] = [*resumed.provenance.get("commands", []), config.command]
    else:
        provenance["commands"] = [config.command]

    log_path = out / "log.jsonl"
    log_lines: list[str] = []  # the log is rewritten whole with each epoch's files
    if ddp.main and resume is not None:
        earlier = resume.path.parent / "log.jsonl"
        try:
            if earlier.is_file():
                log_lines = earlier.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise LmkError(f"cannot read {earlier}: {exc}") from None

    def checkpoint_file(epochs: int, extra: dict[str, Any]) -> Callable[[BinaryIO], None]:
        info = {**provenance, "epochs": epochs, "step": step, **extra}
        ckpt = Checkpoint.from_model(model, spec, layout, normalisation, config.crop, info)
        return lambda fh: torch.save(ckpt.to_dict(), fh)

    def write_last(
        files: OutputSet,
        epochs: int,
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
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "interrupted": interrupted,
        }
        files.write(out / "last.state.pt", lambda fh: torch.save(payload, fh))
        extra = {
            "epoch_step": at_step,
            "best_nme": best[0],
            "best_epoch": best[1],
            "final_nme": final,
            "interrupted": interrupted,
        }
        files.write(out / "last.pt", checkpoint_file(epochs, extra))

    def save_interrupted() -> None:
        """On Ctrl-C / SIGTERM: save where the run stands (a step boundary, see
        :class:`_Interrupts`) unless last.pt already holds it, and say how to go on."""
        if saved_at == (completed, step) or (saved_at is None and step == 0):
            echo(
                "interrupted before the first training step; nothing saved"
                if saved_in is None
                else f"interrupted before a new training step; continue with --resume {saved_in}"
            )
            return
        with OutputSet() as files:
            write_last(
                files, completed, epoch_step, totals, (best_nme, best_epoch), final_nme, True
            )
            with _Interrupts() as again, again.held():
                files.commit()
        last = out / "last.pt"
        echo(
            f"interrupted in epoch {completed + 1} after step {epoch_step} of {steps}: saved "
            f"{last} (step {step}); continue with --resume {last}"
        )

    result = RunResult(out, completed, best_nme, final_nme)
    interrupts = _Interrupts()
    try:
        with interrupts:
            for epoch in range(completed, config.epochs):
                net.train()
                bar = tqdm(
                    total=steps,
                    initial=epoch_step,
                    desc=f"epoch {epoch + 1}/{config.epochs}",
                    unit="step",
                    disable=True if not ddp.main else None,
                    leave=False,
                )
                batches = _epoch_batches(
                    train_loader, plan, train_set, epoch * passes, epoch_step, interrupts
                )
                while epoch_step < steps:
                    interrupts.check()  # a signal whose first raise was swallowed
                    t0 = time.perf_counter()
                    try:
                        batch = next(batches)
                    except LmkError as exc:
                        raise loader_error(exc) from None
                    t1 = time.perf_counter()
                    with interrupts.held():
                        images = batch["image"].to(device, non_blocking=True)
                        landmarks = batch["landmarks"].to(device, non_blocking=True)
                        loss, parts = objective.loss(net(images), landmarks)
                        optimizer.zero_grad(set_to_none=True)
                        loss.backward()
                        optimizer.step()
                        scheduler.step()
                        value = float(loss.detach())  # synchronises: the step time is real on CUDA
                        t2 = time.perf_counter()
                        if not math.isfinite(value):
                            raise LmkError(f"the loss became {value} at step {step}; lower --lr")
                        step += 1
                        epoch_step += 1
                        produced = float(batch["seconds"].sum())
                        totals.add(len(images), value, parts, (t1 - t0, produced, t2 - t1))
                    bar.set_postfix(
                        loss=f"{value:.4f}", sps=f"{len(images) * ddp.world / (t2 - t0):.1f}"
                    )
                    bar.update()
                bar.close()
                del batches
                if ddp.active:
                    for buffer in model.buffers():
                        dist.broadcast(buffer, src=0)

                if not ddp.main:
                    completed, epoch_step, totals = epoch + 1, 0, EpochTotals()
                else:
                    val_started = time.perf_counter()
                    model.eval()
                    predictions = collect(
                        loader_batches(interrupts.start(val_loader)),
                        torch_predictor(model, spec, layout, device),
                    )
                    metrics, _ = score(predictions, layout, input_size)
                    interrupts.check()
                    nme_now = metrics["overall"]["nme"]
                    is_best = best_nme is None or nme_now < best_nme
                    best = (nme_now, epoch + 1) if is_best else (best_nme, best_epoch)
                    n = max(totals.samples, 1)
                    record: dict[str, Any] = {
                        "epoch": epoch + 1,
                        "step": step,
                        "lr": optimizer.param_groups[0]["lr"],
                        "loss": totals.loss_sum / n,
                        "loss_parts": {k: v / n for k, v in totals.parts.items()},
                        "val": metrics["overall"],
                        "val_subsets": metrics["subsets"],
                        "seconds": None,
                        "train_seconds": totals.wait + totals.compute,
                        "val_seconds": time.perf_counter() - val_started,
                        "samples": totals.samples * ddp.world,
                        "data_samples_per_s": (
                            totals.samples / totals.produce if totals.produce > 0 else None
                        ),
                        "data_wait_seconds": totals.wait,
                        "step_samples_per_s": (
                            totals.samples * ddp.world / totals.compute
                            if totals.compute > 0
                            else None
                        ),
                        "world_size": ddp.world,
                        "best": is_best,
                    }
                    with OutputSet() as files:
                        extra = {"best_nme": best[0], "best_epoch": best[1], "final_nme": nme_now}
                        if is_best:
                            files.write(out / "best.pt", checkpoint_file(epoch + 1, extra))
                        write_last(files, epoch + 1, 0, EpochTotals(), best, nme_now, False)
                        record["seconds"] = (
                            record["train_seconds"] + time.perf_counter() - val_started
                        )
                        lines = [*log_lines, json.dumps(record)]
                        text = "".join(f"{line}\n" for line in lines).encode()
                        files.write(log_path, lambda fh, text=text: fh.write(text))
                        with interrupts.held():  # files and bookkeeping move on together
                            files.commit()
                            log_lines = lines
                            best_nme, best_epoch, final_nme = best[0], best[1], nme_now
                            completed, epoch_step, totals = epoch + 1, 0, EpochTotals()
                            saved_at, saved_in = (completed, step), out / "last.pt"
                    result.log.append(record)
                    echo(_epoch_line(record, config.epochs))
                if ddp.active:
                    dist.barrier()
                result.epochs = completed
    except KeyboardInterrupt:  # Ctrl-C, and SIGTERM as lmk.core.cli_util.Terminated
        if ddp.main:
            save_interrupted()
        raise
    finally:
        hash_dir = os.environ.get(HASH_ENV)
        if hash_dir:
            (Path(hash_dir) / f"rank{ddp.rank}.sha256").write_text(state_hash(model) + "\n")
    result.best_nme, result.final_nme = best_nme, final_nme
    return result


class PassBatches(Sampler[list[int]]):
    """The index batches of one pass over the training data (the sampler's shuffle for the
    pass set with :meth:`start`), optionally from batch ``skip`` on: a run resumed in the
    middle of a pass continues with the very batch it would have trained next."""

    def __init__(self, sampler: DistributedSampler, batch_size: int, drop_last: bool) -> None:
        self.sampler = sampler
        self.batches = BatchSampler(sampler, batch_size, drop_last)
        self.skip = 0

    def start(self, pass_index: int, skip: int = 0) -> None:
        self.sampler.set_epoch(pass_index)
        self.skip = skip

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[list[int]]:
        return itertools.islice(iter(self.batches), self.skip, None)


def _epoch_batches(
    loader: DataLoader,
    plan: PassBatches,
    dataset: LandmarkDataset,
    first_pass: int,
    done: int,
    interrupts: _Interrupts,
) -> Iterator[dict[str, Any]]:
    """The batches of one epoch after its first ``done`` steps: passes over the data from
    ``first_pass`` on, each with its own shuffle and augmentation draws (pass ``p`` uses
    ``set_epoch(p)``), so a resumed run trains on exactly the batches it would have."""
    per_pass = len(plan)
    p, skip = first_pass + done // per_pass, done % per_pass
    while True:  # the caller takes as many steps as an epoch has
        plan.start(p, skip)
        dataset.set_epoch(p)
        yield from interrupts.start(loader)
        p, skip = p + 1, 0


def _epoch_line(record: dict[str, Any], epochs: int) -> str:
    val = record["val"]
    data = record["data_samples_per_s"]
    return (
        f"epoch {record['epoch']}/{epochs}: loss {record['loss']:.4f}, val NME "
        f"{100 * val['nme']:.2f}% FR {100 * val['fr']:.1f}% AUC {val['auc']:.3f} "
        f"({record['seconds']:.1f} s; data {data or 0:.0f} samples/s per worker, step "
        f"{record['step_samples_per_s'] or 0:.0f} samples/s){' best' if record['best'] else ''}"
    )


def command_line(prog: str, args: list[str]) -> str:
    """The exact command as a shell would re-run it."""
    return shlex.join([prog, *args]) if args else prog


__all__ = [
    "HASH_ENV",
    "RECORDED",
    "RUN_FILES",
    "Dist",
    "EpochTotals",
    "PassBatches",
    "Resume",
    "RunResult",
    "TrainConfig",
    "command_line",
    "dist_from_env",
    "lr_lambda",
    "plain_setting",
    "read_resume",
    "resume_checkpoint",
    "run_settings",
    "state_hash",
    "state_path",
    "train",
]
