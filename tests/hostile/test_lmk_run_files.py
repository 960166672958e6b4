"""lmk-run never costs a user a file: its outputs against devices, FIFOs, symbolic links, its
own inputs (every file of a folder or glob, the video, the models), a full disk, file names
that are not UTF-8, damaged videos, Ctrl-C and SIGTERM.

Every case failed before lmk-run wrote through lmk.core.fileio, except those marked "guard" (they
held already and pin it). Cases that wrote into /dev before the fix are marked "root-unsafe
before the fix": never run them against an old checkout as root.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import signal
import stat
import subprocess
import threading
from pathlib import Path

import cv2
import pytest

from lmk.core.fileio import TEMP_SUFFIX
from tests.hostile.conftest import BIN, Case, Outcome, check_case

EXTRA = "run_files"
"""Sub-folder of the shared assets holding this file's own inputs (see :func:`run_files`)."""

BAD = os.fsdecode(b"\xff")
"""A byte that is not UTF-8, as Python spells it in a file name (a lone surrogate)."""


def _decodable(path: Path) -> tuple[int, int]:
    """(frames OpenCV decodes, frames the container announces)."""
    capture = cv2.VideoCapture(str(path))
    announced = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    decoded = sum(bool(capture.read()[0]) for _ in range(announced))
    capture.release()
    return decoded, announced


def _damaged_copy(clip: Path, out: Path, start: int, end: int) -> tuple[int, int]:
    data = bytearray(clip.read_bytes())
    data[start:end] = bytes(end - start)
    out.write_bytes(bytes(data))
    return _decodable(out)


@pytest.fixture(scope="session")
def run_files(assets: Path) -> Path:
    """This file's inputs, made once beside the shared ones: a 200-frame clip for signals,
    an mp4 with one undecodable frame, one with most frames undecodable, an AVI cut in half
    (its index gone, its header still announcing 12 frames) and an mp4 cut in half."""
    from lmk.synth.video import write_clip

    root = assets / EXTRA
    root.mkdir()
    write_clip(root / "long.mp4", 7, 200, (320, 240))
    clip = assets / "clip.mp4"
    data = clip.read_bytes()
    mdat, moov = data.find(b"mdat"), data.find(b"moov")
    assert 0 < mdat < moov, "the clip's index is expected after its frames"
    # One frame: zero 200 bytes somewhere in the frames until exactly one frame (not the
    # first) fails to decode and the others still do.
    for start in range(mdat + 400, moov - 400, 100):
        if _damaged_copy(clip, root / "one_bad.mp4", start, start + 200) == (11, 12):
            capture = cv2.VideoCapture(str(root / "one_bad.mp4"))
            first_frame_whole = capture.read()[0]
            capture.release()
            if first_frame_whole:
                break
    else:
        pytest.fail("no 200-byte damage of the clip breaks exactly one frame")
    decoded, announced = _damaged_copy(clip, root / "mostly_bad.mp4", mdat + 960, moov - 250)
    assert announced == 12 and 1 <= decoded <= 5, decoded
    capture = cv2.VideoCapture(str(clip))
    writer = cv2.VideoWriter(
        str(root / "full.avi"), cv2.VideoWriter.fourcc(*"MJPG"), 25, (160, 120)
    )
    while True:
        ok, image = capture.read()
        if not ok:
            break
        writer.write(image)
    writer.release()
    capture.release()
    avi = (root / "full.avi").read_bytes()
    (root / "half.avi").write_bytes(avi[: len(avi) // 2])
    (root / "full.avi").unlink()
    decoded, announced = _decodable(root / "half.avi")
    assert announced == 12 and 1 <= decoded <= 5, decoded
    (root / "half.mp4").write_bytes(data[: len(data) // 2])
    return root


# ---- set-ups and checks -------------------------------------------------------------------


def copy(name: str, to: str | None = None):
    """Set-up: copy a shared asset (file or folder) into the case's folder."""

    def setup(work: Path, assets: Path) -> None:
        source, target = assets / name, work / (to or Path(name).name)
        if source.is_dir():
            shutil.copytree(source, target)
        else:
            shutil.copy(source, target)

    return setup


def steps(*setups):
    def setup(work: Path, assets: Path) -> None:
        for step in setups:
            step(work, assets)

    return setup


def link(name: str, target: str):
    """Set-up: a symbolic link ``work/name`` -> ``target`` ({work} filled in)."""

    def setup(work: Path, _assets: Path) -> None:
        os.symlink(target.replace("{work}", str(work)), work / name)

    return setup


def write(name: str, text: str = "precious\n"):
    def setup(work: Path, _assets: Path) -> None:
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_text(text)

    return setup


def folder(name: str):
    def setup(work: Path, _assets: Path) -> None:
        (work / name).mkdir()

    return setup


def records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def jsonl_lines(name: str, count: int):
    """Check: ``work/name`` holds ``count`` JSON lines, one per frame."""

    def check(work: Path, _assets: Path, _outcome: Outcome) -> None:
        assert len(records(work / name)) == count

    return check


def dev_null_kept(_work: Path, _assets: Path, _outcome: Outcome) -> None:
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    assert stat.S_ISLNK(os.lstat("/dev/stdout").st_mode)


def stdout_lines(count: int):
    """Check: the run wrote ``count`` JSON lines through its standard output, and
    /dev/stdout is still the system's link."""

    def check(work: Path, assets: Path, outcome: Outcome) -> None:
        lines = outcome.stdout.splitlines()
        assert len(lines) == count and all("landmarks" in json.loads(x)["faces"][0] for x in lines)
        dev_null_kept(work, assets, outcome)

    return check


def stdout_csv_rows(count: int):
    """Check: the run wrote a CSV header and ``count`` rows through its standard output."""

    def check(_work: Path, _assets: Path, outcome: Outcome) -> None:
        rows = list(csv.reader(io.StringIO(outcome.stdout)))
        assert rows[0][:4] == ["frame", "name", "face", "score"] and len(rows) == 1 + count
        assert [int(r[0]) for r in rows[1:]] == list(range(count))

    return check


def latin_1_image_named(work: Path, _assets: Path, _outcome: Outcome) -> None:
    """All four images read; the odd name is written as ``\\xff`` (valid UTF-8 JSON)."""
    names = [r["name"] for r in records(work / "lm.jsonl")]
    assert len(names) == 4 and names[3].endswith("images/\\xff.png"), names
    assert len((work / "lm.csv").read_text(encoding="utf-8").splitlines()) == 1 + 4


def five_frames_kept(work: Path, _assets: Path, _outcome: Outcome) -> None:
    assert len(records(work / "lm.jsonl")) == 5
    assert len((work / "lm.csv").read_text().splitlines()) == 1 + 5


def elsewhere(work: Path) -> Path:
    """A folder beside the case's folder (outside what the harness snapshots)."""
    return work.parent / "elsewhere"


def link_to_elsewhere(name: str):
    def setup(work: Path, _assets: Path) -> None:
        elsewhere(work).mkdir()
        (elsewhere(work) / name).write_text("old results\n")
        os.symlink(elsewhere(work) / name, work / name)

    return setup


def target_replaced(name: str, count: int):
    """Check: the link's target (outside work) now holds the run's ``count`` lines; the
    harness has already checked that the link itself is still the same link."""

    def check(work: Path, _assets: Path, _outcome: Outcome) -> None:
        target = elsewhere(work) / name
        assert stat.S_ISREG(os.lstat(target).st_mode)
        assert len(records(target)) == count
        assert not [p for p in os.listdir(elsewhere(work)) if p != name]  # no temporary file

    return check


_FIFO_READS: dict[Path, list[bytes]] = {}


def fifo(name: str, link_name: str | None = None):
    """Set-up: a FIFO ``work/name`` (and a symbolic link to it) with a reader thread."""

    def setup(work: Path, _assets: Path) -> None:
        os.mkfifo(work / name)
        if link_name:
            os.symlink(work / name, work / link_name)
        got: list[bytes] = []
        _FIFO_READS[work] = got

        def read() -> None:
            with open(work / name, "rb") as fh:
                got.append(fh.read())

        threading.Thread(target=read, daemon=True).start()

    return setup


def fifo_got(count: int):
    def check(work: Path, _assets: Path, _outcome: Outcome) -> None:
        for _ in range(100):
            if _FIFO_READS[work]:
                break
            threading.Event().wait(0.05)
        lines = b"".join(_FIFO_READS[work]).decode().splitlines()
        assert len(lines) == count and json.loads(lines[0])["frame"] == 0

    return check


def video_frames(name: str, count: int):
    """Check: ``work/name`` is a video of ``count`` frames (opened as lmk-run opens any name)."""

    def check(work: Path, _assets: Path, _outcome: Outcome) -> None:
        from lmk.runtime.sources import open_video

        capture = open_video(work / name)
        got = 0
        while capture.read()[0]:
            got += 1
        capture.release()
        assert got == count

    return check


def frames_skip(missing_frames: int):
    """Check: the JSONL numbers frames as the video does, so a lost frame leaves a gap."""

    def check(work: Path, _assets: Path, _outcome: Outcome) -> None:
        numbers = [r["frame"] for r in records(work / "lm.jsonl")]
        assert numbers == sorted(numbers) and numbers[0] == 0
        assert numbers[-1] - numbers[0] + 1 - len(numbers) == missing_frames

    return check


def lines_parse(work: Path, _assets: Path, outcome: Outcome) -> None:
    """Check after a signal: whatever JSONL was kept is whole lines, one per frame done."""
    path = work / "lm.jsonl"
    if path.exists():
        numbers = [r["frame"] for r in records(path)]
        assert numbers == list(range(len(numbers)))


CLIP = "{assets}/clip.mp4"
BOX = ["--box", "0,0,160,120"]
"""A fixed face region: a damaged frame holds no face, and searching for one is slow."""
ORT_SESSION_FILE = "tmp/.ses"
"""What importing onnxruntime writes into $TMPDIR (not lmk's to clean up)."""
Q = "--quiet"

CASES = [
    # ---- 1. devices, FIFOs and symbolic links are written through, never replaced ----------
    # root-unsafe before the fix: /dev/null was replaced by a regular file.
    Case(
        "json-dev-null-overwrite-stays-a-device",
        "lmk-run",
        [CLIP, "--json", "/dev/null", "--overwrite", Q],
        code=0,
        check=dev_null_kept,
    ),
    # root-unsafe before the fix.
    Case(
        "csv-dev-null-stays-a-device",
        "lmk-run",
        [CLIP, "--csv", "/dev/null", Q],
        code=0,
        check=dev_null_kept,
    ),
    Case(
        "json-symlink-to-dev-null-stays-a-link",
        "lmk-run",
        [CLIP, "--json", "{work}/sink.jsonl", "--overwrite", Q],
        code=0,
        setup=steps(link("sink.jsonl", "/dev/null"), folder("tmp")),
        check=dev_null_kept,
        subprocess=True,
        env={"TMPDIR": "{work}/tmp"},  # the write-through temporary file must go too
        outputs=[ORT_SESSION_FILE],
    ),
    Case(
        "out-mp4-symlink-to-dev-null-stays-a-link",
        "lmk-run",
        [CLIP, "--out", "{work}/annotated.mp4", Q],
        code=0,
        setup=steps(link("annotated.mp4", "/dev/null"), folder("tmp")),
        check=dev_null_kept,
        subprocess=True,
        env={"TMPDIR": "{work}/tmp"},
        outputs=[ORT_SESSION_FILE],
    ),
    Case(
        "json-into-a-fifo-keeps-the-fifo",
        "lmk-run",
        [CLIP, "--json", "{work}/pipe", Q],
        code=0,
        setup=fifo("pipe"),
        check=fifo_got(12),
    ),
    Case(
        "json-symlink-to-a-fifo-keeps-both",
        "lmk-run",
        [CLIP, "--json", "{work}/lm.jsonl", "--overwrite", Q],
        code=0,
        setup=fifo("pipe", link_name="lm.jsonl"),
        check=fifo_got(12),
    ),
    Case(
        "json-symlink-to-proc-self-fd-1-writes-stdout",
        "lmk-run",
        [CLIP, "--json", "{work}/out.jsonl", "--overwrite", Q],
        code=0,
        setup=link("out.jsonl", "/proc/self/fd/1"),
        check=stdout_lines(12),
        subprocess=True,
    ),
    # root-unsafe before the fix: /dev/stdout (a link) was replaced.
    Case(
        "json-dev-stdout-writes-stdout",
        "lmk-run",
        [CLIP, "--json", "/dev/stdout", Q],
        code=0,
        check=stdout_lines(12),
        subprocess=True,
    ),
    # A file named "-" in the working folder, where users meant standard output.
    Case(
        "json-dash-streams-stdout-and-writes-no-file-named-dash",
        "lmk-run",
        [CLIP, "--json", "-", Q],
        code=0,
        check=stdout_lines(12),
        subprocess=True,
    ),
    Case(
        "csv-dash-streams-stdout",
        "lmk-run",
        [CLIP, "--csv", "-", Q],
        code=0,
        check=stdout_csv_rows(12),
        subprocess=True,
    ),
    Case(  # the usual way to name a file "-"
        "json-dot-slash-dash-is-a-file",
        "lmk-run",
        [CLIP, "--json", "./-", Q],
        code=0,
        outputs=["-"],
    ),
    Case(
        "json-and-csv-both-dash",
        "lmk-run",
        [CLIP, "--json", "-", "--csv", "-", Q],
        match="^error: --json and --csv both name standard output",
    ),
    Case(
        "out-dash",
        "lmk-run",
        [CLIP, "--out", "-", Q],
        match="cannot go to standard output$",
    ),
    Case(
        "json-symlink-to-a-file-replaces-the-target-not-the-link",
        "lmk-run",
        [CLIP, "--json", "{work}/lm.jsonl", "--overwrite", Q],
        code=0,
        setup=link_to_elsewhere("lm.jsonl"),
        check=target_replaced("lm.jsonl", 12),
    ),
    Case(  # guard: a symbolic link's target is an existing file too
        "json-symlink-to-a-file-needs-overwrite",
        "lmk-run",
        [CLIP, "--json", "{work}/lm.jsonl", Q],
        match="exists; pass --overwrite",
        setup=link_to_elsewhere("lm.jsonl"),
    ),
    # ---- 2/3. no output is any input of the run ---------------------------------------------
    Case(
        "json-onto-an-image-of-the-folder-input",
        "lmk-run",
        ["{work}/images", "--json", "{work}/images/01.png", "--overwrite", Q],
        match="is an input",
        setup=copy("images"),
    ),
    Case(
        "csv-onto-an-image-of-the-glob-input",
        "lmk-run",
        ["{work}/images/*.png", "--csv", "{work}/images/00.png", "--overwrite", Q],
        match="is an input",
        setup=copy("images"),
    ),
    Case(
        "out-onto-the-only-image-of-the-folder-input",
        "lmk-run",
        ["{work}/one", "--out", "{work}/one/00.png", "--overwrite", Q],
        match="is an input",
        setup=steps(folder("one"), copy("images/00.png", "one/00.png")),
    ),
    Case(  # guard: the old check followed links too
        "out-is-the-video-input-through-a-symlink",
        "lmk-run",
        ["{work}/clip.mp4", "--out", "{work}/annotated.mp4", "--overwrite", Q],
        match="is an input",
        setup=steps(copy("clip.mp4"), link("annotated.mp4", "{work}/clip.mp4")),
    ),
    Case(
        "json-is-the-model-file",
        "lmk-run",
        [CLIP, "--model", "{work}/model.onnx", "--json", "{work}/model.onnx", "--overwrite", Q],
        match="is an input",
        setup=copy("model.onnx"),
    ),
    Case(
        "csv-is-the-detector-model",
        "lmk-run",
        [
            CLIP,
            "--detector",
            "yunet",
            "--detector-model",
            "{work}/yunet.onnx",
            "--csv",
            "{work}/yunet.onnx",
            "--overwrite",
            Q,
        ],
        match="is an input",
        setup=copy("notes.txt", "yunet.onnx"),
    ),
    Case(
        "json-is-the-detector-model-named-by-the-environment",
        "lmk-run",
        [CLIP, "--json", "{work}/yunet.onnx", "--overwrite", Q],
        match="is an input",
        setup=copy("notes.txt", "yunet.onnx"),
        env={"LMK_YUNET_MODEL": "{work}/yunet.onnx"},
    ),
    Case(
        "json-and-csv-are-one-file-by-two-names",
        "lmk-run",
        [CLIP, "--json", "{work}/lm.txt", "--csv", "{work}/sub/../lm.txt", Q],
        match="same file",
        setup=folder("sub"),
    ),
    # ---- 4. a full disk: one line, nothing half-written, the old file kept ------------------
    Case(
        "json-disk-full-keeps-the-old-file",
        "lmk-run",
        [CLIP, "--json", "{work}/lm.jsonl", "--overwrite", Q],
        match=r"disk full writing .*lm\.jsonl",
        setup=write("lm.jsonl"),
        fsize=2000,  # the first frame's line fits, the second does not
    ),
    Case(
        "csv-disk-full",
        "lmk-run",
        [CLIP, "--csv", "{work}/lm.csv", Q],
        match=r"disk full writing .*lm\.csv",
        fsize=3000,  # the header and a row fit
    ),
    Case(
        "mp4-disk-full-is-not-moved-into-place",
        "lmk-run",
        [CLIP, "--out", "{work}/annotated.mp4", "--overwrite", Q],
        match=r"disk full writing .*annotated\.mp4",
        setup=write("annotated.mp4", "an older video\n"),
        fsize=6000,  # the whole video takes about 19 kB: its index is never written
    ),
    Case(
        "avi-disk-full-with-a-patched-header",
        "lmk-run",
        [CLIP, "--out", "{work}/annotated.avi", Q],
        match=r"disk full writing .*annotated\.avi",
        fsize=6000,  # the AVI header still announces every frame
    ),
    Case(
        "png-disk-full",
        "lmk-run",
        ["{assets}/images/00.png", "--out", "{work}/annotated.png", Q],
        match=r"disk full writing .*annotated\.png",
        fsize=2000,
    ),
    Case(
        "a-video-that-does-not-fit-discards-the-jsonl-that-did",
        "lmk-run",
        [CLIP, "--limit", "3", "--json", "{work}/lm.jsonl", "--out", "{work}/a.mp4", Q],
        match=r"disk full writing .*a\.mp4",
        fsize=6000,  # the JSONL of 3 frames takes about 5 kB, their video about 7 kB
    ),
    Case(
        "a-jsonl-that-does-not-fit-discards-the-csv-that-did",
        "lmk-run",
        [CLIP, "--limit", "6", "--csv", "{work}/lm.csv", "--json", "{work}/lm.jsonl", Q],
        match=r"disk full writing .*lm\.jsonl",
        fsize=9200,  # 6 frames: the CSV takes about 8.2 kB, the JSONL 10.3 kB
    ),
    # ---- 6. file names that are not UTF-8 (OpenCV segfaulted on them) -----------------------
    Case(
        "video-named-in-latin-1",
        "lmk-run",
        [f"{{work}}/v{BAD}.mp4", "--json", "{work}/lm.jsonl", Q],
        code=0,
        setup=steps(copy("clip.mp4", f"v{BAD}.mp4"), folder("tmp")),
        outputs=["lm.jsonl", ORT_SESSION_FILE],
        check=jsonl_lines("lm.jsonl", 12),
        subprocess=True,
        env={"TMPDIR": "{work}/tmp"},  # the ASCII link it opens through must be gone
    ),
    Case(
        "not-a-video-named-in-latin-1",
        "lmk-run",
        [f"{{work}}/x{BAD}.mp4", Q],
        match="not a video",
        setup=copy("notes.txt", f"x{BAD}.mp4"),
        subprocess=True,
    ),
    Case(
        "folder-with-an-image-named-in-latin-1",
        "lmk-run",
        ["{work}/images", "--json", "{work}/lm.jsonl", "--csv", "{work}/lm.csv", Q],
        code=0,
        setup=steps(copy("images"), copy("images/01.png", f"images/{BAD}.png")),
        outputs=["lm.jsonl", "lm.csv"],
        check=latin_1_image_named,
        subprocess=True,
    ),
    Case(
        "annotated-video-named-in-latin-1",
        "lmk-run",
        [CLIP, "--out", f"{{work}}/o{BAD}.mp4", Q],
        code=0,
        outputs=[f"o{BAD}.mp4"],
        check=video_frames(f"o{BAD}.mp4", 12),
        subprocess=True,
    ),
    Case(
        "annotated-image-named-in-latin-1",
        "lmk-run",
        ["{assets}/images/00.png", "--out", f"{{work}}/o{BAD}.png", Q],
        code=0,
        outputs=[f"o{BAD}.png"],
        subprocess=True,
    ),
    Case(  # guard: Python wrote such JSONL names before too; now through an ASCII temp name
        "jsonl-named-in-latin-1",
        "lmk-run",
        [CLIP, "--json", f"{{work}}/o{BAD}.jsonl", Q],
        code=0,
        outputs=[f"o{BAD}.jsonl"],
        check=jsonl_lines(f"o{BAD}.jsonl", 12),
    ),
    # ---- 8. damaged videos: go on past a bad frame, say what was lost ----------------------
    Case(
        "video-with-one-undecodable-frame-goes-on",
        "lmk-run",
        [f"{{assets}}/{EXTRA}/one_bad.mp4", *BOX, "--json", "{work}/lm.jsonl", Q],
        code=0,
        warn=r"^warning: only 11 of 12 frames of .*one_bad\.mp4 could be decoded",
        outputs=["lm.jsonl"],
        check=frames_skip(1),
    ),
    Case(
        "video-mostly-undecodable-is-an-error",
        "lmk-run",
        [f"{{assets}}/{EXTRA}/mostly_bad.mp4", *BOX, "--json", "{work}/lm.jsonl", Q],
        match=r"only \d of 12 frames of .*mostly_bad\.mp4 could be decoded",
        outputs=["lm.jsonl"],  # kept: valid for the frames that were read
    ),
    Case(
        "avi-cut-in-half-is-an-error",
        "lmk-run",
        [f"{{assets}}/{EXTRA}/half.avi", *BOX, "--csv", "{work}/lm.csv", Q],
        match=r"only \d of 12 frames of .*half\.avi could be decoded",
        outputs=["lm.csv"],
    ),
    Case(  # guard: an mp4 cut in half has lost its index and does not open at all
        "mp4-cut-in-half",
        "lmk-run",
        [f"{{assets}}/{EXTRA}/half.mp4", *BOX, "--json", "{work}/lm.jsonl", Q],
        match="not a video OpenCV can open",
    ),
    # ---- 9/11. one line, and no --overwrite advice where it cannot help ---------------------
    Case(  # guard (fixed with lmk.core.fileio): was a traceback
        "json-in-proc",
        "lmk-run",
        [CLIP, "--json", "/proc/x.jsonl", Q],
        match="cannot write to /proc",
    ),
    Case(  # guard (fixed with lmk.core.fileio): suggested --overwrite
        "json-is-a-folder",
        "lmk-run",
        [CLIP, "--json", "{work}/results", "--overwrite", Q],
        match=r"is a folder; name a file inside it$",
        setup=folder("results"),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_hostile_lmk_run_files(case, work, assets, run_files):
    check_case(case, work, assets)


# ---- signals ----------------------------------------------------------------------------
LONG = [f"{{assets}}/{EXTRA}/long.mp4", "--detect-every", "1", "--json", "{work}/lm.jsonl", Q]
"""A run that takes far longer than the signal's delay: every frame runs the detector."""
RUN_UNDER_WAY = f".lm.*{TEMP_SUFFIX}.jsonl"
"""lm.jsonl's temporary file, once it has a frame's line."""

SIGNAL_CASES = [
    Case(  # guard (lmk.entry): Ctrl-C while lmk-run is still importing its libraries
        "ctrl-c-while-starting",
        "lmk-run",
        LONG,
        code=130,
        match="^error: interrupted$",
        signal_after=(signal.SIGINT, 0.15),
    ),
    Case(
        "sigterm-while-starting",
        "lmk-run",
        LONG,
        code=143,
        match="^error: terminated$",
        signal_after=(signal.SIGTERM, 0.15),
    ),
    Case(  # guard: Ctrl-C during the run keeps the lines of the frames done
        "ctrl-c-during-the-run",
        "lmk-run",
        LONG,
        code=130,
        match="^error: interrupted$",
        outputs=["lm.jsonl"],
        check=lines_parse,
        signal_after=(signal.SIGINT, RUN_UNDER_WAY),
    ),
    Case(
        "sigterm-during-the-run",
        "lmk-run",
        LONG,
        code=143,
        match="^error: terminated$",
        outputs=["lm.jsonl"],
        check=lines_parse,
        signal_after=(signal.SIGTERM, RUN_UNDER_WAY),
    ),
]


@pytest.mark.parametrize("case", SIGNAL_CASES, ids=str)
def test_hostile_lmk_run_signals(case, work, assets, run_files):
    check_case(case, work, assets)


def test_hostile_lmk_run_json_to_a_pipe_whose_reader_leaves(work, assets, run_files):
    """``lmk-run long.mp4 --json - | head -n 1``: the reader leaves after one line. One error
    line and exit 2, no traceback (none either from Python's flush of stdout at exit), and no
    file left behind."""
    proc = subprocess.Popen(
        [
            str(BIN / "lmk-run"),
            f"{assets}/{EXTRA}/long.mp4",
            "--detect-every",
            "1",
            "--json",
            "-",
            Q,
        ],
        cwd=work,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )
    try:
        first = proc.stdout.readline()
        proc.stdout.close()
        err = proc.stderr.read().decode()
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert json.loads(first)["frame"] == 0
    assert proc.returncode == 2, err
    assert "Traceback" not in err and "Exception ignored" not in err, err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert errors == ["error: standard output was closed before the run ended"], err
    assert not [p.name for p in work.rglob("*") if p.name == "-" or TEMP_SUFFIX in p.name]


# Signals at an exact frame: Tracker.step raises what the signal handler raises.
STEP_CASES = [
    # Before the fix: "no readable frame in clip.mp4", blaming the input.
    (
        Case(
            "ctrl-c-before-the-first-frame",
            "lmk-run",
            [CLIP, "--json", "{work}/lm.jsonl", "--out", "{work}/a.mp4", Q],
            code=130,
            match="^error: interrupted$",
        ),
        1,
        KeyboardInterrupt,
    ),
    (
        Case(
            "sigterm-before-the-first-frame",
            "lmk-run",
            [CLIP, "--json", "{work}/lm.jsonl", Q],
            code=143,
            match="^error: terminated$",
        ),
        1,
        "Terminated",
    ),
    (
        Case(
            "sigterm-after-five-frames-keeps-them",
            "lmk-run",
            [CLIP, "--json", "{work}/lm.jsonl", "--csv", "{work}/lm.csv", Q],
            code=143,
            match="^error: terminated$",
            outputs=["lm.jsonl", "lm.csv"],
            check=five_frames_kept,
        ),
        6,
        "Terminated",
    ),
]


@pytest.mark.parametrize(("case", "at_call", "raised"), STEP_CASES, ids=lambda v: str(v))
def test_hostile_lmk_run_signal_at_a_frame(case, at_call, raised, work, assets, monkeypatch):
    from lmk.core import cli_util
    from lmk.runtime import tracking

    exc = cli_util.Terminated if raised == "Terminated" else raised
    real_step, calls = tracking.Tracker.step, []

    def step(self, frame, dt=1 / 30):
        calls.append(1)
        if len(calls) == at_call:
            raise exc()
        return real_step(self, frame, dt)

    monkeypatch.setattr(tracking.Tracker, "step", step)
    check_case(case, work, assets)
