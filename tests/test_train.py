"""lmk-train end to end on SynthFace: files, provenance, resume, errors, overfitting, DDP."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch

from lmk.checkpoint import load_checkpoint
from lmk.core.cli_util import run_cli
from lmk.train import trainer
from lmk.train.cli import train_command
from lmk.train.eval_cli import eval_command
from lmk.train.resume import state_path
from lmk.train.trainer import HASH_ENV, state_hash

SMALL = [
    "--model", "pipnet", "--backbone", "mobilenetv2", "--input-size", "64",
    "--train-size", "8", "--val-size", "4", "--batch-size", "4", "--workers", "0",
    "--device", "cpu", "--lr", "1e-3", "--seed", "3",
]  # fmt: skip


def _log(run_dir):
    return [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) >= 1
    assert err[-1].startswith("error: "), err
    return err[-1]


@pytest.fixture(scope="module")
def short_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "run"
    args = [*SMALL, "--epochs", "2", "--steps-per-epoch", "2", "--out", str(out)]
    assert run_cli(train_command, args) == 0
    return out, args


def test_short_run_writes_loadable_best_and_last_with_the_command_line(short_run):
    out, args = short_run
    for name in ("best.pt", "last.pt"):
        ckpt = load_checkpoint(out / name)
        model = ckpt.build_model()
        assert ckpt.spec.name == "pipnet" and ckpt.layout.name == "wflw98"
        assert ckpt.provenance["command"] == "lmk-train " + shlex.join(args)
        assert ckpt.provenance["seed"] == 3 and ckpt.provenance["data"] == "synth"
        assert model(torch.zeros(1, 3, 64, 64))[0].shape == (1, 98, 2, 2)
    last = load_checkpoint(out / "last.pt").provenance
    log = _log(out)
    assert [r["epoch"] for r in log] == [1, 2] and last["epochs"] == 2 and last["step"] == 4
    assert last["final_nme"] == pytest.approx(log[-1]["val"]["nme"])
    assert last["best_nme"] == pytest.approx(min(r["val"]["nme"] for r in log))
    for record in log:
        assert record["samples"] == 8 and record["seconds"] > 0
        assert record["data_samples_per_s"] > 0 and record["step_samples_per_s"] > 0
        assert set(record["val"]) == {"nme", "fr", "auc", "count"}
    state = torch.load(state_path(out / "last.pt"), weights_only=True)
    assert state["epoch"] == 2 and state["step"] == 4


def test_resume_continues_the_run_with_its_optimizer_and_schedule(short_run, tmp_path):
    out, _ = short_run
    resumed = tmp_path / "resumed"
    shutil.copytree(out, resumed)
    args = [*SMALL, "--epochs", "3", "--steps-per-epoch", "2", "--resume", str(resumed / "last.pt")]
    assert run_cli(train_command, args) == 0
    ckpt = load_checkpoint(resumed / "last.pt")
    assert ckpt.provenance["epochs"] == 3 and ckpt.provenance["step"] == 6
    assert len(ckpt.provenance["commands"]) == 2 and "--resume" in ckpt.provenance["commands"][1]
    assert [r["epoch"] for r in _log(resumed)] == [1, 2, 3]
    state = torch.load(state_path(resumed / "last.pt"), weights_only=True)
    assert state["scheduler"]["last_epoch"] == 6
    assert all(s["step"].item() == 6 for s in state["optimizer"]["state"].values())


def test_resume_with_other_model_flags_is_refused(short_run, tmp_path, capsys):
    out, _ = short_run
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    args = [*SMALL, "--input-size", "96", "--epochs", "3", "--resume", str(copy / "last.pt")]
    assert run_cli(train_command, args) == 2
    line = _one_error_line(capsys)
    assert f"cannot resume {copy / 'last.pt'}: --input-size 96, but the checkpoint has 64" in line


def test_existing_run_is_not_overwritten(short_run, capsys):
    out, args = short_run
    before = (out / "last.pt").read_bytes()
    assert run_cli(train_command, args) == 2
    assert "already holds a run" in _one_error_line(capsys)
    assert (out / "last.pt").read_bytes() == before


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("wflw:/no/such/list.txt", "annotation file not found"),
        ("nonsense", "--data must be"),
        ("BROKEN", "expected 207 fields"),
        ("300w:/no/such/folder", "300W folder not found"),
    ],
)
def test_bad_data_is_a_one_line_error_with_exit_2(tmp_path, capsys, data, message):
    if data == "BROKEN":
        (tmp_path / "list.txt").write_text("0.5 0.5 oops\n")
        data = f"wflw:{tmp_path / 'list.txt'}"
    code = run_cli(train_command, [*SMALL, "--data", data, "--out", str(tmp_path / "out")])
    assert code == 2
    assert message in _one_error_line(capsys)
    assert not (tmp_path / "out" / "last.pt").exists()


def test_unreadable_image_in_a_worker_is_still_one_line(tmp_path, capsys):
    (tmp_path / "images").mkdir()
    coords = " ".join(f"{10 + i % 20}.0 {10 + i // 20}.0" for i in range(98))
    lines = [f"{coords} 5 5 40 40 0 0 0 0 0 0 {i}.png" for i in range(12)]
    (tmp_path / "list.txt").write_text("\n".join(lines) + "\n")
    for i in range(12):
        (tmp_path / "images" / f"{i}.png").write_bytes(b"garbage")
    args = [*SMALL, "--workers", "1", "--data", f"wflw:{tmp_path / 'list.txt'}"]
    assert run_cli(train_command, [*args, "--out", str(tmp_path / "out")]) == 2
    assert "cannot read image" in _one_error_line(capsys)


# Two epochs of 3 steps over 8 faces in batches of 4: an epoch is 1.5 passes over the data,
# so resuming must find the right pass, the right shuffle and the right batch within it.
EXACT = [*SMALL, "--epochs", "2", "--steps-per-epoch", "3"]


@pytest.fixture
def one_thread():
    """CPU results that do not depend on how work is split between threads."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = tmp_path_factory.mktemp("straight") / "run"
        assert run_cli(train_command, [*EXACT, "--out", str(out)]) == 0
    finally:
        torch.set_num_threads(threads)
    return out


@pytest.mark.parametrize(
    ("how", "code", "line", "epoch_step"),
    [
        # Ctrl-C while the 5th batch is loading: 4 steps done, 1 into epoch 2 (mid-pass).
        ("ctrl-c-between-steps", 130, "error: interrupted", 1),
        # SIGTERM in the 5th step's forward pass: the step finishes (BatchNorm statistics
        # and weights move together), then the run stops: 5 steps, 2 into epoch 2.
        ("sigterm-inside-a-step", 143, "error: terminated", 2),
    ],
)
def test_a_run_interrupted_mid_epoch_and_resumed_ends_with_the_uninterrupted_weights(
    straight_run, tmp_path, capsys, monkeypatch, one_thread, how, code, line, epoch_step
):
    from lmk.train.engine import Objective

    calls = {"batches": 0, "losses": 0}
    real_batches, real_loss = trainer._epoch_batches, Objective.loss

    def batches_then_ctrl_c(*args, **kwargs):
        for batch in real_batches(*args, **kwargs):
            if calls["batches"] == 4:
                raise KeyboardInterrupt
            calls["batches"] += 1
            yield batch

    def loss_then_sigterm(self, outputs, landmarks):
        if calls["losses"] == 4:
            os.kill(os.getpid(), signal.SIGTERM)  # run_cli turns it into cli_util.Terminated
        calls["losses"] += 1
        return real_loss(self, outputs, landmarks)

    if how == "ctrl-c-between-steps":
        monkeypatch.setattr(trainer, "_epoch_batches", batches_then_ctrl_c)
    else:
        monkeypatch.setattr(Objective, "loss", loss_then_sigterm)
    sigterm = signal.getsignal(signal.SIGTERM)
    out = tmp_path / "out"
    capsys.readouterr()
    try:
        assert run_cli(train_command, [*EXACT, "--out", str(out)]) == code
    finally:
        signal.signal(signal.SIGTERM, sigterm)
    err = capsys.readouterr().err.strip().splitlines()
    assert [e for e in err if e.startswith("error:")] == [line]
    saved = [e for e in err if "saved" in e]
    assert len(saved) == 1 and f"after step {epoch_step} of 3" in saved[0]
    assert f"--resume {out / 'last.pt'}" in saved[0]
    ckpt = load_checkpoint(out / "last.pt")
    steps = 3 + epoch_step
    assert ckpt.provenance["interrupted"] is True and ckpt.provenance["step"] == steps
    assert ckpt.provenance["epochs"] == 1 and ckpt.provenance["epoch_step"] == epoch_step
    state = torch.load(state_path(out / "last.pt"), weights_only=True)
    assert (state["epoch"], state["step"], state["epoch_step"]) == (1, steps, epoch_step)
    assert [r["epoch"] for r in _log(out)] == [1]

    monkeypatch.undo()
    # No flag but --resume: model, data and settings come from the checkpoint.
    assert run_cli(train_command, ["--resume", str(out / "last.pt"), "--workers", "0"]) == 0
    a, b = load_checkpoint(out / "last.pt"), load_checkpoint(straight_run / "last.pt")
    assert a.provenance["step"] == b.provenance["step"] == 6
    assert a.provenance["interrupted"] is False and a.provenance["epoch_step"] == 0
    for key, value in b.state_dict.items():  # tolerance 0: the very same arithmetic
        torch.testing.assert_close(a.state_dict[key], value, rtol=0, atol=0, msg=key)
    resumed_log, straight_log = _log(out), _log(straight_run)
    assert [r["epoch"] for r in resumed_log] == [1, 2]
    for mine, theirs in zip(resumed_log, straight_log, strict=True):
        assert mine["samples"] == theirs["samples"] == 12
        assert mine["loss"] == pytest.approx(theirs["loss"], rel=1e-6)
        assert mine["val"]["nme"] == pytest.approx(theirs["val"]["nme"], rel=1e-6)


class _SigtermOnFirstWrite:
    """A file whose first write sends this process SIGTERM, so the handler runs inside
    torch.save's C++ writer."""

    def __init__(self, fh):
        self.fh, self.sent = fh, False

    def write(self, data):
        if not self.sent:
            self.sent = True
            os.kill(os.getpid(), signal.SIGTERM)
        return self.fh.write(data)

    def flush(self):
        self.fh.flush()


def test_a_sigterm_inside_torch_save_of_an_epochs_files_ends_as_terminated(
    tmp_path, capsys, monkeypatch
):
    """Seen in a stress run of the hostile SIGTERM test: a signal raised inside torch.save's
    writer comes out as torch's RuntimeError ("unexpected pos"), a traceback and exit 1.
    Writing an epoch's files is held: the files land, then the run stops at that boundary."""
    real_save = torch.save
    calls = []

    def save_with_sigterm(obj, f, *args, **kwargs):
        calls.append(f)
        target = _SigtermOnFirstWrite(f) if len(calls) == 1 and hasattr(f, "write") else f
        return real_save(obj, target, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save_with_sigterm)
    sigterm = signal.getsignal(signal.SIGTERM)
    out = tmp_path / "out"
    capsys.readouterr()
    try:
        assert run_cli(train_command, [*EXACT, "--out", str(out)]) == 143
    finally:
        signal.signal(signal.SIGTERM, sigterm)
    assert calls and hasattr(calls[0], "write")  # the signal did land inside a torch.save
    err = capsys.readouterr().err
    assert "Traceback" not in err and "RuntimeError" not in err
    lines = err.strip().splitlines()
    assert [e for e in lines if e.startswith("error:")] == ["error: terminated"]
    assert any(f"continue with --resume {out / 'last.pt'}" in e for e in lines), err
    ckpt = load_checkpoint(out / "last.pt")
    assert (ckpt.provenance["epochs"], ckpt.provenance["step"]) == (1, 3)
    assert [r["epoch"] for r in _log(out)] == [1]


def test_tiny_hourglass_trains_with_adaptive_wing(tmp_path):
    out = tmp_path / "hg"
    args = [
        "--model", "hourglass", "--num-stacks", "2", "--num-features", "32", "--input-size", "64",
        "--heatmap-loss", "awing", "--train-size", "4", "--val-size", "2", "--batch-size", "2",
        "--epochs", "1", "--steps-per-epoch", "1", "--workers", "0", "--device", "cpu",
        "--out", str(out),
    ]  # fmt: skip
    assert run_cli(train_command, args) == 0
    ckpt = load_checkpoint(out / "best.pt")
    assert ckpt.spec.args["num_features"] == 32
    assert [o.shape for o in ckpt.build_model()(torch.zeros(1, 3, 64, 64))] == [(1, 98, 16, 16)] * 2


def test_backbone_weights_initialise_the_backbone_and_are_recorded(tmp_path, capsys):
    from lmk.models.backbones import build_backbone

    torch.manual_seed(11)
    imagenet = build_backbone("mobilenetv2", num_classes=1000).state_dict()
    weights = tmp_path / "mobilenet_v2.pth"
    torch.save(imagenet, weights)
    out = tmp_path / "init"
    args = [*SMALL, "--epochs", "1", "--steps-per-epoch", "1", "--lr", "1e-9"]
    assert (
        run_cli(train_command, [*args, "--backbone-weights", str(weights), "--out", str(out)]) == 0
    )
    ckpt = load_checkpoint(out / "last.pt")
    assert ckpt.provenance["backbone_weights"] == str(weights)
    key = "features.0.0.weight"  # a conv weight: BN statistics move, a 1e-9 step does not
    torch.testing.assert_close(ckpt.state_dict[key], imagenet[key], atol=1e-6, rtol=0)

    torch.save({"fc.weight": torch.zeros(2, 2)}, weights)
    assert (
        run_cli(
            train_command,
            [*args, "--backbone-weights", str(weights), "--overwrite", "--out", str(out)],
        )
        == 2
    )
    assert "not mobilenetv2 ImageNet weights" in _one_error_line(capsys)


def test_flags_that_do_not_fit_the_model_are_refused(tmp_path, capsys):
    code = run_cli(
        train_command, ["--model", "hourglass", "--backbone", "resnet18", "--out", str(tmp_path)]
    )
    assert code == 2
    assert "--backbone does not apply" in _one_error_line(capsys)


@pytest.mark.slow
def test_overfitting_16_faces_drives_their_nme_under_3_percent(tmp_path):
    started = time.perf_counter()
    out = tmp_path / "overfit"
    args = [
        "--model", "pipnet", "--backbone", "mobilenetv2", "--input-size", "64",
        "--train-size", "16", "--val-size", "4", "--batch-size", "16", "--steps-per-epoch", "60",
        "--epochs", "2", "--lr", "3e-3", "--no-augment", "--cache", "--workers", "0",
        "--device", "cpu", "--seed", "1", "--out", str(out),
    ]  # fmt: skip
    assert run_cli(train_command, args) == 0
    report = tmp_path / "train.json"
    eval_args = [str(out / "last.pt"), "--data", "synth", "--split", "train", "--seed", "1"]
    assert run_cli(eval_command, [*eval_args, "--size", "16", "--json", str(report)]) == 0
    result = json.loads(report.read_text())
    print(
        f"overfit: NME {100 * result['overall']['nme']:.2f}% in {time.perf_counter() - started:.1f} s"
    )
    assert result["overall"]["count"] == 16
    assert result["overall"]["nme"] < 0.03


@pytest.mark.slow
def test_two_process_torchrun_ends_with_identical_weights_on_both_ranks(tmp_path):
    out, hashes = tmp_path / "ddp", tmp_path / "hashes"
    hashes.mkdir()
    env = {**os.environ, HASH_ENV: str(hashes), "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
        "-m", "lmk.train.cli", *SMALL, "--epochs", "2", "--steps-per-epoch", "2",
        "--out", str(out),
    ]  # fmt: skip
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    rank0 = (hashes / "rank0.sha256").read_text()
    assert (hashes / "rank1.sha256").read_text() == rank0
    ckpt = load_checkpoint(out / "last.pt")
    assert state_hash(ckpt.build_model()) + "\n" == rank0
    assert ckpt.provenance["world_size"] == 2
    assert len(_log(out)) == 2 and _log(out)[0]["samples"] == 2 * 4 * 2  # steps x batch x ranks


def _sigterm_before_worker_init(worker_id: int) -> None:
    """A group-wide SIGTERM (here from the worker itself, so not from its parent) that lands
    after the worker's fork and before lmk's worker_init."""
    from lmk.train.interrupts import worker_init

    os.kill(os.getpid(), signal.SIGTERM)
    worker_init(worker_id)


def test_a_sigterm_between_a_workers_fork_and_worker_init_does_not_kill_the_worker():
    """The hostile SIGTERM test failed in CI with torch's "DataLoader worker ... is killed by
    signal" traceback from the iterator's __del__: torch's worker handler ends a worker on a
    SIGTERM from anyone but its parent until worker_init takes SIGTERM over. Interrupts.start
    forks the workers with SIGTERM blocked, so the signal waits for worker_init's thread (which
    ignores it) and all batches arrive."""
    from torch.utils.data import DataLoader

    from lmk.train.interrupts import Interrupts

    loader = DataLoader(
        list(range(8)), batch_size=2, num_workers=2, worker_init_fn=_sigterm_before_worker_init
    )
    with Interrupts() as interrupts:
        batches = [b.tolist() for b in interrupts.start(loader)]
        assert not interrupts.pending  # the parent never got a signal
    assert batches == [[0, 1], [2, 3], [4, 5], [6, 7]]
    assert signal.SIGTERM not in signal.pthread_sigmask(signal.SIG_BLOCK, set())  # mask restored
