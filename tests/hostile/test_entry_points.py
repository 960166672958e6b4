"""Every console script reports a user error the same way: one ``error:`` line and exit 2,
also through the installed script (a subprocess), which is where lmk-synth once exited 0."""

from __future__ import annotations

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
