"""NME, failure rate and AUC against hand-worked cases; per-subset results."""

from __future__ import annotations

import numpy as np
import pytest

from lmk.core.errors import LmkError
from lmk.core.layouts import Layout
from lmk.core.metrics import (
    auc,
    ced,
    evaluate,
    failure_rate,
    format_results,
    nme,
    simpson_uniform,
)

GT = np.array([[[0.0, 0.0], [10.0, 0.0], [5.0, 5.0]]])
PAIR = Layout("three", (1, 0, 2), (0, 1), GT[0] / 10)
BOX = Layout("three-box", (1, 0, 2), "box", GT[0] / 10)


def test_nme_divides_the_mean_point_error_by_the_inter_ocular_distance():
    pred = GT + np.array([3.0, 4.0])  # every point 5 px off; points 0 and 1 are 10 px apart
    assert nme(pred, GT, PAIR).tolist() == pytest.approx([0.5])
    # only one point off by 6: mean error 2 -> 0.2
    pred = GT.copy()
    pred[0, 2] += [0.0, 6.0]
    assert nme(pred, GT, PAIR)[0] == pytest.approx(0.2)
    # one face given as [L, 2]
    assert nme(pred[0], GT[0], PAIR)[0] == pytest.approx(0.2)


def test_box_layouts_normalise_by_the_square_root_of_the_gt_box_area():
    pred = GT + np.array([3.0, 4.0])
    boxes = np.array([[100.0, 50.0, 4.0, 9.0]])  # sqrt(4 * 9) = 6
    assert nme(pred, GT, BOX, boxes)[0] == pytest.approx(5.0 / 6.0)
    with pytest.raises(LmkError, match="pass boxes"):
        nme(pred, GT, BOX)


def test_nme_is_the_same_in_any_uniformly_scaled_frame():
    rng = np.random.default_rng(0)
    gt = rng.uniform(0, 100, (4, 3, 2))
    pred = gt + rng.normal(0, 2, gt.shape)
    np.testing.assert_allclose(nme(pred * 0.01, gt * 0.01, PAIR), nme(pred, gt, PAIR))


def test_nme_rejects_mismatched_shapes_and_degenerate_faces():
    with pytest.raises(LmkError, match="must both be"):
        nme(GT[:, :2], GT, PAIR)
    with pytest.raises(LmkError, match="layout 'three' has 3"):
        nme(np.zeros((1, 4, 2)), np.zeros((1, 4, 2)), PAIR)
    with pytest.raises(LmkError, match="zero normalising distance"):
        nme(np.zeros((1, 3, 2)), np.zeros((1, 3, 2)), PAIR)


def test_failure_rate_counts_faces_strictly_above_the_threshold():
    assert failure_rate([0.05, 0.1, 0.15, 0.2]) == 0.5
    assert failure_rate([0.05, 0.1, 0.15, 0.2], threshold=0.08) == 0.75
    with pytest.raises(LmkError):
        failure_rate([])


def test_auc_of_hand_worked_error_distributions():
    assert auc([0.0, 0.0]) == pytest.approx(1.0)
    assert auc([0.2, 0.5]) == pytest.approx(0.0)
    # every face at NME 0.05: the CED steps from 0 to 1 half way, area 0.5
    assert auc([0.05]) == pytest.approx(0.5, abs=1e-3)
    # half the faces perfect, half failed: 0.5
    assert auc([0.0, 1.0]) == pytest.approx(0.5, abs=1e-3)
    # NME uniform on [0, 0.2]: CED = x / 0.2 on [0, 0.1], area 0.025, divided by 0.1
    assert auc(np.linspace(0, 0.2, 20001)) == pytest.approx(0.25, abs=1e-3)


def test_evaluate_reports_overall_and_every_subset_with_faces():
    nmes = np.array([0.02, 0.04, 0.2, 0.06])
    attributes = np.zeros((4, 6), int)
    attributes[[0, 2], 0] = 1  # pose
    attributes[3, 4] = 1  # occlusion
    result = evaluate(nmes, attributes)
    assert result["overall"]["nme"] == pytest.approx(0.08)
    assert result["overall"]["fr"] == 0.25 and result["overall"]["count"] == 4
    assert set(result["subsets"]) == {"pose", "occlusion"}
    assert result["subsets"]["pose"]["nme"] == pytest.approx(0.11)
    assert result["subsets"]["pose"]["fr"] == 0.5
    assert result["subsets"]["occlusion"]["count"] == 1
    assert evaluate(nmes, np.zeros((4, 6)))["subsets"] == {}
    table = format_results(result)
    assert table.splitlines()[1].split()[:3] == ["overall", "4", "8.000"]
    assert "occlusion" in table


@pytest.mark.parametrize("points", [2, 3, 4, 7, 1001, 1002])
def test_numpy_simpson_equals_scipy_on_even_and_odd_interval_counts(points):
    """The AUC integral is ours (numpy) so the runtime needs no scipy; it must stay the
    integral the published WFLW evaluation computes with ``scipy.integrate.simpson``."""
    integrate = pytest.importorskip("scipy.integrate", reason="scipy is only a cross-check")
    ys = np.random.default_rng(points).random(points).cumsum()
    step = 0.1 / (points - 1)
    xs = np.arange(points) * step
    assert simpson_uniform(ys, step) == pytest.approx(integrate.simpson(ys, x=xs), rel=1e-12)


@pytest.mark.parametrize("threshold", [0.1, 0.08, 0.0701])
def test_auc_equals_scipy_simpson_over_the_ced(threshold):
    integrate = pytest.importorskip("scipy.integrate", reason="scipy is only a cross-check")
    nmes = np.random.default_rng(3).gamma(2.0, 0.02, 500)
    xs, ys = ced(nmes, threshold)
    want = integrate.simpson(ys, x=xs) / threshold
    assert auc(nmes, threshold) == pytest.approx(want, rel=1e-12)
