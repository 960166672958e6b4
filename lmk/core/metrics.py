"""Landmark accuracy: NME, failure rate and CED AUC, overall and per WFLW subset.

The one implementation both ``lmk-train``'s per-epoch validation and ``lmk-eval`` use, so a
number in a training log and one from ``lmk-eval`` mean the same thing. numpy only (no scipy:
the demo's runtime path scores with it on an ``lmk[cpu]`` install). Conventions follow the PIPNet/WFLW evaluation: NME per face is the
mean point-to-point error over the landmarks divided by the layout's normalising distance
(inter-ocular for WFLW/300W/COFW, ``sqrt(w * h)`` of the ground-truth box for "box" layouts);
a face fails when its NME exceeds the threshold; AUC is the area under the cumulative error
distribution up to the threshold, integrated with Simpson's rule on a 1e-4 grid.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lmk.core.errors import LmkError
from lmk.core.layouts import Layout

WFLW_SUBSETS = ("pose", "expression", "illumination", "make-up", "occlusion", "blur")
"""Attribute order of WFLW's six flags (and of SynthFace's)."""

CED_STEP = 1e-4


def normalising_distance(
    gt: np.ndarray, layout: Layout, boxes: np.ndarray | None = None
) -> np.ndarray:
    """Per-face NME denominator [N]: the gt distance between ``layout.nme_norm`` points, or
    ``sqrt(w * h)`` of the gt boxes ``[N, 4]`` (x, y, w, h) for "box" layouts."""
    gt = np.asarray(gt, dtype=np.float64)
    if layout.nme_norm == "box":
        if boxes is None:
            raise LmkError(f"layout {layout.name!r} normalises NME by the face box; pass boxes")
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        if boxes.shape[0] != gt.shape[0]:
            raise LmkError(f"{boxes.shape[0]} boxes for {gt.shape[0]} faces")
        return np.sqrt(boxes[:, 2] * boxes[:, 3])
    a, b = layout.nme_norm
    return np.linalg.norm(gt[:, a] - gt[:, b], axis=-1)


def nme(
    pred: np.ndarray, gt: np.ndarray, layout: Layout, boxes: np.ndarray | None = None
) -> np.ndarray:
    """Normalised mean error per face, [N] (a fraction: 0.05 is 5 %).

    ``pred`` and ``gt`` are [N, L, 2] (or [L, 2] for one face) in the same coordinates; any
    frame works as long as it is not stretched differently along x and y.
    """
    pred = np.asarray(pred, dtype=np.float64)
    gt = np.asarray(gt, dtype=np.float64)
    if pred.ndim == 2:
        pred, gt = pred[None], gt[None]
        boxes = None if boxes is None else np.asarray(boxes).reshape(1, 4)
    if pred.shape != gt.shape or pred.ndim != 3 or pred.shape[-1] != 2:
        raise LmkError(
            f"predictions {pred.shape} and ground truth {gt.shape} must both be [N, L, 2]"
        )
    if gt.shape[1] != layout.num_points:
        raise LmkError(
            f"{gt.shape[1]} landmarks but layout {layout.name!r} has {layout.num_points}"
        )
    norm = normalising_distance(gt, layout, boxes)
    if (norm <= 0).any() or not np.isfinite(norm).all():
        bad = int(np.flatnonzero(~(norm > 0))[0])
        raise LmkError(f"face {bad} has a zero normalising distance; its NME is undefined")
    return np.linalg.norm(pred - gt, axis=-1).mean(axis=-1) / norm


def failure_rate(nmes: np.ndarray, threshold: float = 0.1) -> float:
    """Fraction of faces whose NME is above ``threshold``."""
    nmes = np.asarray(nmes, dtype=np.float64).reshape(-1)
    if nmes.size == 0:
        raise LmkError("no faces to compute a failure rate over")
    return float(np.count_nonzero(nmes > threshold) / nmes.size)


def ced(nmes: np.ndarray, threshold: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """The cumulative error distribution on ``[0, threshold]``: (errors, fraction <= error)."""
    nmes = np.sort(np.asarray(nmes, dtype=np.float64).reshape(-1))
    steps = max(1, round(threshold / CED_STEP))
    xs = np.linspace(0.0, threshold, steps + 1)
    ys = np.searchsorted(nmes, xs, side="right") / nmes.size
    return xs, ys


def simpson_uniform(ys: np.ndarray, step: float) -> float:
    """Simpson's rule over samples ``ys`` spaced ``step`` apart: composite 1/3 rule over pairs
    of intervals; with an odd number of intervals the last one gets the three-point correction
    ``step * (5 y[-1] + 8 y[-2] - y[-3]) / 12`` (what ``scipy.integrate.simpson`` does since
    SciPy 1.11), so the AUC matches the published evaluation code to rounding."""
    ys = np.asarray(ys, dtype=np.float64)
    intervals = ys.size - 1
    if intervals < 1:
        return 0.0
    if intervals == 1:
        return float(step * (ys[0] + ys[1]) / 2.0)
    even = intervals - intervals % 2
    body = ys[: even + 1]
    total = step / 3.0 * (body[0] + body[-1] + 4.0 * body[1:-1:2].sum() + 2.0 * body[2:-1:2].sum())
    if intervals % 2:
        total += step * (5.0 * ys[-1] + 8.0 * ys[-2] - ys[-3]) / 12.0
    return float(total)


def auc(nmes: np.ndarray, threshold: float = 0.1) -> float:
    """Area under the CED curve up to ``threshold``, divided by ``threshold`` (1 is perfect)."""
    if np.asarray(nmes).size == 0:
        raise LmkError("no faces to compute an AUC over")
    if threshold <= 0:
        raise LmkError(f"the AUC threshold must be positive, got {threshold}")
    xs, ys = ced(nmes, threshold)
    return simpson_uniform(ys, float(xs[1] - xs[0])) / threshold


def summary(nmes: np.ndarray, threshold: float = 0.1) -> dict[str, float]:
    """``{"nme", "fr", "auc", "count"}`` for one set of per-face NMEs."""
    nmes = np.asarray(nmes, dtype=np.float64).reshape(-1)
    return {
        "nme": float(nmes.mean()),
        "fr": failure_rate(nmes, threshold),
        "auc": auc(nmes, threshold),
        "count": int(nmes.size),
    }


def evaluate(
    nmes: np.ndarray, attributes: np.ndarray | None = None, threshold: float = 0.1
) -> dict[str, Any]:
    """Overall metrics plus one entry per WFLW subset that has at least one face.

    ``attributes`` is [N, 6] 0/1 flags in ``WFLW_SUBSETS`` order (all zero when unknown, in
    which case no subset appears).
    """
    result: dict[str, Any] = {"threshold": threshold, "overall": summary(nmes, threshold)}
    subsets: dict[str, dict[str, float]] = {}
    if attributes is not None:
        flags = np.asarray(attributes).reshape(len(np.asarray(nmes).reshape(-1)), -1) > 0
        for k, name in enumerate(WFLW_SUBSETS[: flags.shape[1]]):
            if flags[:, k].any():
                subsets[name] = summary(np.asarray(nmes).reshape(-1)[flags[:, k]], threshold)
    result["subsets"] = subsets
    return result


def format_results(results: dict[str, Any]) -> str:
    """A small table: NME and failure rate in percent, AUC as a fraction, overall then subsets."""
    t = f"{results['threshold']:g}"
    lines = [f"{'set':<13} {'faces':>6} {'NME %':>8} {f'FR@{t} %':>9} {f'AUC@{t}':>8}"]
    rows = [("overall", results["overall"]), *results["subsets"].items()]
    for name, m in rows:
        lines.append(
            f"{name:<13} {m['count']:>6d} {100 * m['nme']:>8.3f} {100 * m['fr']:>9.2f} "
            f"{m['auc']:>8.4f}"
        )
    return "\n".join(lines)
