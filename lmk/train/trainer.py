"""The training loop behind ``lmk-train``: single process or DistributedDataParallel.

Run under ``torchrun`` (RANK / WORLD_SIZE set) it joins a process group (gloo on the CPU, nccl
on CUDA; :mod:`lmk.train.distributed`); every rank trains on its DistributedSampler shard,
rank 0 alone validates, writes files (:mod:`lmk.train.run_files`) and shows progress. Buffers
(BatchNorm statistics) are broadcast from rank 0 after every epoch, so every rank ends an
epoch with exactly the weights rank 0 saves. ``--resume`` (:mod:`lmk.train.resume`) continues
at the very step an interrupt (:mod:`lmk.train.interrupts`) stopped at.

A run is set up in the order its random draws need (data, then the seeded model, then the
loaders, the optimizer and a resumed run's RNG), then trains epoch by epoch: the steps
(:func:`_train_epoch`), then rank 0's validation and files (:func:`_end_epoch`).
"""

from __future__ import annotations

import hashlib
import itertools
import math
import os
import shlex
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import BatchSampler, DataLoader, DistributedSampler, Sampler
from tqdm import tqdm

from lmk.augment import AugmentConfig
from lmk.checkpoint import Checkpoint
from lmk.core.errors import LmkError
from lmk.core.fileio import OutputSet, output_folder
from lmk.core.geometry import CropPolicy
from lmk.core.layouts import Layout
from lmk.core.normalise import Normalisation
from lmk.models import ModelSpec, get_family
from lmk.models.backbones import imagenet_state_dict, load_backbone_weights
from lmk.train.data import DataSpec, LandmarkDataset, build_sources, data_layout
from lmk.train.distributed import Dist, dist_from_env, pick_device, process_group, set_threads
from lmk.train.engine import (
    Objective,
    collect,
    loader_batches,
    loader_error,
    score,
    torch_predictor,
)
from lmk.train.interrupts import Interrupts, worker_init
from lmk.train.resume import (
    RECORDED,
    EpochTotals,
    Progress,
    Resume,
    plain_setting,
    read_resume,
    restore_progress,
)
from lmk.train.run_files import RunWriter, check_out, earlier_log, out_dir

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


# ---- schedule, model ---------------------------------------------------------------------------


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


def state_hash(model: nn.Module) -> str:
    """sha256 over every state_dict tensor (names and bytes): equal weights, equal hash."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def model_spec(config: TrainConfig, layout: Layout) -> ModelSpec:
    """The model the flags ask for, sized to the layout (PIPNet's neighbour count capped by
    the points there are)."""
    args = dict(config.model_args)
    args["num_lms"] = layout.num_points
    if get_family(config.model).decoder.uses_neighbours:
        args.setdefault("num_nb", min(layout.num_nb, layout.num_points - 1))
    return ModelSpec(config.model, {k: v for k, v in args.items() if v is not None})


# ---- the run -------------------------------------------------------------------------------------


@dataclass
class RunResult:
    """What a finished run reports (an interrupted one raises KeyboardInterrupt after saving)."""

    out: Path
    epochs: int
    best_nme: float | None
    final_nme: float | None
    log: list[dict[str, Any]] = field(default_factory=list)


def train(config: TrainConfig, echo: Callable[[str], None] | None = None) -> RunResult:
    """Train as ``config`` says; returns the run's summary (rank 0's view).

    Ctrl-C or SIGTERM (:class:`lmk.core.cli_util.Terminated`) saves ``last.pt`` at the last
    finished step, says how to continue, and re-raises."""
    ddp = dist_from_env()
    device = pick_device(config.device, ddp)
    set_threads(device, ddp)
    with process_group(ddp, device):
        return _train(config, ddp, device, echo or (lambda s: click.echo(s, err=True)))


def _train(
    config: TrainConfig, ddp: Dist, device: torch.device, echo: Callable[[str], None]
) -> RunResult:
    out = out_dir(config.out, config.resume)
    resume = read_resume(config.resume) if config.resume is not None else None
    if not ddp.main:  # only rank 0 writes, so only rank 0 judges and creates the folder
        return _run(config, ddp, device, echo, out, resume)
    check_out(out, config.resume, config.overwrite)
    # A folder this run creates is removed again when the run ends (error, Ctrl-C) before it
    # wrote a file into it: the first files are the first epoch's, or what an interrupt after
    # the first training step saves. check_out above decides what else may be in it.
    with output_folder(out, overwrite=True):
        return _run(config, ddp, device, echo, out, resume)


@dataclass
class _Data:
    """What the run trains on and for: the data sets and the model they fix."""

    layout: Layout
    spec: ModelSpec
    normalisation: Normalisation
    input_size: int
    train_set: LandmarkDataset
    val_set: LandmarkDataset
    info: dict[str, Any]


def _prepare_data(config: TrainConfig, resumed: Checkpoint | None) -> _Data:
    """The data sets, the layout and model they imply, and the normalisation; a resumed run
    must ask for the model, layout and crop its checkpoint has."""
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
    return _Data(layout, spec, normalisation, input_size, train_set, val_set, data_info)


def _build_model(
    config: TrainConfig, spec: ModelSpec, resumed: Checkpoint | None, device: torch.device
) -> nn.Module:
    """The network, seeded by ``--seed`` (or a resumed run's weights); ImageNet backbone
    weights for a fresh PIPNet if asked."""
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
    return model


@dataclass
class _Loaders:
    """The loaders and the epoch's shape: ``steps`` per epoch, ``passes`` over the data each."""

    train: DataLoader
    val: DataLoader
    plan: PassBatches
    steps: int
    passes: int


def _make_loaders(config: TrainConfig, data: _Data, ddp: Dist, device: torch.device) -> _Loaders:
    sampler = DistributedSampler(
        data.train_set, num_replicas=ddp.world, rank=ddp.rank, shuffle=True, seed=config.seed
    )
    plan = PassBatches(sampler, config.batch_size, drop_last=len(sampler) > config.batch_size)
    # Each loader has its own generator: worker seeds (unused, the data set seeds its own
    # draws) do not consume the global RNG, so a resumed run's RNG is the interrupted run's.
    loader_args: dict[str, Any] = {
        "num_workers": config.workers,
        "pin_memory": device.type == "cuda",
        "worker_init_fn": worker_init if config.workers else None,
        "generator": torch.Generator().manual_seed(config.seed),
    }
    train_loader = DataLoader(data.train_set, batch_sampler=plan, **loader_args)
    per_pass = len(plan)
    if per_pass == 0:
        raise LmkError("the training set gives no batch; lower --batch-size")
    steps = config.steps_per_epoch or per_pass
    passes = math.ceil(steps / per_pass)  # > 1 when an epoch is longer than the data
    val_loader = DataLoader(
        data.val_set, batch_size=config.batch_size, shuffle=False, **loader_args
    )
    return _Loaders(train_loader, val_loader, plan, steps, passes)


def _provenance(
    config: TrainConfig,
    data: _Data,
    ddp: Dist,
    device: torch.device,
    steps: int,
    resumed: Checkpoint | None,
) -> dict[str, Any]:
    """How the run was made, recorded in every checkpoint it writes."""
    provenance: dict[str, Any] = {
        "command": config.command,
        "seed": config.seed,
        "data": str(config.data),
        "data_info": data.info,
        "layout": data.layout.name,
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
    return provenance


@dataclass
class _Trainer:
    """A set-up run: everything the epoch functions use."""

    config: TrainConfig
    ddp: Dist
    device: torch.device
    data: _Data
    model: nn.Module
    net: nn.Module
    objective: Objective
    loaders: _Loaders
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    writer: RunWriter


def _run(
    config: TrainConfig,
    ddp: Dist,
    device: torch.device,
    echo: Callable[[str], None],
    out: Path,
    resume: Resume | None,
) -> RunResult:
    resumed = resume.checkpoint if resume is not None else None
    data = _prepare_data(config, resumed)
    model = _build_model(config, data.spec, resumed, device)
    objective = Objective(data.spec, data.layout, config.heatmap_loss, config.sigma)
    loaders = _make_loaders(config, data, ddp, device)
    net: nn.Module = model
    if ddp.active:
        net = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    optimizer = make_optimizer(net, config.lr, config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lr_lambda(config.lr_schedule, config.epochs * loaders.steps)
    )
    progress = Progress()
    if resume is not None:
        progress = restore_progress(resume, optimizer, scheduler, config.epochs, loaders.steps)
    writer = RunWriter(
        out,
        model,
        data.spec,
        data.layout,
        data.normalisation,
        config.crop,
        _provenance(config, data, ddp, device, loaders.steps, resumed),
        optimizer,
        scheduler,
        earlier_log(resume) if ddp.main else [],
    )
    run = _Trainer(
        config, ddp, device, data, model, net, objective, loaders, optimizer, scheduler, writer
    )
    result = RunResult(out, progress.completed, progress.best_nme, progress.final_nme)
    interrupts = Interrupts()
    try:
        with interrupts:
            for epoch in range(progress.completed, config.epochs):
                _train_epoch(run, epoch, progress, interrupts)
                if ddp.active:
                    for buffer in model.buffers():
                        dist.broadcast(buffer, src=0)
                if not ddp.main:
                    progress.completed, progress.epoch_step = epoch + 1, 0
                    progress.totals = EpochTotals()
                else:
                    record = _end_epoch(run, epoch, progress, interrupts)
                    result.log.append(record)
                    echo(_epoch_line(record, config.epochs))
                if ddp.active:
                    dist.barrier()
                result.epochs = progress.completed
    except KeyboardInterrupt:  # Ctrl-C, and SIGTERM as lmk.core.cli_util.Terminated
        if ddp.main:
            writer.save_interrupted(progress, loaders.steps, echo)
        raise
    finally:
        hash_dir = os.environ.get(HASH_ENV)
        if hash_dir:
            (Path(hash_dir) / f"rank{ddp.rank}.sha256").write_text(state_hash(model) + "\n")
    result.best_nme, result.final_nme = progress.best_nme, progress.final_nme
    return result


def _train_epoch(run: _Trainer, epoch: int, progress: Progress, interrupts: Interrupts) -> None:
    """The training steps of ``epoch`` from ``progress.epoch_step`` on; each step (forward,
    backward, optimizer, schedule, counters) is held together against interrupts."""
    config, loaders = run.config, run.loaders
    run.net.train()
    bar = tqdm(
        total=loaders.steps,
        initial=progress.epoch_step,
        desc=f"epoch {epoch + 1}/{config.epochs}",
        unit="step",
        disable=True if not run.ddp.main else None,
        leave=False,
    )
    batches = _epoch_batches(
        loaders.train,
        loaders.plan,
        run.data.train_set,
        epoch * loaders.passes,
        progress.epoch_step,
        interrupts,
    )
    while progress.epoch_step < loaders.steps:
        interrupts.check()  # a signal whose first raise was swallowed
        t0 = time.perf_counter()
        try:
            batch = next(batches)
        except LmkError as exc:
            raise loader_error(exc) from None
        t1 = time.perf_counter()
        with interrupts.held():
            images = batch["image"].to(run.device, non_blocking=True)
            landmarks = batch["landmarks"].to(run.device, non_blocking=True)
            loss, parts = run.objective.loss(run.net(images), landmarks)
            run.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            run.optimizer.step()
            run.scheduler.step()
            value = float(loss.detach())  # synchronises: the step time is real on CUDA
            t2 = time.perf_counter()
            if not math.isfinite(value):
                raise LmkError(f"the loss became {value} at step {progress.step}; lower --lr")
            progress.step += 1
            progress.epoch_step += 1
            produced = float(batch["seconds"].sum())
            progress.totals.add(len(images), value, parts, (t1 - t0, produced, t2 - t1))
        bar.set_postfix(loss=f"{value:.4f}", sps=f"{len(images) * run.ddp.world / (t2 - t0):.1f}")
        bar.update()
    bar.close()
    del batches


def _end_epoch(
    run: _Trainer, epoch: int, progress: Progress, interrupts: Interrupts
) -> dict[str, Any]:
    """Rank 0 after ``epoch``'s steps: validate, then write the epoch's files and move the
    run's bookkeeping on with them, as one step an interrupt cannot split. Returns the
    epoch's log record."""
    val_started = time.perf_counter()
    run.model.eval()
    data = run.data
    predictions = collect(
        loader_batches(interrupts.start(run.loaders.val)),
        torch_predictor(run.model, data.spec, data.layout, run.device),
    )
    metrics, _ = score(predictions, data.layout, data.input_size)
    interrupts.check()
    nme_now = metrics["overall"]["nme"]
    is_best = progress.best_nme is None or nme_now < progress.best_nme
    best = (nme_now, epoch + 1) if is_best else (progress.best_nme, progress.best_epoch)
    record = _epoch_record(run, epoch, progress, metrics, is_best, val_started)
    # Files and bookkeeping move on together. Writing is held too: a signal raised inside
    # torch.save's writer comes out as torch's RuntimeError ("unexpected pos"), not as itself.
    with OutputSet() as files, interrupts.held():
        lines = run.writer.write_epoch(files, record, is_best, best, val_started)
        files.commit()
        run.writer.log_lines = lines
        progress.best_nme, progress.best_epoch, progress.final_nme = best[0], best[1], nme_now
        progress.completed, progress.epoch_step = epoch + 1, 0
        progress.totals = EpochTotals()
        progress.saved_at = (progress.completed, progress.step)
        progress.saved_in = run.writer.out / "last.pt"
    return record


def _epoch_record(
    run: _Trainer,
    epoch: int,
    progress: Progress,
    metrics: dict[str, Any],
    is_best: bool,
    val_started: float,
) -> dict[str, Any]:
    """The epoch's log line: loss and its parts, validation metrics, times and throughput
    (``seconds`` is filled in once the epoch's files are written)."""
    totals, world = progress.totals, run.ddp.world
    n = max(totals.samples, 1)
    return {
        "epoch": epoch + 1,
        "step": progress.step,
        "lr": run.optimizer.param_groups[0]["lr"],
        "loss": totals.loss_sum / n,
        "loss_parts": {k: v / n for k, v in totals.parts.items()},
        "val": metrics["overall"],
        "val_subsets": metrics["subsets"],
        "seconds": None,
        "train_seconds": totals.wait + totals.compute,
        "val_seconds": time.perf_counter() - val_started,
        "samples": totals.samples * world,
        "data_samples_per_s": (totals.samples / totals.produce if totals.produce > 0 else None),
        "data_wait_seconds": totals.wait,
        "step_samples_per_s": (
            totals.samples * world / totals.compute if totals.compute > 0 else None
        ),
        "world_size": world,
        "best": is_best,
    }


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
    interrupts: Interrupts,
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
    "PassBatches",
    "RunResult",
    "TrainConfig",
    "command_line",
    "lr_lambda",
    "make_optimizer",
    "model_spec",
    "state_hash",
    "train",
]
