"""The hostile-input harness: run a command as a user runs it, then check what lmk promises.

A case is one row of a table (:class:`Case`). :func:`check_case` runs it through the console
script's own function (``lmk.entry``, in-process for speed) or as a real subprocess of the
installed console script (``subprocess=True``: crashes, signals, the entry point itself), and
asserts, as applicable:

- the exit code (2 for a user error);
- exactly one ``error:`` line on stderr and no traceback;
- every file that existed before (in the case's folder and the shared assets) has the same
  type and md5 afterwards;
- no new file is left in the case's folder, except the ones the case names as outputs;
  in particular no temporary file (``*.lmk-part*``).

Arguments are strings with ``{work}`` (the case's own folder, where damage is checked) and
``{assets}`` (shared read-only inputs made once per session) placeholders.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import resource
import shutil
import signal
import stat
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from lmk import entry

ENTRY = {
    "lmk-run": entry.lmk_run,
    "lmk-batch": entry.lmk_batch,
    "lmk-export": entry.lmk_export,
    "lmk-synth": entry.lmk_synth,
    "lmk-train": entry.lmk_train,
    "lmk-eval": entry.lmk_eval,
    "lmk-bench": entry.lmk_bench,
    "lmk": entry.lmk,
}
BIN = Path(sys.executable).parent


@dataclass
class Outcome:
    code: int
    stdout: str
    stderr: str

    @property
    def errors(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.startswith("error:")]


@dataclass
class Case:
    """One hostile input. ``setup(work, assets)`` prepares the case's folder; ``check(work,
    assets, outcome)`` adds assertions of its own; ``outputs`` are files (relative to work)
    the command may create (a run that succeeds or warns)."""

    id: str
    command: str
    args: list[str]
    code: int = 2
    match: str | None = None
    """Regex the single error line must match (searched)."""
    setup: Callable[[Path, Path], None] | None = None
    check: Callable[[Path, Path, Outcome], None] | None = None
    outputs: list[str] = field(default_factory=list)
    subprocess: bool = False
    env: dict[str, str] = field(default_factory=dict)
    fsize: int | None = None
    """Run as a subprocess whose files may not grow past this many bytes (RLIMIT_FSIZE with
    SIGXFSZ ignored, so a write fails with EFBIG): a full disk without root."""
    signal_after: tuple[int, float | str] | None = None
    """Run as a subprocess and send it this signal (Ctrl-C, SIGTERM) once it is in a known
    state: this many seconds after lmk.entry has installed its handlers, or, given a glob
    instead, once a file it matches in the working folder has content (the work is under
    way). Counting from the start of the process instead made the cases depend on how fast
    the machine is: under load the interpreter's own start-up, or the imports, outlasted the
    delay."""
    warn: str | None = None
    """Regex a stderr line must match when the command succeeds with a warning."""

    def __str__(self) -> str:
        return self.id


def _fill(arg: str, work: Path, assets: Path) -> str:
    return arg.replace("{work}", str(work)).replace("{assets}", str(assets))


def _handlers_installed(pid: int) -> bool:
    """Whether the process catches SIGTERM, which Python leaves alone and lmk.entry installs
    before its heavy imports (True where /proc cannot tell)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return True
    caught = next(
        (line.split()[1] for line in status.splitlines() if line.startswith("SigCgt:")), None
    )
    return caught is None or bool(int(caught, 16) >> (signal.SIGTERM - 1) & 1)


def _has_content(folder: Path, pattern: str) -> bool:
    """Whether a file matching ``pattern`` in ``folder`` has content (one may be renamed away
    between the listing and its size)."""
    for path in folder.glob(pattern):
        with contextlib.suppress(FileNotFoundError):
            if path.stat().st_size:
                return True
    return False


def _wait_until(proc: subprocess.Popen, ready: Callable[[], bool], timeout: float = 120) -> None:
    """Poll ``ready`` until it holds or the process has ended."""
    deadline = time.monotonic() + timeout
    while proc.poll() is None and not ready():
        assert time.monotonic() < deadline, "the process never reached the state to signal in"
        time.sleep(0.005)


def run_entry(
    command: str,
    args: list[str],
    cwd: Path,
    *,
    in_subprocess: bool = False,
    env: dict[str, str] | None = None,
    timeout: float = 300,
    fsize: int | None = None,
    signal_after: tuple[int, float] | None = None,
) -> Outcome:
    """Run a console script with ``args`` in ``cwd``: in-process unless ``in_subprocess``,
    ``fsize`` or ``signal_after`` ask for a real process (see :class:`Case`)."""
    if in_subprocess or fsize is not None or signal_after is not None:

        def limit_file_size() -> None:
            if fsize is not None:
                signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
                resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

        proc = subprocess.Popen(
            [str(BIN / command), *args],
            cwd=cwd,
            env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1", **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            preexec_fn=limit_file_size,
        )
        if signal_after is not None:
            signum, when = signal_after
            _wait_until(proc, lambda: _handlers_installed(proc.pid))
            if isinstance(when, str):
                _wait_until(proc, lambda: _has_content(cwd, when))
            else:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=when)
            if proc.poll() is None:
                proc.send_signal(signum)
        out, err = proc.communicate(timeout=timeout)
        return Outcome(
            proc.returncode, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")
        )
    out, err = io.StringIO(), io.StringIO()
    old_argv, old_cwd = sys.argv, os.getcwd()
    # lmk.entry sets process-wide handlers (SIGTERM, and os._exit at shutdown): put pytest's
    # own back afterwards, or a later Ctrl-C would end the test run without a report.
    old_handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    old_env = {k: os.environ.get(k) for k in (env or {})}
    code = 0
    try:
        sys.argv = [command, *args]
        os.chdir(cwd)
        os.environ.update(env or {})
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                ENTRY[command]()
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            except BaseException:  # what a user would see as a traceback
                err.write(traceback.format_exc())
                code = 1
    finally:
        for signum, handler in old_handlers.items():
            signal.signal(signum, handler)
        sys.argv = old_argv
        os.chdir(old_cwd)
        for key, value in old_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return Outcome(code, out.getvalue(), err.getvalue())


def snapshot(root: Path) -> dict[str, tuple[str, str]]:
    """Every entry below ``root``: (type, md5 for files / target for links / '' otherwise)."""
    found: dict[str, tuple[str, str]] = {}
    for dirpath, dirnames, filenames in os.walk(os.fsencode(root)):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            rel = os.fsdecode(os.path.relpath(path, os.fsencode(root)))
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                found[rel] = ("link", os.fsdecode(os.readlink(path)))
            elif stat.S_ISREG(st.st_mode):
                with open(path, "rb") as fh:
                    found[rel] = ("file", hashlib.md5(fh.read()).hexdigest())
            elif stat.S_ISDIR(st.st_mode):
                found[rel] = ("dir", "")
            else:
                found[rel] = ("special", str(stat.S_IFMT(st.st_mode)))
    return found


def assert_files_kept(before: dict, after: dict, where: str) -> None:
    changed = [p for p, v in before.items() if after.get(p) != v]
    assert not changed, f"{where}: changed or lost: {changed}"


def assert_no_temporaries(after: dict) -> None:
    temps = [p for p in after if re.search(r"\.lmk-part|\.partial|\.part$|\.lmk-probe", p)]
    assert not temps, f"temporary files left behind: {temps}"


def check_case(case: Case, work: Path, assets: Path) -> Outcome:
    """Set the case up in ``work``, run it, and assert the promises (see module docstring)."""
    if case.setup is not None:
        case.setup(work, assets)
    before_work, before_assets = snapshot(work), snapshot(assets)
    args = [_fill(a, work, assets) for a in case.args]
    env = {k: _fill(v, work, assets) for k, v in case.env.items()}
    outcome = run_entry(
        case.command,
        args,
        work,
        in_subprocess=case.subprocess,
        env=env,
        fsize=case.fsize,
        signal_after=case.signal_after,
    )
    shown = f"exit {outcome.code}\n--- stderr:\n{outcome.stderr[-3000:]}"
    assert "Traceback" not in outcome.stderr, shown
    assert outcome.code == case.code, shown
    if case.code != 0:
        assert len(outcome.errors) == 1, shown
        if case.match:
            assert re.search(case.match, outcome.errors[0]), shown
    if case.warn:
        assert any(re.search(case.warn, line) for line in outcome.stderr.splitlines()), shown
    after_work = snapshot(work)
    assert_files_kept(before_work, after_work, "work folder")
    assert_files_kept(before_assets, snapshot(assets), "shared assets")
    assert_no_temporaries(after_work)
    new = sorted(set(after_work) - set(before_work) - set(case.outputs))
    new = [p for p in new if not any(p.startswith(o + os.sep) for o in case.outputs)]
    assert not new, f"unexpected new files: {new}\n{shown}"
    if case.check is not None:
        case.check(work, assets, outcome)
    return outcome


@pytest.fixture(scope="session")
def assets(tmp_path_factory) -> Path:
    """Shared inputs, made once: a short SynthFace clip (with its truth), three images, a
    copy of the bundled PIPNet model, and text files that are not what they claim to be."""
    from lmk.runtime.bundled import bundled_model
    from lmk.synth.video import write_clip

    root = tmp_path_factory.mktemp("assets")
    write_clip(root / "clip.mp4", 3, 12, (160, 120), jsonl=root / "clip.jsonl")
    import cv2

    capture = cv2.VideoCapture(str(root / "clip.mp4"))
    (root / "images").mkdir()
    for i in range(3):
        ok, image = capture.read()
        assert ok
        cv2.imwrite(str(root / "images" / f"{i:02d}.png"), image)
    capture.release()
    shutil.copy(bundled_model("pipnet"), root / "model.onnx")
    (root / "notes.txt").write_text("not a model\n")
    return root


@pytest.fixture
def work(tmp_path) -> Path:
    folder = tmp_path / "work"
    folder.mkdir()
    return folder
