"""lmk-export, lmk-eval, lmk-synth, lmk-bench and lmk demo on hostile input: an output that is
one of the command's inputs, a full disk, an output folder that cannot be written, model flags
and checkpoints no model can be made of, files that are not checkpoints at all.

Every case failed before issue 10's fixes (a traceback, exit 0, a damaged or half-written
file, or a message that did not say what was wrong), except the few marked "guard", which pin
behaviour that already held.

A full disk is simulated by a file-size limit (RLIMIT_FSIZE, SIGXFSZ ignored: writes past it
fail with EFBIG): through the installed console script (``Case.fsize``) for the commands whose
fix is about the process as a user runs it, and in-process (:func:`file_size_limit`) where the
run needs a trace or a benchmark that a fresh process would make slow.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import pickle
import resource
import shutil
import signal
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import trace_with_torchscript
from tests.hostile.conftest import Case, check_case

# A small ResNet-18 PIPNet for AFLW-19, as in tests/test_export_cli.py.
SMALL = ["--model", "pipnet", "--backbone", "resnet18", "--layout", "aflw19", "--num-nb", "4"]
C = "{assets}/commands"
WFLW_LIST = "list_98pt_rect_attr.txt"
CHECKPOINT_ARGS = {"num_lms": 98, "num_stacks": 1, "num_features": 16, "input_size": 64}


def _edited(data: dict, **fields) -> dict:
    """A checkpoint dict with fields replaced; ``model_args__input_size=0`` edits a nested one."""
    out = {**data, "model_args": dict(data["model_args"])}
    for key, value in fields.items():
        outer, _, inner = key.partition("__")
        if inner:
            out[outer] = {**out[outer], inner: value}
        else:
            out[outer] = value
    return out


@pytest.fixture(scope="session")
def command_assets(assets: Path) -> Path:
    """``assets/commands``: a tiny lmk checkpoint (a 1-stack, 16-feature hourglass, 64 px,
    WFLW-98), copies of it with fields no model can run with, files that are not checkpoints,
    and a three-face WFLW data set."""
    import torch

    from lmk.core.cli_util import run_cli
    from lmk.core.layouts import get_layout
    from lmk.models import random_checkpoint
    from lmk.synth.cli import cli as synth_cli

    root = assets / "commands"
    root.mkdir()
    random_checkpoint("hourglass", CHECKPOINT_ARGS, 0, "wflw98").save(root / "ck.pt")
    data = torch.load(root / "ck.pt", weights_only=True)
    bad = {
        "size0.pt": _edited(data, model_args__input_size=0),
        "std0.pt": _edited(data, normalisation__std=[0.0, 0.2, 0.2]),
        "enlarge.pt": _edited(data, crop__enlarge=-1.2),
        "layout68.pt": _edited(data, layout=get_layout("300w68").to_dict()),
    }
    for name, edited in bad.items():
        torch.save(edited, root / name)
    (root / "text.pt").write_text("epoch 3, loss 0.12\n")
    (root / "empty.pt").write_bytes(b"")
    shutil.copy(assets / "model.onnx", root / "onnx.pt")
    with zipfile.ZipFile(root / "nodata.pt", "w") as archive:
        archive.writestr("weights/readme.txt", "no pickle here")
    (root / "pickle.pt").write_bytes(pickle.dumps({"weights": [1.0, 2.0]}, protocol=2))
    # Old training scripts saved their argparse options beside the weights.
    torch.save({"state_dict": {}, "args": argparse.Namespace(lr=0.1)}, root / "object.pt")
    assert (
        run_cli(synth_cli, ["faces", "--out", str(root / "set"), "--n", "3", "--size", "96"]) == 0
    )
    import matplotlib.pyplot  # noqa: F401  (its font cache is written now, not under a limit)

    return root


@pytest.fixture(autouse=True)
def quick_and_cpu_only(monkeypatch):
    """The TorchScript tracer (seconds, where dynamo takes ~20 on 2 cores: the trace is not
    under test here), and GPU backends always skipped as on a machine without them."""
    from lmk.bench import runner

    trace_with_torchscript(monkeypatch)
    monkeypatch.setattr(runner, "onnxruntime_providers", lambda: ["CPUExecutionProvider"])


@contextlib.contextmanager
def file_size_limit(limit: int) -> Iterator[None]:
    """This process's files may not grow past ``limit`` bytes (a full disk without root)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, handler)


# ---- set-ups ------------------------------------------------------------------------------


def argv(text: str) -> list[str]:
    """Arguments written as one line (no argument here holds a space)."""
    return text.split()


def copy(source: str, name: str | None = None) -> Callable[[Path, Path], None]:
    """Copy ``assets/SOURCE`` (a file or folder) into the case's folder."""

    def setup(work: Path, assets: Path) -> None:
        src = assets / source
        dst = work / (name or src.name)
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst)
        else:
            shutil.copy(src, dst)

    return setup


def link(name: str, target: str) -> Callable[[Path, Path], None]:
    return lambda work, _assets: (work / name).symlink_to(target)


def file(name: str, text: str = "mine\n") -> Callable[[Path, Path], None]:
    def setup(work: Path, _assets: Path) -> None:
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_text(text)

    return setup


def steps(*setups: Callable[[Path, Path], None]) -> Callable[[Path, Path], None]:
    def setup(work: Path, assets: Path) -> None:
        for step in setups:
            step(work, assets)

    return setup


def calibration_folder(work: Path, assets: Path) -> None:
    (work / "crops").mkdir()
    for i in range(9):
        shutil.copy(assets / "images" / f"{i % 3:02d}.png", work / "crops" / f"{i:02d}.png")


def old_results(work: Path, _assets: Path) -> None:
    (work / "results").mkdir()
    for name in ("latency.json", "latency.md", "latency.png"):
        (work / "results" / name).write_text(f"last week's {name}\n")


def nothing_left(*names: str) -> Callable[[Path, Path, object], None]:
    def check(work: Path, _assets: Path, _outcome: object) -> None:
        left = [n for n in names if (work / n).exists()]
        assert not left, f"a failed run left {left}"

    return check


# ---- cases --------------------------------------------------------------------------------

EXPORT = [
    # --input-size 0 exported 256 px without a word (exit 0).
    Case(
        "export-input-size-zero",
        "lmk-export",
        [*SMALL, *argv("--input-size 0 -o {work}/m.onnx")],
        match="--input-size must be a multiple of 32 from 32 to 2048, got 0",
    ),
    # A traceback from torch.zeros inside the tracer.
    Case(
        "export-input-size-negative",
        "lmk-export",
        [*SMALL, *argv("--input-size -64 -o {work}/m.onnx")],
        match="--input-size .* got -64",
    ),
    # A 100000 px crop: a traceback (or the machine's memory) in the tracer.
    Case(
        "export-input-size-huge",
        "lmk-export",
        [*SMALL, *argv("--input-size 100000 -o {work}/m.onnx")],
        match="--input-size .* got 100000",
    ),
    # 96 px at stride 64: a traceback from the model's constructor.
    Case(
        "export-input-size-not-a-multiple-of-the-stride",
        "lmk-export",
        [*SMALL, *argv("--net-stride 64 --input-size 96 -o {work}/m.onnx")],
        match="--input-size must be a multiple of 64",
    ),
    # 'torch.onnx.export failed: ...' with no flag named.
    Case(
        "export-num-nb-zero",
        "lmk-export",
        [*SMALL, *argv("--num-nb 0 --input-size 64 -o {work}/m.onnx")],
        match="--num-nb must be 1 to 18, got 0",
    ),
    Case(
        "export-num-nb-more-than-the-layout-has",
        "lmk-export",
        [*SMALL, *argv("--num-nb 19 --input-size 64 -o {work}/m.onnx")],
        match="--num-nb must be 1 to 18, got 19",
    ),
    Case(
        "export-num-stacks-zero",
        "lmk-export",
        argv("--model hourglass --num-stacks 0 --input-size 64 -o {work}/m.onnx"),
        match="--num-stacks must be 1 to 8, got 0",
    ),
    # 1000 hourglasses: minutes of building and gigabytes of weights before any message.
    Case(
        "export-num-stacks-absurd",
        "lmk-export",
        argv("--model fan --num-stacks 1000 -o {work}/m.onnx"),
        match="--num-stacks must be 1 to 8, got 1000",
    ),
    # The checkpoint became an ONNX file.
    Case(
        "export-output-is-its-checkpoint",
        "lmk-export",
        argv("--model hourglass --checkpoint {work}/ck.pt -o {work}/ck.pt --overwrite"),
        setup=copy("commands/ck.pt"),
        match="ck.pt is an input of this command",
    ),
    Case(
        "export-output-links-to-its-checkpoint",
        "lmk-export",
        argv("--model hourglass --checkpoint {work}/ck.pt -o {work}/out.onnx --overwrite"),
        setup=steps(copy("commands/ck.pt"), link("out.onnx", "ck.pt")),
        match="out.onnx is an input of this command",
    ),
    # A calibration image became an ONNX file.
    Case(
        "export-output-is-a-calibration-image",
        "lmk-export",
        [*SMALL, *argv("--int8 --calib {work}/crops -o {work}/crops/04.png --overwrite")],
        setup=calibration_folder,
        match="04.png is an input of this command",
    ),
    # torch's "weights_only=False will likely succeed" advice for an ONNX file named .pt.
    Case(
        "export-checkpoint-that-is-an-onnx-file",
        "lmk-export",
        argv(f"--model hourglass --checkpoint {C}/onnx.pt -o {{work}}/m.onnx"),
        match=r"onnx.pt is not a PyTorch checkpoint \(it looks like an ONNX file\)",
    ),
]

DATA = f"--data wflw:{{work}}/set/{WFLW_LIST}"
EVAL = [
    # The model became JSON.
    Case(
        "eval-json-is-the-model",
        "lmk-eval",
        argv("{work}/model.onnx --size 2 --json {work}/model.onnx --overwrite"),
        setup=copy("model.onnx"),
        match="model.onnx is an input of this command",
    ),
    Case(
        "eval-json-links-to-the-checkpoint",
        "lmk-eval",
        argv("{work}/ck.pt --size 2 --json {work}/r.json --overwrite"),
        setup=steps(copy("commands/ck.pt"), link("r.json", "ck.pt")),
        match="r.json is an input of this command",
    ),
    # The annotation file became JSON results.
    Case(
        "eval-json-is-the-data-list",
        "lmk-eval",
        argv(f"{{assets}}/model.onnx {DATA} --json {{work}}/set/{WFLW_LIST} --overwrite"),
        setup=copy("commands/set"),
        match=f"{WFLW_LIST} is an input of this command",
    ),
    # One of the scored images became JSON results.
    Case(
        "eval-json-is-a-scored-image",
        "lmk-eval",
        argv(f"{{assets}}/model.onnx {DATA} --json {{work}}/set/images/000001.png --overwrite"),
        setup=copy("commands/set"),
        match="000001.png is an input of this command",
    ),
    # NME 200.9 % reported as a result, exit 0.
    Case(
        "eval-checkpoint-with-input-size-zero",
        "lmk-eval",
        argv(f"{C}/size0.pt --size 2"),
        match=r"size0.pt: model_args.input_size must be a multiple of 64 from 64 to 2048, got 0",
    ),
    Case(
        "eval-checkpoint-with-zero-std",
        "lmk-eval",
        argv(f"{C}/std0.pt --size 2"),
        match="std0.pt: field normalisation needs stds > 0",
    ),
    Case(
        "eval-checkpoint-with-negative-crop",
        "lmk-eval",
        argv(f"{C}/enlarge.pt --size 2"),
        match=r"enlarge.pt: field crop needs enlarge in \(0, 10\]",
    ),
    Case(
        "eval-checkpoint-whose-layout-has-other-points",
        "lmk-eval",
        argv(f"{C}/layout68.pt --size 2"),
        match="predicts 98 landmarks but layout '300w68' has 68",
    ),
    *[
        # torch's advice to load with weights_only=False (run the file's code) or a bare
        # "101" / "EOFError", where the file is simply not a checkpoint.
        Case(f"eval-checkpoint-that-is-{what}", "lmk-eval", argv(f"{C}/{name} --size 2"), match=m)
        for what, name, m in [
            ("text", "text.pt", r"text.pt is not a PyTorch checkpoint \(it is a text file\)"),
            ("empty", "empty.pt", r"empty.pt is not a PyTorch checkpoint \(it is empty\)"),
            ("onnx", "onnx.pt", r"onnx.pt is not a PyTorch checkpoint \(it looks like an ONNX"),
            ("a-zip", "nodata.pt", r"nodata.pt is not a PyTorch checkpoint \(it is a zip archive"),
            ("a-pickle", "pickle.pt", r"pickle.pt is not a PyTorch checkpoint \(it is a Python"),
            ("objects", "object.pt", r"object.pt holds a pickled Python object \(argparse.Names"),
        ]
    ],
]

SYNTH = [
    # The images stayed behind (a half data set without its list file).
    Case(
        "synth-faces-disk-full-leaves-no-half-data-set",
        "lmk-synth",
        argv("faces --out {work}/set --n 12 --size 16"),
        fsize=6000,
        match=f"disk full writing .*{WFLW_LIST}",
        check=nothing_left("set"),
    ),
    # Into a folder of the user's: their file stays, what the run added goes.
    Case(
        "synth-faces-disk-full-keeps-the-folder-it-found",
        "lmk-synth",
        argv("faces --out {work}/set --n 12 --size 16 --overwrite"),
        setup=file("set/notes.txt"),
        fsize=6000,
        match=f"disk full writing .*{WFLW_LIST}",
        check=nothing_left("set/images", "set/synthface.json"),
    ),
    # Exit 0 and an unplayable clip.mp4 (moov atom not found) moved into place.
    Case(
        "synth-video-disk-full-keeps-no-unplayable-clip",
        "lmk-synth",
        argv("video {work}/clip.mp4 --frames 10 --size 640x480"),
        fsize=30000,
        match=r"disk full writing .*clip.mp4 \(only 0 of 10 frames",
    ),
    # The .jsonl beside the clip linked to the clip: one output overwrote the other, exit 0.
    Case(
        "synth-video-jsonl-linked-to-the-clip",
        "lmk-synth",
        argv("video {work}/clip.mp4 --frames 2 --size 64x48 --overwrite"),
        setup=steps(copy("clip.mp4"), link("clip.jsonl", "clip.mp4")),
        match="clip.jsonl and .*clip.mp4 are one file",
    ),
]

# --backends trt_fp16 is skipped on a machine without TensorRT (and always here): the report
# is written without any model being measured, so these cases cost no benchmark time.
BENCH_ARGS = argv("--quick --models hourglass --backends trt_fp16 --batches 1")
BENCH = [
    # A traceback, after the whole benchmark had run.
    Case(
        "bench-out-under-proc",
        "lmk-bench",
        [*BENCH_ARGS, "--out", "/proc/lmk-bench-results"],
        match="cannot write to /proc/lmk-bench-results",
    ),
    Case(
        "bench-out-under-a-file",
        "lmk-bench",
        [*BENCH_ARGS, "--out", "{work}/notes.txt/results"],
        setup=file("notes.txt"),
        match="cannot write to .*notes.txt/results: Not a directory",
    ),
    # The checkpoint became latency.json.
    Case(
        "bench-result-is-its-checkpoint",
        "lmk-bench",
        [
            *BENCH_ARGS,
            *argv("--checkpoint hourglass={work}/results/latency.json"),
            *argv("--out {work}/results --overwrite"),
        ],
        setup=copy("commands/ck.pt", "results/latency.json"),
        match="latency.json is an input of this command",
    ),
    # "cannot read checkpoint text.pt: 101".
    Case(
        "bench-checkpoint-that-is-text",
        "lmk-bench",
        argv(
            "--quick --models hourglass --backends pytorch --batches 1 "
            f"--checkpoint hourglass={C}/text.pt --out {{work}}/results"
        ),
        match=r"text.pt is not a PyTorch checkpoint \(it is a text file\)",
        check=nothing_left("results"),
    ),
]

DEMO = [
    # Tracebacks (FileExistsError, NotADirectoryError, FileNotFoundError from mkdir).
    Case(
        "demo-out-is-a-file",
        "lmk",
        argv("demo --frames 2 --out {work}/notes.txt"),
        setup=file("notes.txt"),
        match="notes.txt exists and is not a folder",
    ),
    Case(
        "demo-out-under-a-file",
        "lmk",
        argv("demo --frames 2 --out {work}/notes.txt/demo"),
        setup=file("notes.txt"),
        match="cannot write to .*notes.txt/demo",
    ),
    Case(
        "demo-out-under-proc",
        "lmk",
        argv("demo --frames 2 --out /proc/lmk-demo"),
        match="cannot write to /proc/lmk-demo",
    ),
    # "was OpenCV built without FFmpeg?", and an empty demo_out/ left behind.
    Case(
        "demo-size-zero",
        "lmk",
        argv("demo --frames 2 --size 0x0"),
        match="--size must be between 32 and 8192 pixels per side, got 0x0",
    ),
    # Guard: a size that is not WxH was already one line, before any folder was made.
    Case("demo-size-not-a-size", "lmk", argv("demo --size abc"), match="--size must be"),
    # A clip rendered into demo_out/ before the unknown model was noticed, and left there.
    Case(
        "demo-unknown-model",
        "lmk",
        argv("demo --frames 2 --size 64x48 --models pipnet,retina"),
        match="retina",
    ),
    # The user's clip.mp4 in --out was replaced by the demo's without a word.
    Case(
        "demo-keeps-a-users-clip",
        "lmk",
        argv("demo --frames 2 --size 64x48 --out {work}/videos"),
        setup=file("videos/clip.mp4", "my holiday\n"),
        match="videos is not empty; pass --overwrite",
    ),
    # "error: disk full (File too large)" naming nothing, and a partial clip left in demo_out/.
    Case(
        "demo-disk-full-leaves-nothing",
        "lmk",
        argv("demo --frames 4 --size 64x48 --models pipnet"),
        fsize=4000,
        match=r"disk full writing demo_out/clip",
        check=nothing_left("demo_out"),
    ),
]

CASES = EXPORT + EVAL + SYNTH + BENCH + DEMO


@pytest.mark.parametrize("case", CASES, ids=str)
def test_hostile_commands(case, work, assets, command_assets):
    check_case(case, work, assets)


# In-process full disks: (case, byte limit). The limit holds only while the command runs.
LIMITED = [
    # Guard: an export that fills the disk was already one line and left nothing.
    (
        Case(
            "export-disk-full",
            "lmk-export",
            argv(f"--model hourglass --checkpoint {C}/ck.pt --no-simplify -o {{work}}/m.onnx"),
            match=r"disk full writing .*m.onnx",
        ),
        50_000,
    ),
    # Guard: lmk-eval's --json was already written through a temporary file.
    (
        Case(
            "eval-json-disk-full",
            "lmk-eval",
            argv(f"{C}/ck.pt --size 4 --json {{work}}/r.json"),
            match=r"disk full writing .*r.json",
        ),
        300,
    ),
    # The results folder was left behind (created before the report failed).
    (
        Case(
            "bench-disk-full-new-folder",
            "lmk-bench",
            [*BENCH_ARGS, "--out", "{work}/results"],
            match=r"disk full writing .*results/latency",
            check=nothing_left("results"),
        ),
        1000,
    ),
    # latency.json and .md were replaced, then the chart failed: a mixed set of results.
    (
        Case(
            "bench-disk-full-keeps-the-previous-results",
            "lmk-bench",
            [*BENCH_ARGS, "--out", "{work}/results", "--overwrite"],
            setup=old_results,
            match=r"disk full writing .*results/latency.png",
        ),
        8000,
    ),
]


@pytest.mark.parametrize("case, limit", LIMITED, ids=[str(c) for c, _ in LIMITED])
def test_hostile_commands_on_a_full_disk(case, limit, work, assets, command_assets):
    if case.setup is not None:  # the set-up writes without the limit
        case.setup(work, assets)
    with file_size_limit(limit):
        check_case(dataclasses.replace(case, setup=None), work, assets)
