"""lmk-train under hostile input: a failed run leaves no empty run folder, a full disk keeps
the previous checkpoints and logs, --resume takes its settings from the checkpoint and names
what a wrong file is, and Ctrl-C / SIGTERM leave a folder that resumes exactly.

Every case runs in its ``work`` folder, where ``{work}/t`` links to :func:`train_assets` (a
finished tiny run and a small WFLW set); the harness checks ``work`` and the test checks that
the shared training assets are unchanged too.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

from lmk.checkpoint import load_checkpoint
from lmk.core.cli_util import run_cli
from lmk.train.run_files import RUN_FILES
from tests.hostile.conftest import BIN, Case, assert_files_kept, check_case, snapshot

# A tiny PIPNet on 64-pixel SynthFace crops, 1 epoch: no case trains more than 3 steps.
SMALL = [
    "--model", "pipnet", "--backbone", "mobilenetv2", "--input-size", "64",
    "--train-size", "8", "--val-size", "4", "--batch-size", "4", "--workers", "0",
    "--device", "cpu", "--lr", "1e-3", "--seed", "3", "--steps-per-epoch", "1", "--epochs", "1",
]  # fmt: skip
RUN = "{work}/t/run"  # the shared finished run: 1 epoch of 1 step (read-only in cases)


@pytest.fixture(scope="session")
def train_assets(tmp_path_factory) -> Path:
    """Made once: ``run/`` (a finished 1-epoch run of SMALL), ``faces/`` (8 SynthFace images
    from lmk-synth faces) and ``lists/train.txt`` + ``lists/val.txt`` naming 6 and 2 of them,
    kept apart from their images (which only ``--images faces/images`` finds)."""
    from lmk.synth.cli import WFLW_LIST, cli
    from lmk.train.cli import train_command

    root = tmp_path_factory.mktemp("train_assets")
    assert run_cli(train_command, [*SMALL, "--out", str(root / "run")]) == 0
    faces = root / "faces"
    assert run_cli(cli, ["faces", "--out", str(faces), "--n", "8", "--size", "96"]) == 0
    lines = (faces / WFLW_LIST).read_text().splitlines()
    (root / "lists").mkdir()
    (root / "lists" / "train.txt").write_text("\n".join(lines[:6]) + "\n")
    (root / "lists" / "val.txt").write_text("\n".join(lines[6:]) + "\n")
    return root


def _copy_run(work: Path, _assets: Path) -> None:
    shutil.copytree(work / "t" / "run", work / "run")


def _write(name: str, content: bytes | str):
    def setup(work: Path, _assets: Path) -> None:
        path = work / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str):
            path.write_text(content)
        else:
            path.write_bytes(content)

    return setup


def _copy_run_then(name: str, content: str):
    def setup(work: Path, assets: Path) -> None:
        _copy_run(work, assets)
        (work / "run" / name).write_text(content)

    return setup


def _bare_state_dict(work: Path, _assets: Path) -> None:
    (work / "run").mkdir()
    torch.save({"weight": torch.zeros(2, 2)}, work / "run" / "last.pt")


def _resumed_from_the_checkpoint(work: Path, _assets: Path, _outcome) -> None:
    ckpt = load_checkpoint(work / "more" / "last.pt")
    first = load_checkpoint(work / "t" / "run" / "last.pt")
    assert ckpt.spec == first.spec and ckpt.provenance["epochs"] == 2
    assert ckpt.provenance["train_config"] == first.provenance["train_config"]
    log = [json.loads(line) for line in (work / "more" / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2]


def _validated_on_val_txt(work: Path, _assets: Path, _outcome) -> None:
    ckpt = load_checkpoint(work / "run" / "last.pt")
    assert ckpt.provenance["data_info"]["val_data"].endswith("val.txt")
    assert [json.loads(x)["val"]["count"] for x in (work / "run" / "log.jsonl").open()] == [2]


BAD_LINE = "0.5 0.5 not-a-number\n"
LISTS = "{work}/t/lists"
FILE_DATA = ["--data", f"wflw:{LISTS}/train.txt", "--images", "{work}/t/faces/images"]

CASES = [
    # A run that fails before its first epoch ends leaves no run folder behind.
    Case(
        "missing-data-file",
        "lmk-train",
        [*SMALL, "--data", "wflw:{work}/nope.txt", "--out", "{work}/run"],
        match="annotation file not found",
    ),
    Case(
        "malformed-data-line",
        "lmk-train",
        [*SMALL, "--data", "wflw:{work}/list.txt", "--out", "{work}/run"],
        setup=_write("list.txt", "\n" + BAD_LINE),
        match=r"list\.txt:2",
    ),
    Case(
        "val-fraction-out-of-range",
        "lmk-train",
        [*SMALL, *FILE_DATA, "--val-fraction", "1.5", "--out", "{work}/run"],
        match="--val-fraction",
    ),
    # Guards (already held): --out a file, --out where nothing can be created, a run in --out.
    Case(
        "out-is-a-file",
        "lmk-train",
        [*SMALL, "--out", "{work}/taken"],
        setup=_write("taken", "mine\n"),
        match="not a folder",
    ),
    Case("out-under-proc", "lmk-train", [*SMALL, "--out", "/proc/lmk-run"], match="/proc"),
    Case(
        "out-holds-a-run",
        "lmk-train",
        [*SMALL, "--out", "{work}/run"],
        setup=_copy_run,
        match="already holds a run",
    ),
    # Guards (already held): numbers click refuses.
    Case("epochs-0", "lmk-train", [*SMALL, "--epochs", "0"], match="--epochs"),
    Case("epochs-negative", "lmk-train", [*SMALL, "--epochs", "-2"], match="--epochs"),
    Case("batch-size-0", "lmk-train", [*SMALL, "--batch-size", "0"], match="--batch-size"),
    # --resume of what is not there, or not a run's checkpoint: one line, nothing created.
    Case(
        "resume-missing-path",
        "lmk-train",
        ["--resume", "{work}/gone/last.pt"],
        match="no such file",
    ),
    Case(
        "resume-a-folder",
        "lmk-train",
        ["--resume", RUN],
        match="is a folder; name the run's .*last.pt",
    ),
    Case(
        "resume-text-file",
        "lmk-train",
        ["--resume", "{work}/run/last.pt"],
        setup=_write("run/last.pt", "not a checkpoint\n"),
        match=r"is not a checkpoint lmk-train wrote \(it is a text file\)",
    ),
    Case(
        "resume-empty-file",
        "lmk-train",
        ["--resume", "{work}/run/last.pt"],
        setup=_write("run/last.pt", b""),
        match="it is empty",
    ),
    Case(
        "resume-onnx-file",
        "lmk-train",
        ["--resume", "{assets}/model.onnx", "--out", "{work}/run"],
        match="it looks like an ONNX file",
    ),
    Case(
        "resume-bare-state-dict",
        "lmk-train",
        ["--resume", "{work}/run/last.pt"],
        setup=_bare_state_dict,
        match="not an lmk checkpoint; lmk-train resumes only",
    ),
    Case(
        "resume-state-file-is-text",
        "lmk-train",
        ["--resume", "{work}/run/last.pt"],
        setup=_copy_run_then("last.state.pt", "{}\n"),
        match=r"last\.state\.pt is not lmk-train's state \(it is a text file\)",
    ),
    # --resume takes the architecture and settings; only a contradicting flag is refused.
    Case(
        "resume-contradicting-input-size",
        "lmk-train",
        ["--resume", f"{RUN}/last.pt", "--input-size", "96", "--out", "{work}/more"],
        match="--input-size 96, but the checkpoint has 64",
    ),
    Case(
        "resume-contradicting-model",
        "lmk-train",
        ["--resume", f"{RUN}/last.pt", "--model", "hourglass", "--out", "{work}/more"],
        match="--model hourglass, but the checkpoint has pipnet",
    ),
    Case(
        "resume-contradicting-layout",
        "lmk-train",
        ["--resume", f"{RUN}/last.pt", "--layout", "300w68", "--out", "{work}/more"],
        match="--layout 300w68, but the checkpoint has wflw98",
    ),
    Case(
        "resume-contradicting-batch-size",
        "lmk-train",
        ["--resume", f"{RUN}/last.pt", "--batch-size", "2", "--out", "{work}/more"],
        match="--batch-size 2, but the checkpoint has 4",
    ),
    Case(
        "resume-with-no-other-flag",
        "lmk-train",
        ["--resume", f"{RUN}/last.pt", "--epochs", "2", "--workers", "0", "--out", "{work}/more"],
        code=0,
        outputs=["more"],
        check=_resumed_from_the_checkpoint,
    ),
    # --images is where --val-data's images are too.
    Case(
        "val-data-images-through-images-flag",
        "lmk-train",
        [*SMALL, *FILE_DATA, "--val-data", f"wflw:{LISTS}/val.txt", "--out", "{work}/run"],
        code=0,
        outputs=["run"],
        check=_validated_on_val_txt,
    ),
    # A full disk on the first checkpoint: one line, no partial file, no folder left.
    Case(
        "disk-full-on-first-checkpoint",
        "lmk-train",
        [*SMALL, "--out", "{work}/run"],
        fsize=1_000_000,
        match=r"disk full writing .*run/best\.pt",
    ),
]


@pytest.fixture
def linked(work: Path, train_assets: Path):
    """``{work}/t`` -> the shared training assets, which must come out unchanged."""
    (work / "t").symlink_to(train_assets, target_is_directory=True)
    before = snapshot(train_assets)
    yield work
    assert_files_kept(before, snapshot(train_assets), "shared training assets")


@pytest.mark.parametrize("case", CASES, ids=str)
def test_hostile_train(case, linked, assets):
    check_case(case, linked, assets)


def test_hostile_train_disk_full_while_resuming_keeps_every_earlier_file(linked, assets):
    """The limit lets best.pt be written but not last.state.pt: an epoch's files go in
    together or not at all, so the earlier best.pt, last.pt, state and log all stay."""
    run = linked / "t" / "run"
    ckpt, state = (run / "last.pt").stat().st_size, (run / "last.state.pt").stat().st_size
    assert ckpt * 1.5 < state  # Adam's two moments: the state is the larger file
    case = Case(
        "disk-full-while-resuming",
        "lmk-train",
        ["--resume", "{work}/run/last.pt", "--epochs", "2"],
        setup=_copy_run,
        fsize=(ckpt + state) // 2,
        match=r"disk full writing .*run/last\.state\.pt",
    )
    check_case(case, linked, assets)


def _interrupt_at_batch(monkeypatch, n: int) -> None:
    """Ctrl-C while lmk-train fetches its n-th batch (0-based), deterministically."""
    from lmk.train import trainer

    real = trainer._epoch_batches
    fetched = [0]

    def batches(*args, **kwargs):
        for batch in real(*args, **kwargs):
            if fetched[0] == n:
                raise KeyboardInterrupt
            fetched[0] += 1
            yield batch

    monkeypatch.setattr(trainer, "_epoch_batches", batches)


def _resumable_after_step(steps: int):
    def check(work: Path, _assets: Path, outcome) -> None:
        last = work / "run" / "last.pt"
        ckpt = load_checkpoint(last)
        assert ckpt.provenance["interrupted"] is True and ckpt.provenance["step"] == steps
        assert ckpt.provenance["epochs"] == 0 and ckpt.provenance["epoch_step"] == steps
        state = torch.load(work / "run" / "last.state.pt", weights_only=True)
        assert (state["step"], state["epoch_step"]) == (steps, steps)
        assert f"continue with --resume {last}" in outcome.stderr
        assert sorted(p.name for p in (work / "run").iterdir()) == ["last.pt", "last.state.pt"]

    return check


@pytest.mark.parametrize(
    "case",
    [
        # Ctrl-C after 2 of 3 steps: last.pt holds step 2 and says so; the log waits for the
        # epoch's end.
        Case(
            "ctrl-c-mid-epoch-saves-a-resumable-run",
            "lmk-train",
            [*SMALL, "--steps-per-epoch", "3", "--out", "{work}/run"],
            code=130,
            match="^error: interrupted$",
            outputs=["run"],
            check=_resumable_after_step(2),
        ),
        # Ctrl-C before the first step: nothing worth keeping, so no folder either.
        Case(
            "ctrl-c-before-the-first-step-leaves-nothing",
            "lmk-train",
            [*SMALL, "--out", "{work}/run"],
            code=130,
            match="^error: interrupted$",
        ),
    ],
    ids=str,
)
def test_hostile_train_ctrl_c(case, linked, assets, monkeypatch):
    _interrupt_at_batch(monkeypatch, 2 if "mid-epoch" in case.id else 0)
    check_case(case, linked, assets)


def test_hostile_train_sigterm_leaves_a_consistent_resumable_run(linked):
    """A real SIGTERM to the process group of the installed script (as docker stop or
    systemd send it, DataLoader workers included), resuming a copy of the shared run for many
    1-step epochs, once a new epoch is saved: it lands in a step, a validation, the start of
    the workers or the writing of an epoch's files. 'error: terminated', exit 143; last.pt,
    its state and the log agree."""
    _copy_run(linked, linked)
    run = linked / "run"
    proc = subprocess.Popen(
        [str(BIN / "lmk-train"), "--resume", str(run / "last.pt"), "--epochs", "1000"],
        cwd=linked,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "OMP_NUM_THREADS": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 240
        while len((run / "log.jsonl").read_text().splitlines()) < 2 and proc.poll() is None:
            assert time.monotonic() < deadline, "no epoch ended"
            time.sleep(0.02)
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            _, err = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired as exc:
            raise AssertionError((exc.stderr or b"").decode()[-3000:]) from None
    finally:
        if proc.poll() is None:
            proc.kill()
    stderr = err.decode()
    assert proc.returncode == 143, stderr
    assert [e for e in stderr.splitlines() if e.startswith("error:")] == ["error: terminated"]
    assert "Traceback" not in stderr and "continue with --resume" in stderr
    ckpt = load_checkpoint(run / "last.pt")
    state = torch.load(run / "last.state.pt", weights_only=True)
    assert ckpt.provenance["step"] == state["step"] == state["epoch"] + state["epoch_step"]
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == list(range(1, state["epoch"] + 1))
    assert sorted(p.name for p in run.iterdir()) == sorted(RUN_FILES)
