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
import json
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
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from lmk.augment import AugmentConfig
from lmk.checkpoint import Checkpoint, load_checkpoint
from lmk.crop import CropPolicy
from lmk.errors import LmkError
from lmk.fileio import atomic_output
from lmk.layouts import Layout
from lmk.models import ModelSpec
from lmk.models.backbones import imagenet_state_dict, load_backbone_weights
from lmk.normalise import IMAGENET, UNIT_RANGE, Normalisation
from lmk.train.data import (
    DataSpec,
    LandmarkDataset,
    build_sources,
    data_layout,
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
    if config.model == "pipnet":
        args.setdefault("num_nb", min(layout.num_nb, layout.num_points - 1))
    return ModelSpec(config.model, {k: v for k, v in args.items() if v is not None})


def _out_dir(config: TrainConfig) -> Path:
    out = config.out or (config.resume.parent if config.resume else None)
    if out is None:
        raise LmkError("--out DIR is required (or --resume DIR/last.pt)")
    return out


def _check_out(config: TrainConfig, out: Path) -> None:
    """Refuse to write over another run: a fresh run (or a resumed one moved to a new folder)
    needs an empty --out unless --overwrite."""
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


# ---- the run -------------------------------------------------------------------------------------


@dataclass
class RunResult:
    """What a finished (or interrupted) run reports."""

    out: Path
    epochs: int
    best_nme: float | None
    final_nme: float | None
    interrupted: bool = False
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
    """Train as ``config`` says; returns the run's summary (rank 0's view)."""
    ddp = dist_from_env()
    device = pick_device(config.device, ddp)
    set_threads(device, ddp)
    with _process_group(ddp, device):
        return _train(config, ddp, device, echo or (lambda s: click.echo(s, err=True)))


def _train(
    config: TrainConfig, ddp: Dist, device: torch.device, echo: Callable[[str], None]
) -> RunResult:
    out = _out_dir(config)
    if ddp.main:  # only rank 0 writes, so only rank 0 judges the folder (no race with itself)
        _check_out(config, out)
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise LmkError(f"cannot create {out}: {exc.strerror}") from None

    resumed: Checkpoint | None = None
    state: dict[str, Any] | None = None
    if config.resume is not None:
        resumed = load_checkpoint(config.resume)
        spath = state_path(config.resume)
        if not spath.is_file():
            raise LmkError(f"cannot resume: {spath} (optimizer and schedule state) is missing")
        try:
            state = torch.load(spath, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise LmkError(f"cannot read {spath}: {str(exc).splitlines()[0]}") from None
        if resumed.provenance.get("step") != state.get("step"):
            raise LmkError(f"{config.resume} and {spath} are from different steps")

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
    normalisation: Normalisation = UNIT_RANGE if spec.name == "fan" else IMAGENET

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
        if spec.name != "pipnet" or backbone is None:
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
    per_rank = len(sampler)
    drop_last = per_rank > config.batch_size
    loader_args: dict[str, Any] = {
        "num_workers": config.workers,
        "pin_memory": device.type == "cuda",
        "worker_init_fn": _worker_init if config.workers else None,
    }
    train_loader = DataLoader(
        train_set, batch_size=config.batch_size, sampler=sampler, drop_last=drop_last, **loader_args
    )
    per_pass = len(train_loader)
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

    start_epoch, step, best_nme, best_epoch = 0, 0, None, None
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start_epoch, step = int(state["epoch"]), int(state["step"])
        best_nme = state.get("best_nme")
        best_epoch = state.get("best_epoch")
        torch.set_rng_state(state["torch_rng"])
        if start_epoch >= config.epochs:
            raise LmkError(
                f"{config.resume} has already trained {start_epoch} epochs; ask for more with "
                f"--epochs (now {config.epochs})"
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
    }
    if resumed is not None:
        provenance["resumed_from"] = str(config.resume)
        provenance["commands"] = [*resumed.provenance.get("commands", []), config.command]
    else:
        provenance["commands"] = [config.command]

    log_path = out / "log.jsonl"
    if ddp.main:
        if resumed is None:
            log_path.write_text("", encoding="utf-8")
        elif config.resume is not None and out.resolve() != config.resume.parent.resolve():
            earlier = config.resume.parent / "log.jsonl"  # resumed into a new folder
            log_path.write_text(
                earlier.read_text(encoding="utf-8") if earlier.is_file() else "", encoding="utf-8"
            )
    result = RunResult(out, start_epoch, best_nme, None)
    final_nme: float | None = None
    epoch = start_epoch

    def save(path: Path, completed: int, extra: dict[str, Any]) -> None:
        info = {**provenance, "epochs": completed, "step": step, **extra}
        Checkpoint.from_model(model, spec, layout, normalisation, config.crop, info).save(path)

    def save_last(completed: int, interrupted: bool = False) -> None:
        payload = {
            "epoch": completed,
            "step": step,
            "best_nme": best_nme,
            "best_epoch": best_epoch,
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "interrupted": interrupted,
        }
        with atomic_output(out / "last.state.pt", overwrite=True) as tmp:
            torch.save(payload, tmp)
        save(
            out / "last.pt",
            completed,
            {
                "best_nme": best_nme,
                "best_epoch": best_epoch,
                "final_nme": final_nme,
                "interrupted": interrupted,
            },
        )

    try:
        for epoch in range(start_epoch, config.epochs):
            started = time.perf_counter()
            net.train()
            totals: dict[str, float] = {}
            loss_sum, samples, wait, produce, compute = 0.0, 0, 0.0, 0.0, 0.0
            bar = tqdm(
                total=steps,
                desc=f"epoch {epoch + 1}/{config.epochs}",
                unit="step",
                disable=True if not ddp.main else None,
                leave=False,
            )
            batches = _epoch_batches(train_loader, sampler, train_set, epoch * passes, passes)
            for _ in range(steps):
                t0 = time.perf_counter()
                try:
                    batch = next(batches)
                except LmkError as exc:
                    raise loader_error(exc) from None
                t1 = time.perf_counter()
                images = batch["image"].to(device, non_blocking=True)
                landmarks = batch["landmarks"].to(device, non_blocking=True)
                loss, parts = objective.loss(net(images), landmarks)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                value = float(loss.detach())  # synchronises, so the step time is real on CUDA
                t2 = time.perf_counter()
                if not math.isfinite(value):
                    raise LmkError(f"the loss became {value} at step {step}; lower --lr")
                step += 1
                n = len(images)
                samples += n
                wait += t1 - t0
                compute += t2 - t1
                produce += float(batch["seconds"].sum())
                loss_sum += value * n
                for k, v in parts.items():
                    totals[k] = totals.get(k, 0.0) + v * n
                bar.set_postfix(loss=f"{value:.4f}", sps=f"{n * ddp.world / (t2 - t0):.1f}")
                bar.update()
            bar.close()
            del batches
            if ddp.active:
                for buffer in model.buffers():
                    dist.broadcast(buffer, src=0)
            train_seconds = time.perf_counter() - started

            record: dict[str, Any] = {}
            if ddp.main:
                val_started = time.perf_counter()
                model.eval()
                predictions = collect(
                    loader_batches(val_loader), torch_predictor(model, spec, layout, device)
                )
                metrics, _ = score(predictions, layout, input_size)
                final_nme = metrics["overall"]["nme"]
                is_best = best_nme is None or final_nme < best_nme
                if is_best:
                    best_nme, best_epoch = final_nme, epoch + 1
                record = {
                    "epoch": epoch + 1,
                    "step": step,
                    "lr": optimizer.param_groups[0]["lr"],
                    "loss": loss_sum / max(samples, 1),
                    "loss_parts": {k: v / max(samples, 1) for k, v in totals.items()},
                    "val": metrics["overall"],
                    "val_subsets": metrics["subsets"],
                    "seconds": None,
                    "train_seconds": train_seconds,
                    "val_seconds": time.perf_counter() - val_started,
                    "samples": samples * ddp.world,
                    "data_samples_per_s": samples / produce if produce > 0 else None,
                    "data_wait_seconds": wait,
                    "step_samples_per_s": samples * ddp.world / compute if compute > 0 else None,
                    "world_size": ddp.world,
                    "best": is_best,
                }
                if is_best:
                    save(
                        out / "best.pt",
                        epoch + 1,
                        {"best_nme": best_nme, "best_epoch": best_epoch, "final_nme": final_nme},
                    )
                save_last(epoch + 1)
                record["seconds"] = time.perf_counter() - started
                with log_path.open("a", encoding="utf-8") as fh:
                    fh.write(json.dumps(record) + "\n")
                result.log.append(record)
                echo(_epoch_line(record, config.epochs))
            if ddp.active:
                dist.barrier()
            result.epochs = epoch + 1
    except KeyboardInterrupt:
        if ddp.main:
            save_last(epoch, interrupted=True)
            echo(
                f"interrupted in epoch {epoch + 1}: saved {out / 'last.pt'} (step {step}); "
                f"continue with --resume {out / 'last.pt'}"
            )
        result.interrupted = True
    finally:
        hash_dir = os.environ.get(HASH_ENV)
        if hash_dir:
            (Path(hash_dir) / f"rank{ddp.rank}.sha256").write_text(state_hash(model) + "\n")
    result.best_nme, result.final_nme = best_nme, final_nme
    return result


def _epoch_batches(
    loader: DataLoader,
    sampler: DistributedSampler,
    dataset: LandmarkDataset,
    first_pass: int,
    passes: int,
) -> Iterator[dict[str, Any]]:
    """The batches of one epoch: ``passes`` passes over the data, each with its own shuffle
    and augmentation draws (pass ``p`` uses ``set_epoch(p)``), so a resumed run repeats them."""
    for p in range(first_pass, first_pass + passes):
        sampler.set_epoch(p)
        dataset.set_epoch(p)
        yield from loader


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
    "RUN_FILES",
    "Dist",
    "RunResult",
    "TrainConfig",
    "command_line",
    "dist_from_env",
    "lr_lambda",
    "state_hash",
    "state_path",
    "train",
]
