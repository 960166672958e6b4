"""lmk-batch's engine: Ray Data, on this machine or on a cluster.

Without an address it starts Ray on the local machine (``ray.init`` with this machine's
CPUs, or ``num_cpus``); with ``--ray ADDRESS`` it joins a running cluster. Units (see
:mod:`lmk.batch.inputs`) become a dataset, one unit per batch, that an actor pool of
:class:`lmk.batch.worker.ShardWriter` maps; the result rows stream back to the driver as
units finish, for the progress bar and the summary. Ray Data schedules, streams and retries;
lmk adds no scheduler of its own.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import asdict
from typing import Any

from lmk.batch.annotate import AnnotatorConfig
from lmk.batch.inputs import Unit
from lmk.batch.worker import ShardWriter
from lmk.core.errors import LmkError

MAX_BLOCKS = 4096
"""Units are spread over at most this many blocks: a block is what Ray retries whole."""


def require_ray() -> Any:
    """The ``ray`` module (usage statistics off), or an error naming the extra."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        import ray
        import ray.data
    except ImportError:
        raise LmkError('lmk-batch needs Ray Data: pip install "lmk[batch]"') from None
    return ray


def connect(address: str | None = None, num_cpus: int | None = None) -> Callable[[], None]:
    """Join the cluster at ``address``, or start Ray on this machine; returns what ends it.
    A Ray already initialised in this process (a test's shared instance) is used as is."""
    ray = require_ray()
    if ray.is_initialized():
        return lambda: None
    # Ray's own notices (token authentication, start-up) would bury lmk-batch's lines.
    quiet: dict[str, Any] = {"logging_level": logging.ERROR, "log_to_driver": False}
    try:
        if address:
            ray.init(address=address, **quiet)
        else:
            ray.init(num_cpus=num_cpus, include_dashboard=False, **quiet)
    except (ConnectionError, ValueError, RuntimeError) as exc:
        where = f"the Ray cluster at {address}" if address else "a local Ray instance"
        raise LmkError(f"cannot start or join {where}: {exc}") from None
    return ray.shutdown


def cluster_workers(cpus_per_worker: float, gpus_per_worker: float) -> int:
    """How many actors the cluster can hold at once with these resources each."""
    ray = require_ray()
    resources = ray.cluster_resources()
    counts = [int(resources.get("CPU", 0) // cpus_per_worker)] if cpus_per_worker else []
    if gpus_per_worker:
        counts.append(int(resources.get("GPU", 0) // gpus_per_worker))
        if counts[-1] == 0:
            raise LmkError(
                f"--gpus-per-worker {gpus_per_worker:g}: the Ray cluster has "
                f"{resources.get('GPU', 0):g} GPUs"
            )
    return max(1, min(counts) if counts else 1)


def annotate_units(
    units: list[Unit],
    config: AnnotatorConfig,
    dataset: str,
    workers: int,
    cpus_per_worker: float = 1.0,
    gpus_per_worker: float = 0.0,
) -> Iterator[dict[str, Any]]:
    """Run every unit on an actor pool of ``workers``; yield each unit's result row (see
    :data:`lmk.batch.worker.RESULT_COLUMNS`) as it finishes, in any order."""
    ray = require_ray()
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # lmk-batch shows its own: files, faces, faces/s
    context.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.ERROR)  # its start/finish lines
    items = [{"unit": unit.unit_id, "inputs": unit.to_json()} for unit in units]
    data = ray.data.from_items(items, override_num_blocks=max(1, min(len(items), MAX_BLOCKS)))
    remote: dict[str, Any] = {"num_cpus": cpus_per_worker}
    if gpus_per_worker:
        remote["num_gpus"] = gpus_per_worker
    mapped = data.map_batches(
        ShardWriter,
        fn_constructor_kwargs={"config": asdict(config), "dataset": dataset},
        batch_size=1,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=workers),
        **remote,
    )
    try:
        yield from mapped.iter_rows()
    except ray.exceptions.RayError as exc:
        # An actor that cannot start (an EP the workers lack, a model they cannot read) or
        # a unit that fails beyond Ray's retries: one line, not Ray's traceback.
        raise LmkError(f"the Ray job failed: {_first_line(exc)}") from None


def _first_line(exc: BaseException) -> str:
    """The root cause of a Ray error: lmk's own message when a worker raised one (Ray
    passes it on as text inside its own error), else the error's last line."""
    text = str(exc)
    for line in text.splitlines():
        if "LmkError: " in line:
            return line.split("LmkError: ", 1)[1].strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__
