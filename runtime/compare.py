"""One comparator and one tolerance table for every parity statement lmk makes.

The export self-check, the parity suite (CPU and GPU), ``lmk-bench`` and ``lmk demo`` all
compare a candidate run (an ONNX file under :class:`lmk.runtime.session.InferenceModel`)
against a reference run (PyTorch + the reference decode) with :func:`compare`, and take the
limit from :data:`TOLERANCES` through :func:`tolerance_for`: a limit is stated once, with
the measurement behind it, and a change to it shows up in one diff.

Units: landmarks are compared as the per-landmark Euclidean distance in normalised crop units
(1e-3 is 0.26 px of a 256 crop); every other output (scores, raw heads) element-wise, as
``|diff| <= atol + rtol * max|reference|``. Torch-free: the runtime side imports it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from lmk.core.decode import DECODERS

Outputs = Mapping[str, np.ndarray]
"""What a runner returns: output name -> array (``landmarks`` [N, L, 2], ``scores`` [N, L],
and for a raw-heads file the heads by name)."""

CELL_DECODES = tuple(d.name for d in DECODERS.values() if d.snaps_to_cells)
"""Decodes whose landmarks snap to map cells (heatmaps): a looser INT8 row."""
OFFSET_DECODES = tuple(d.name for d in DECODERS.values() if not d.snaps_to_cells)
"""Decodes whose landmarks move continuously with the activations (PIPNet, regression)."""


@dataclass(frozen=True)
class Tolerance:
    """The limits one comparison is held to; ``None`` leaves a statistic reported but
    unbounded. Landmark limits are on the per-landmark distance (normalised crop units);
    other outputs are bounded element-wise by ``atol + rtol * max|reference|``."""

    landmarks_max: float | None = None
    landmarks_p99: float | None = None
    landmarks_mean: float | None = None
    atol: float | None = None
    rtol: float = 0.0
    why: str = ""

    def other_bound(self, reference: np.ndarray) -> float | None:
        """The element-wise |diff| bound of a non-landmark output (None: unbounded)."""
        if self.atol is None:
            return None
        scale = float(np.abs(reference).max()) if reference.size else 0.0
        return self.atol + self.rtol * scale


@dataclass(frozen=True)
class ToleranceRow:
    """One line of the table: which comparisons it covers and their limits."""

    precision: str  # fp32 | fp16-stored | fp16 | bf16 | int8
    eps: tuple[str, ...]
    tolerance: Tolerance
    decodes: tuple[str, ...] | None = None  # None: every decode
    random_weights: bool = False  # a row for files with random (untrained) weights


ALL_EPS = ("cpu", "openvino", "cuda", "tensorrt")
_PX256 = 1.0 / 256.0  # one pixel of a 256 crop, in normalised crop units
_RANDOM_WHY = (
    "random weights give near-flat score maps whose argmax flips under any rounding, so "
    "landmarks are reported, not bounded; the scores (each map's peak value, which moves "
    "continuously with the rounding) are bounded"
)

TOLERANCES: tuple[ToleranceRow, ...] = (
    ToleranceRow(
        "fp32",
        ("cpu", "openvino"),
        Tolerance(
            landmarks_max=1e-5,
            atol=1e-4,
            rtol=1e-4,
            why="FP32 contract (fused decode = PyTorch + reference decode): two convolution "
            "implementations differ by float rounding only; OpenVINO FP32 measured 2e-7",
        ),
    ),
    ToleranceRow(
        "fp32",
        ("cuda", "tensorrt"),
        Tolerance(
            landmarks_max=1e-4,
            atol=1e-3,
            rtol=1e-3,
            why="cuDNN/TensorRT pick other convolution algorithms than the CPU, which moves "
            "raw heads by ~1e-5 relative; 1e-4 is 0.03 px of a 256 crop (TF32 off)",
        ),
    ),
    ToleranceRow(
        "fp16-stored",
        ALL_EPS,
        Tolerance(
            landmarks_max=1e-2,
            landmarks_p99=1e-3,
            landmarks_mean=0.05 * _PX256,
            atol=1e-3,
            rtol=1e-3,
            why="FP32 compute on FP16-rounded weights (<= 2^-11 relative): most landmarks move "
            "~1e-5, but where two cells of a score map nearly tie the argmax may take the "
            "other one, whose offsets land close by (measured 5.7e-3 once in 48 faces); a "
            "broken graph errs by whole cells (1/8 of the crop at stride 32)",
        ),
    ),
    ToleranceRow(
        "fp16",
        ALL_EPS,
        Tolerance(
            landmarks_mean=0.25 * _PX256,
            atol=1e-3,
            rtol=1e-2,
            why="FP16 weights and compute: activations carry ~3 decimal digits through ~50 "
            "layers; mean <= 0.25 px of a 256 crop, far below the models' own error (~5 px)",
        ),
    ),
    ToleranceRow(
        "bf16",
        ("openvino",),
        Tolerance(
            landmarks_mean=0.25 / 128,
            landmarks_p99=4.0 / 128,
            atol=2e-2,
            rtol=2e-2,
            why="OpenVINO BF16 (8-bit mantissa): measured mean 0.066/0.061 px, p99 0.24/2.0 px "
            "of a 128 crop (PIPNet/hourglass); not the max: two heatmap peaks within BF16's "
            "rounding can flip an argmax (one landmark of 1568 moved 48 px)",
        ),
    ),
    ToleranceRow(
        "int8",
        ALL_EPS,
        Tolerance(
            landmarks_mean=1.5 * _PX256,
            atol=2e-2,
            rtol=0.2,
            why="INT8 QDQ, heads and decode FP32: 8-bit activations; trained PIPNet measured "
            "0.86 px mean of a 256 crop (bound 1.5 px). A regression head (faceapi68) moves "
            "continuously with its activations and is held to the same bound (not measured)",
        ),
        decodes=OFFSET_DECODES,
    ),
    ToleranceRow(
        "int8",
        ALL_EPS,
        Tolerance(
            landmarks_mean=8.0 * _PX256,
            atol=2e-2,
            rtol=0.6,
            why="INT8 on a heatmap model: the decode snaps to heatmap cells (8 px of a 256 crop "
            "at 1/4 resolution) and 8-bit activations move peaks by a cell; trained hourglass "
            "(every op quantized) measured 5.5 px mean (bound 8 px), and one peak value of "
            "4704 off by 0.57 of the largest (bound 0.6)",
        ),
        decodes=CELL_DECODES,
    ),
    # Random weights: the same score bounds, landmarks unbounded (see _RANDOM_WHY).
    *(
        ToleranceRow(
            precision,
            ALL_EPS,
            Tolerance(atol=atol, rtol=rtol, why=_RANDOM_WHY),
            random_weights=True,
        )
        for precision, atol, rtol in (
            ("fp16-stored", 1e-3, 1e-3),
            ("fp16", 1e-3, 1e-2),
            ("bf16", 2e-2, 2e-2),
            ("int8", 2e-2, 0.3),
        )
    ),
)

DECODE_TOLERANCE = Tolerance(
    landmarks_max=1e-6,
    atol=1e-6,
    why="the in-graph decode alone, fed the same raw heads as the reference decode: the same "
    "float32 arithmetic, so only the last bit may differ",
)


def tolerance_for(
    precision: str, ep: str = "cpu", decode: str | None = None, random_weights: bool = False
) -> Tolerance:
    """The table's limits for a file of ``precision`` run on ``ep``. FP32 rows hold for any
    weights; reduced-precision rows differ for random weights (``random_weights``)."""
    for row in TOLERANCES:
        if row.precision != precision or ep not in row.eps:
            continue
        if row.decodes is not None and decode not in row.decodes:
            continue
        if precision != "fp32" and row.random_weights != random_weights:
            continue
        return row.tolerance
    raise KeyError(f"no tolerance for precision {precision!r} on EP {ep!r} (decode {decode!r})")


def effective_precision(
    file_precision: str, weight_storage: str | None = None, trt_fp16: bool = False
) -> str:
    """The precision a run computes in: an FP32 file with FP16-stored weights is
    ``fp16-stored``; TensorRT with ``trt_fp16`` computes an FP32 file in FP16."""
    if file_precision == "fp32" and trt_fp16:
        return "fp16"
    if file_precision == "fp32" and weight_storage == "fp16":
        return "fp16-stored"
    return file_precision


@dataclass
class OutputDiff:
    """How one output differs: the largest element-wise |diff| and where it is; for
    landmarks also the per-landmark distance statistics; and each limit that was applied."""

    name: str
    max_abs: float
    worst: tuple[int, ...]
    stats: dict[str, float] = field(default_factory=dict)
    limits: dict[str, float] = field(default_factory=dict)

    @property
    def failed(self) -> dict[str, tuple[float, float]]:
        """statistic -> (value, limit) for every limit exceeded (NaN exceeds any limit)."""
        return {
            key: (self.stats[key], limit)
            for key, limit in self.limits.items()
            if not self.stats[key] <= limit
        }

    @property
    def ok(self) -> bool:
        return not self.failed

    def where(self) -> str:
        if self.name == "landmarks" and len(self.worst) >= 2:
            return f"sample {self.worst[0]}, landmark {self.worst[1]}"
        return f"index {list(self.worst)}"

    def describe(self) -> str:
        """One line: the failing (or, when all pass, the main) statistic and where."""
        failed = self.failed
        if failed:
            parts = [f"{key} {value:.3g} > {limit:g}" for key, (value, limit) in failed.items()]
        else:
            key = "max distance" if "max distance" in self.stats else "max |diff|"
            parts = [f"{key} {self.stats[key]:.3g}"]
        return f"{self.name}: {', '.join(parts)} (worst at {self.where()})"


@dataclass
class Comparison:
    """The result of :func:`compare`: one :class:`OutputDiff` per output compared."""

    diffs: dict[str, OutputDiff]
    tolerance: Tolerance

    @property
    def ok(self) -> bool:
        return all(d.ok for d in self.diffs.values())

    @property
    def max_abs(self) -> dict[str, float]:
        return {name: d.max_abs for name, d in self.diffs.items()}

    def failures(self) -> list[OutputDiff]:
        return [d for d in self.diffs.values() if not d.ok]

    def summary(self) -> str:
        """One line naming every failing output (or every output, when all pass)."""
        shown = self.failures() or list(self.diffs.values())
        return "; ".join(d.describe() for d in shown)


def _landmark_diff(reference: np.ndarray, candidate: np.ndarray, tol: Tolerance) -> OutputDiff:
    distance = np.linalg.norm(candidate - reference, axis=-1)  # [N, L]
    worst = np.unravel_index(int(np.nan_to_num(distance, nan=np.inf).argmax()), distance.shape)
    stats = {
        "max distance": float(distance.max()),
        "p99 distance": float(np.percentile(distance, 99)),
        "mean distance": float(distance.mean()),
        "max |diff|": float(np.abs(candidate - reference).max()),
    }
    limits = {
        key: limit
        for key, limit in (
            ("max distance", tol.landmarks_max),
            ("p99 distance", tol.landmarks_p99),
            ("mean distance", tol.landmarks_mean),
        )
        if limit is not None
    }
    return OutputDiff("landmarks", stats["max |diff|"], tuple(int(i) for i in worst), stats, limits)


def _element_diff(
    name: str, reference: np.ndarray, candidate: np.ndarray, tol: Tolerance
) -> OutputDiff:
    diff = np.nan_to_num(np.abs(candidate - reference), nan=np.inf)
    worst = np.unravel_index(int(diff.argmax()), diff.shape) if diff.size else ()
    stats = {"max |diff|": float(diff.max()) if diff.size else 0.0}
    bound = tol.other_bound(reference)
    limits = {"max |diff|": bound} if bound is not None else {}
    return OutputDiff(name, stats["max |diff|"], tuple(int(i) for i in worst), stats, limits)


def compare(reference: Outputs, candidate: Outputs, tolerance: Tolerance) -> Comparison:
    """Compare every output the two runs share (``landmarks`` must be among them) in float64.

    A shape mismatch or a missing ``landmarks`` is a ``ValueError``: two runs that do not
    describe the same crops cannot be compared."""
    shared = [name for name in reference if name in candidate]
    if "landmarks" not in shared:
        raise ValueError(
            f"both runs need 'landmarks'; reference has {sorted(reference)}, "
            f"candidate has {sorted(candidate)}"
        )
    diffs: dict[str, OutputDiff] = {}
    for name in shared:
        want = np.asarray(reference[name], dtype=np.float64)
        got = np.asarray(candidate[name], dtype=np.float64)
        if want.shape != got.shape:
            raise ValueError(f"{name}: reference shape {want.shape}, candidate {got.shape}")
        if name == "landmarks":
            diffs[name] = _landmark_diff(want, got, tolerance)
        else:
            diffs[name] = _element_diff(name, want, got, tolerance)
    return Comparison(diffs, tolerance)
