"""Option groups: flags that several commands share are defined once and reach each command as
one value (``lmk.core.cli_util.option_group``)."""

from __future__ import annotations

import click

from lmk.core.cli_util import option_group, run_cli


def test_an_option_group_reaches_the_command_as_one_value_and_keeps_clicks_checks(capsys):
    seen = []
    group = [
        click.option("--first", type=click.IntRange(min=1), default=1, help="first help"),
        click.option("--second", "renamed", default="x", help="second help"),
    ]

    @click.command()
    @click.option("--before", is_flag=True)
    @option_group("pair", group, pack=lambda **values: sorted(values.items()))
    @click.option("--after", default=0, type=int)
    def command(before: bool, pair: list, after: int) -> None:
        seen.append((before, pair, after))

    assert run_cli(command, ["--first", "3", "--after", "5"]) == 0
    assert seen == [(False, [("first", 3), ("renamed", "x")], 5)]
    assert run_cli(command, ["--first", "0"]) == 2  # the range check still runs
    assert "--first" in capsys.readouterr().err
    help_text = command.get_help(click.Context(command))
    order = [help_text.index(flag) for flag in ("--before", "--first", "--second", "--after")]
    assert order == sorted(order) and "second help" in help_text


def test_lmk_run_and_lmk_batch_share_one_definition_of_their_common_flags():
    from lmk.batch.cli import batch_command
    from lmk.runtime.cli import run_command

    shared = {
        "ep",
        "trt_fp16",
        "trt_cache_dir",
        "detector",
        "detector_model",
        "box",
        "detect_every",
        "min_score",
        "max_faces",
        "rotate",
    }
    run = {p.name: p.to_info_dict() for p in run_command.params if p.name in shared}
    batch = {p.name: p.to_info_dict() for p in batch_command.params if p.name in shared}
    assert set(run) == shared and run == batch
