"""Every console script reports a user error the same way: one ``error:`` line and exit 2,
also through the installed script (a subprocess), which is where lmk-synth once exited 0."""

from __future__ import annotations

import signal

import pytest

from tests.hostile.conftest import Case, check_case

CASES = [
    Case(
        "synth-video-wrong-suffix-subprocess",
        "lmk-synth",
        ["video", "{work}/clip.avi", "--frames", "2"],
        match="must end in .mp4",
        subprocess=True,
    ),
    Case(
        "synth-video-wrong-suffix",
        "lmk-synth",
        ["video", "{work}/clip.avi", "--frames", "2"],
        match="must end in .mp4",
    ),
    Case(
        "synth-faces-bad-size",
        "lmk-synth",
        ["faces", "--out", "{work}/set", "--n", "2", "--size", "0x0"],
        match="--size",
    ),
    Case(
        "synth-faces-out-is-a-file",
        "lmk-synth",
        ["faces", "--out", "{work}/taken", "--n", "1"],
        setup=lambda work, _a: (work / "taken").write_text("mine\n"),
        match="not a folder",
    ),
    *[
        Case(f"{cmd}-unknown-flag-subprocess", cmd, ["--no-such-flag"], subprocess=True)
        for cmd in ("lmk-run", "lmk-export", "lmk-train", "lmk-eval", "lmk-bench", "lmk")
    ],
]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_hostile_entry_points(case, work, assets):
    check_case(case, work, assets)


SIGNAL_CASES = [
    # Ctrl-C while the command is still importing its libraries: one line, not a traceback.
    Case(
        f"{cmd}-ctrl-c-while-starting",
        cmd,
        ["--help"],
        code=130,
        match="interrupted",
        signal_after=(signal.SIGINT, 0.15),
    )
    for cmd in ("lmk-run", "lmk-export")
]


@pytest.mark.parametrize("case", SIGNAL_CASES, ids=str)
def test_hostile_signals_while_starting(case, work, assets):
    outcome = check_case_allowing_fast_exit(case, work, assets)
    # -SIGINT: the signal landed in the interpreter's last instants, after the work was done.
    assert outcome.code in (0, 130, -signal.SIGINT)


def check_case_allowing_fast_exit(case, work, assets):
    """A machine may finish ``--help`` before the signal lands: then exit 0 is right too."""
    from tests.hostile.conftest import run_entry

    outcome = run_entry(case.command, case.args, work, signal_after=case.signal_after)
    assert "Traceback" not in outcome.stderr, outcome.stderr
    if outcome.code == 130:
        assert outcome.errors == ["error: interrupted"], outcome.stderr
    return outcome
