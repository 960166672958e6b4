"""The architecture flags lmk-train and lmk-export share (``--backbone``, ``--input-size``,
...): one definition and one help text for both commands.

Which family a flag applies to, and which constructor argument it sets, is the registry's
(:attr:`lmk.models.registry.Family.flags`); :func:`lmk.models.model_args` checks the values,
so both commands refuse a value no model can be made of with the same line. Importing this
module imports click only (lmk-export's ``--help`` loads no torch)."""

from __future__ import annotations

from typing import Any

import click

from lmk.core.cli_util import option_group, option_names

ARCHITECTURE_OPTIONS = [
    click.option(
        "--backbone", help="PIPNet backbone: resnet18 (default), resnet34/50/101, mobilenetv2"
    ),
    click.option(
        "--input-size",
        type=int,
        help="crop size in pixels, a multiple of the map stride (default 256; faceapi68 112)",
    ),
    click.option("--num-nb", type=int, help="PIPNet neighbours per point (default 10)"),
    click.option("--net-stride", type=int, help="PIPNet stride 16/32/64/128 (default 32)"),
    click.option(
        "--num-stacks", type=int, help="hourglass stacks (default 2) or FAN modules (default 4)"
    ),
    click.option("--num-features", type=int, help="hourglass channels (default 256)"),
]


def flag_name(param: str) -> str:
    """``input_size`` -> ``--input-size``: the flag of a click parameter name."""
    return "--" + param.replace("_", "-")


def _by_flag(**values: Any) -> dict[str, Any]:
    return {flag_name(name): value for name, value in values.items()}


architecture_options = option_group("architecture", ARCHITECTURE_OPTIONS, _by_flag)
"""Adds :data:`ARCHITECTURE_OPTIONS` to a command, which receives them as one dict,
``architecture``, keyed by flag (``{"--backbone": None, ...}``: None where not given), as
:func:`lmk.models.model_args` takes it."""

ARCHITECTURE_PARAMS = tuple(option_names(ARCHITECTURE_OPTIONS))
"""Their click parameter names (``backbone``, ``input_size``, ...)."""
