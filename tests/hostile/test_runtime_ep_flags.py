"""lmk-run's EP flags given where they cannot apply: OpenVINO settings with another EP, an
OpenVINO EP that is not installed, a precision OpenVINO does not have, BF16 on a CPU without
it, a cache folder that cannot be made. Each is one ``error:`` line, exit 2, before any output
or cache folder exists.

The rows marked ``openvino`` need onnxruntime-openvino and run in .venv-ov (``make test``).
"""

from __future__ import annotations

import re

import pytest

from lmk.runtime import available_providers, cpu
from tests.hostile.conftest import Case, check_case

HAVE_OPENVINO = "OpenVINOExecutionProvider" in available_providers()
RUN = ["{assets}/clip.mp4", "--json", "{work}/o.jsonl", "--quiet"]

CASES = [
    # The EP-specific flags of another EP would be ignored without a word.
    Case(
        "ov-precision-bf16-with-ep-cpu",
        "lmk-run",
        [*RUN, "--ep", "cpu", "--ov-precision", "bf16"],
        match=r"^error: --ov-precision applies only to --ep openvino \(the EP here is cpu\)$",
    ),
    Case(
        "ov-cache-with-ep-cpu",
        "lmk-run",
        [*RUN, "--ep", "cpu", "--ov-cache", "{work}/ov"],
        match=r"^error: --ov-cache applies only to --ep openvino \(the EP here is cpu\)$",
    ),
    Case(
        "trt-and-ov-flags-with-ep-cpu",
        "lmk-run",
        [*RUN, "--ep", "cpu", "--trt-fp16", "--ov-precision", "bf16", "--ov-cache", "{work}/ov"],
        match=r"^error: --trt-fp16 applies only to --ep tensorrt; --ov-precision, --ov-cache "
        r"apply only to --ep openvino \(the EP here is cpu\)$",
    ),
    Case(
        "ov-precision-fp64",
        "lmk-run",
        [*RUN, "--ov-precision", "fp64"],
        match=r"--ov-precision.*'fp64' is not one of 'fp32', 'bf16'",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_hostile_ep_flags(case, work, assets):
    check_case(case, work, assets)


@pytest.mark.skipif(HAVE_OPENVINO, reason="onnxruntime-openvino is installed here")
def test_ep_openvino_where_it_is_not_installed_names_the_extra(work, assets):
    check_case(
        Case(
            "ep-openvino-not-installed",
            "lmk-run",
            [*RUN, "--ep", "openvino"],
            match=r'^error: --ep openvino is not available here \(install "lmk\[openvino\]": '
            r"onnxruntime-openvino, in an environment of its own\); available: cpu$",
        ),
        work,
        assets,
    )


def openvino(test):
    """Marks a test ``openvino``: run in .venv-ov, skipped where the EP is not installed."""
    skip = pytest.mark.skipif(not HAVE_OPENVINO, reason="needs onnxruntime-openvino (make venv-ov)")
    return pytest.mark.openvino(skip(test))


@openvino
@pytest.mark.parametrize("ep", ["openvino", "auto"])
def test_bf16_on_a_cpu_without_it(ep, work, assets, monkeypatch):
    """In-process, with the CPU's flags read as an AVX2-only CPU's. ``auto`` tries OpenVINO,
    falls to the CPU EP, and says why."""
    monkeypatch.setattr(cpu, "has_bf16", lambda: False)
    message = "--ov-precision bf16 needs a CPU with AVX512_BF16 or AMX (this CPU has neither)"
    if ep == "auto":
        message = (
            "--ov-precision, --ov-cache apply only to --ep openvino "
            f"(the EP here is cpu, chosen by --ep auto; {message})"
        )
    check_case(
        Case(
            f"ov-bf16-without-bf16-ep-{ep}",
            "lmk-run",
            [*RUN, "--ep", ep, "--ov-precision", "bf16", "--ov-cache", "{work}/ov"],
            match=f"^error: {re.escape(message)}$",
        ),
        work,
        assets,
    )


@openvino
def test_ov_cache_that_is_a_file(work, assets):
    check_case(
        Case(
            "ov-cache-is-a-file",
            "lmk-run",
            [*RUN, "--ep", "openvino", "--ov-cache", "{work}/notes.txt"],
            match=r"^error: cannot create the OpenVINO cache folder .*notes\.txt/\w+-fp32: ",
            setup=lambda work, _assets: (work / "notes.txt").write_text("a file\n"),
        ),
        work,
        assets,
    )
