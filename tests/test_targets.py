"""PIPNet and heatmap targets against hand-worked cases, and the losses built on them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lmk.core.decode import decode_heatmap, pipnet_candidates
from lmk.losses import adaptive_wing_loss, heatmap_loss, pipnet_loss
from lmk.targets import heatmap_targets, pipnet_targets

# Three landmarks on a 4 x 4 grid (a 128 crop at stride 32); point 2 lies outside the crop.
LANDMARKS = torch.tensor([[0.30, 0.60], [0.90, 0.10], [1.05, -0.10]], dtype=torch.float64)
NB = np.array([[1, 2], [0, 2], [0, 1]])  # K = 2


def nb_mask(t) -> torch.Tensor:
    """[N, L*K, H, W]: neighbour channel ``K*i + j`` has a target at landmark ``i``'s cell."""
    return t.cls.repeat_interleave(t.nb_x.shape[-3] // t.cls.shape[-3], dim=-3)


def test_each_landmark_gets_its_floor_cell_and_offsets_inside_it():
    t = pipnet_targets(LANDMARKS, NB, 4)
    # point 0: x*W = 1.2 -> col 1, offset 0.2; y*H = 2.4 -> row 2, offset 0.4
    assert t.cls[0, 2, 1] == 1 and t.cls[0].sum() == 1
    assert t.x[0, 2, 1].item() == pytest.approx(0.2, abs=1e-6)
    assert t.y[0, 2, 1].item() == pytest.approx(0.4, abs=1e-6)
    # point 1: 3.6 -> col 3 (0.6); 0.4 -> row 0 (0.4)
    assert t.cls[1, 0, 3] == 1
    assert t.x[1, 0, 3].item() == pytest.approx(0.6, abs=1e-6)
    assert t.y[1, 0, 3].item() == pytest.approx(0.4, abs=1e-6)
    assert t.cell.tolist() == [2 * 4 + 1, 0 * 4 + 3, 0 * 4 + 3]


def test_points_outside_the_grid_are_clipped_to_the_edge_cell_with_unclipped_offsets():
    t = pipnet_targets(LANDMARKS, NB, 4)
    # point 2: x*W = 4.2 -> floor 4, clipped to col 3, offset 1.2; y*H = -0.4 -> row 0, -0.4
    assert t.cls[2, 0, 3] == 1
    assert t.x[2, 0, 3].item() == pytest.approx(1.2, abs=1e-6)
    assert t.y[2, 0, 3].item() == pytest.approx(-0.4, abs=1e-6)


def test_neighbour_offsets_are_measured_from_the_owning_landmarks_cell():
    t = pipnet_targets(LANDMARKS, NB, 4)
    # channel K*0 + 0 predicts point 1 from point 0's cell (row 2, col 1): (3.6 - 1, 0.4 - 2)
    assert t.nb_x[0, 2, 1].item() == pytest.approx(2.6, abs=1e-6)
    assert t.nb_y[0, 2, 1].item() == pytest.approx(-1.6, abs=1e-6)
    # channel K*0 + 1 predicts point 2: (4.2 - 1, -0.4 - 2)
    assert t.nb_x[1, 2, 1].item() == pytest.approx(3.2, abs=1e-6)
    assert t.nb_y[1, 2, 1].item() == pytest.approx(-2.4, abs=1e-6)
    # channel K*1 + 0 predicts point 0 from point 1's cell (row 0, col 3): (1.2 - 3, 2.4 - 0)
    assert t.nb_x[2, 0, 3].item() == pytest.approx(-1.8, abs=1e-6)
    assert t.nb_y[2, 0, 3].item() == pytest.approx(2.4, abs=1e-6)
    # nothing outside the owning cells
    assert torch.count_nonzero(t.nb_x * (1 - nb_mask(t))) == 0
    assert nb_mask(t).shape == t.nb_x.shape and nb_mask(t).sum() == 6


def test_pipnet_targets_read_back_through_the_decoder_give_the_landmarks():
    rng = np.random.default_rng(0)
    lms = torch.from_numpy(rng.uniform(0.02, 0.98, (2, 5, 2))).float()
    nb = np.array([[1, 2], [2, 3], [3, 4], [4, 0], [0, 1]])
    t = pipnet_targets(lms, nb, (8, 8))
    heads = (h.numpy() for h in (t.cls, t.x, t.y, t.nb_x, t.nb_y))
    candidates, _ = pipnet_candidates(*heads)
    own, neighbours = candidates[:, :5], candidates[:, 5:].reshape(2, 5, 2, 2)
    np.testing.assert_allclose(own, lms.numpy(), atol=1e-6, rtol=0)
    np.testing.assert_allclose(neighbours, lms.numpy()[:, nb], atol=1e-6, rtol=0)


def test_heatmap_peaks_at_the_pixel_whose_centre_holds_the_landmark():
    size = 16
    maps = heatmap_targets(torch.tensor([[5.5 / size, 9.5 / size]]), size, sigma=1.5)
    assert maps.shape == (1, size, size)
    row, col = divmod(int(maps[0].argmax()), size)
    assert (row, col) == (9, 5)
    assert maps[0, 9, 5].item() == pytest.approx(1.0)
    assert maps[0, 9, 4].item() == pytest.approx(maps[0, 9, 6].item())
    assert maps[0, 9, 6].item() == pytest.approx(np.exp(-1 / (2 * 1.5**2)))


def test_heatmap_target_decodes_back_with_the_quarter_pixel_rule():
    # a landmark a quarter pixel right of and below a pixel centre decodes exactly
    size = 16
    lm = torch.tensor([[[5.75 / size, 9.75 / size]]])
    decoded, scores = decode_heatmap([heatmap_targets(lm, size).numpy()])
    np.testing.assert_allclose(decoded, lm.numpy(), atol=1e-6, rtol=0)
    assert scores.item() < 1.0


def test_pipnet_loss_is_zero_at_the_targets_and_ignores_cells_without_a_target():
    lms = torch.tensor([[[0.3, 0.6], [0.9, 0.1], [0.5, 0.5]]])
    t = pipnet_targets(lms, NB, 4)
    outputs = [t.cls.clone(), t.x.clone(), t.y.clone(), t.nb_x.clone(), t.nb_y.clone()]
    total, parts = pipnet_loss(outputs, t)
    assert total.item() == pytest.approx(0.0, abs=1e-7)
    # offset heads away from the gt cells have no target: changing them costs nothing
    for head, mask in zip(outputs[1:], (t.mask, t.mask, nb_mask(t), nb_mask(t)), strict=True):
        head += 5.0 * (1 - mask)
    total, parts = pipnet_loss(outputs, t)
    assert parts["x"] == pytest.approx(0.0, abs=1e-6) and parts["nb_y"] == pytest.approx(
        0.0, abs=1e-6
    )
    # while the score map is penalised everywhere, weighted 10
    outputs[0] = t.cls + 0.1
    total, parts = pipnet_loss(outputs, t)
    assert parts["cls"] == pytest.approx(0.01, rel=1e-5)
    assert total.item() == pytest.approx(10 * 0.01, rel=1e-4)


def test_pipnet_offset_loss_is_the_mean_l1_at_the_gt_cell():
    lms = torch.tensor([[[0.3, 0.6], [0.9, 0.1], [0.5, 0.5]]])
    t = pipnet_targets(lms, NB, 4)
    x = t.x.clone()
    x[0, 0, 2, 1] += 0.3  # landmark 0's gt cell
    _, parts = pipnet_loss([t.cls, x, t.y, t.nb_x, t.nb_y], t)
    assert parts["x"] == pytest.approx(0.3 / 3, rel=1e-5)


def test_adaptive_wing_loss_is_continuous_at_theta_and_weights_the_dilated_foreground():
    # value continuous where the log branch (d < theta = 0.5) meets the linear one, for
    # background, mid and peak targets (a single pixel, threshold above it: weight 1)
    for y in (0.0, 0.5, 1.0):
        target = torch.full((1, 1, 1, 1), y, dtype=torch.float64)
        below, above = (
            adaptive_wing_loss(target + d, target, threshold=2.0).item()
            for d in (0.5 - 1e-9, 0.5 + 1e-9)
        )
        assert below == pytest.approx(14 * np.log1p(0.5 ** (2.1 - y)), rel=1e-7)
        assert above == pytest.approx(below, rel=1e-7)
    target = torch.zeros(1, 1, 8, 8)
    target[0, 0, 4, 4] = 1.0
    pred = target + 0.1
    loss = adaptive_wing_loss(pred, target)
    # 9 pixels (3x3 dilation of the peak) weigh 11, the other 55 weigh 1
    values = 14 * np.log1p(0.1 ** (2.1 - target.numpy()[0, 0]))  # every pixel is off by 0.1
    weights = np.ones((8, 8))
    weights[3:6, 3:6] = 11
    assert loss.item() == pytest.approx(float((values * weights).mean()), rel=1e-5)
    assert adaptive_wing_loss(target, target).item() == pytest.approx(0.0, abs=1e-7)


def test_heatmap_loss_supervises_every_stack():
    target = heatmap_targets(torch.tensor([[[0.4, 0.6]]]), 8)
    good, bad = target.clone(), target + 0.2
    total, parts = heatmap_loss([bad, good], target)
    assert parts["stack0"] == pytest.approx(0.04, rel=1e-5) and parts["stack1"] == 0.0
    assert total.item() == pytest.approx(0.04, rel=1e-5)
    with pytest.raises(ValueError, match="unknown heatmap loss"):
        heatmap_loss([good], target, "l7")
