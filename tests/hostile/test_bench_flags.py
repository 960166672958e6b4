"""lmk-bench's and lmk-export's flags from issue 13 given bad values: a held-out face count
that is not a positive integer, an OpenVINO backend that does not exist, INT8 layout flags
without --int8 or for a target that cannot run them. Each is one ``error:`` line, exit 2,
before any trace, result folder or output file exists."""

from __future__ import annotations

import pytest

from tests.hostile.conftest import Case, check_case

BENCH = ["--quick", "--models", "hourglass", "--batches", "1", "--out", "{work}/results"]
EXPORT = ["--model", "hourglass", "-o", "{work}/hg.onnx"]

CASES = [
    Case(
        "bench-nme-faces-zero",
        "lmk-bench",
        [*BENCH, "--nme-faces", "0"],
        match=r"^error: --nme-faces must be >= 1, got 0$",
    ),
    Case(
        "bench-nme-faces-not-a-number",
        "lmk-bench",
        [*BENCH, "--nme-faces", "many"],
        match=r"--nme-faces.*'many' is not a valid integer",
    ),
    Case(
        "bench-unknown-openvino-backend",
        "lmk-bench",
        [*BENCH, "--backends", "ov_fp32,ov_int4"],
        match=r"^error: --backends: unknown ov_int4; choose from .*ov_bf16, ov_int8",
    ),
    Case(
        "export-int8-target-without-int8",
        "lmk-export",
        [*EXPORT, "--int8-target", "openvino"],
        match=r"^error: --int8-target applies only with --int8$",
    ),
    Case(
        "export-int8-activations-and-recipe-without-int8",
        "lmk-export",
        [*EXPORT, "--int8-activations", "s8", "--int8-recipe", "full"],
        match=r"^error: --int8-activations, --int8-recipe apply only with --int8$",
    ),
    Case(
        "export-tensorrt-with-u8-activations",
        "lmk-export",
        [*EXPORT, "--int8", "--int8-target", "tensorrt", "--int8-activations", "u8"],
        match=r"needs --int8-activations s8 \(TensorRT takes only zero point 0\)$",
    ),
    Case(
        "export-int8-target-npu",
        "lmk-export",
        [*EXPORT, "--int8", "--int8-target", "npu"],
        match=r"--int8-target.*'npu' is not one of 'cpu', 'tensorrt', 'openvino'",
    ),
    Case(
        "export-int8-activations-u16",
        "lmk-export",
        [*EXPORT, "--int8", "--int8-activations", "u16"],
        match=r"--int8-activations.*'u16' is not one of 'u8', 's8'",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_hostile_bench_and_int8_flags(case, work, assets):
    check_case(case, work, assets)
