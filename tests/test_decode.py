"""The reference decoders (numpy, lmk.core.decode) on hand-built maps with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from lmk.core.decode import (
    DECODERS,
    decode_heatmap,
    decode_pipnet,
    flip_average,
    get_decoder,
    mirror_views,
    pipnet_candidates,
)
from lmk.core.errors import LmkError
from lmk.core.layouts import NeighbourTable, get_layout

FOUR_POINTS = np.array(
    [[0.0, 0.0], [1.0, 0.0], [0.0, 2.0], [5.0, 5.0]]
)  # nb = [[1,2],[0,2],[0,1],[2,1]]


def _pipnet_heads(peaks, own, nbr, size=8, seed=0):
    """Heads whose argmax sits at ``peaks[i] = (row, col)`` with the given offsets there.

    Elsewhere the score maps are below the peak and the offsets are random, so a decoder
    reading the wrong cell gives a wrong answer.
    """
    g = np.random.default_rng(seed)
    num_lms, k = len(peaks), nbr.shape[1]
    cls = (g.random((1, num_lms, size, size)) * 0.5).astype(np.float32)
    x = (g.random((1, num_lms, size, size)) * 3 - 1).astype(np.float32)
    y = (g.random((1, num_lms, size, size)) * 3 - 1).astype(np.float32)
    nb_x = (g.random((1, num_lms * k, size, size)) * 3 - 1).astype(np.float32)
    nb_y = (g.random((1, num_lms * k, size, size)) * 3 - 1).astype(np.float32)
    for i, (r, c) in enumerate(peaks):
        cls[0, i, r, c] = 0.9
        x[0, i, r, c], y[0, i, r, c] = own[i]
        for j in range(k):
            nb_x[0, k * i + j, r, c], nb_y[0, k * i + j, r, c] = nbr[i, j]
    return cls, x, y, nb_x, nb_y


def test_pipnet_one_hot_peaks_and_nrm_merge_worked_by_hand():
    peaks = [(1, 2), (3, 5), (6, 0), (7, 7)]
    own = np.array([[0.25, 0.5], [0.125, 0.75], [0.5, 0.5], [0.375, 0.625]])
    nbr = np.array(
        [
            [[1.0, 2.0], [-1.0, 4.0]],  # landmark 0 predicts 1 and 2
            [[-2.0, -1.0], [-4.0, 3.0]],  # landmark 1 predicts 0 and 2
            [[0.5, -5.0], [1.5, -6.0]],  # landmark 2 predicts 0 and 1
            [[-6.0, -2.0], [-5.0, -7.0]],  # landmark 3 predicts 2 and 1
        ]
    )
    heads = _pipnet_heads(peaks, own, nbr)
    landmarks, scores = decode_pipnet(heads, NeighbourTable.from_meanface(FOUR_POINTS, 2))

    def own_pred(i):
        r, c = peaks[i]
        return np.array([(c + own[i, 0]) / 8, (r + own[i, 1]) / 8])

    def nb_pred(i, j):
        r, c = peaks[i]
        return np.array([(c + nbr[i, j, 0]) / 8, (r + nbr[i, j, 1]) / 8])

    # 0 <- (1,0), (2,0), padded cyclically to 3 entries: (1,0) again.
    expected0 = (own_pred(0) + nb_pred(1, 0) + nb_pred(2, 0) + nb_pred(1, 0)) / 4
    expected1 = (own_pred(1) + nb_pred(0, 0) + nb_pred(2, 1) + nb_pred(3, 1)) / 4
    expected2 = (own_pred(2) + nb_pred(0, 1) + nb_pred(1, 1) + nb_pred(3, 0)) / 4
    expected3 = own_pred(3)  # nobody predicts landmark 3
    expected = np.stack([expected0, expected1, expected2, expected3])
    np.testing.assert_allclose(landmarks[0], expected, atol=1e-6)
    np.testing.assert_allclose(scores[0], 0.9, atol=1e-7)


def test_pipnet_candidates_read_offsets_at_the_peak_cell():
    peaks = [(0, 7), (4, 4), (7, 0), (2, 3)]
    own = np.array([[0.1, 0.2], [0.3, 0.4], [0.5, 0.6], [0.7, 0.8]])
    nbr = np.zeros((4, 2, 2))
    candidates, _ = pipnet_candidates(*_pipnet_heads(peaks, own, nbr))
    for i, (r, c) in enumerate(peaks):
        np.testing.assert_allclose(
            candidates[0, i], [(c + own[i, 0]) / 8, (r + own[i, 1]) / 8], atol=1e-6
        )
        # zero neighbour offsets: a neighbour candidate is the peak cell's corner
        np.testing.assert_allclose(candidates[0, 4 + 2 * i], [c / 8, r / 8], atol=1e-7)


def test_pipnet_ties_take_the_first_maximum():
    cls = np.zeros((1, 1, 8, 8), np.float32)
    cls[0, 0, 5, 1] = 1.0  # flat index 41
    cls[0, 0, 1, 6] = 1.0  # flat index 14: first
    zeros = np.zeros((1, 1, 8, 8), np.float32)
    candidates, scores = pipnet_candidates(cls, zeros, zeros, zeros, zeros)
    np.testing.assert_allclose(candidates[0, 0], [6 / 8, 1 / 8])
    assert scores.item() == 1.0


def test_pipnet_merge_matrix_equals_gather_and_mean_on_random_heads():
    table = get_layout("wflw98").neighbours()
    g = np.random.default_rng(3)
    n, size = 3, 8
    heads64 = [g.standard_normal((n, c, size, size)) for c in (98, 98, 98, 980, 980)]
    landmarks, _ = decode_pipnet(heads64, table)
    candidates, _ = pipnet_candidates(*heads64)
    via_matrix = np.einsum("mc,ncd->nmd", table.merge, candidates)
    assert np.abs(via_matrix - landmarks).max() <= 1e-6
    landmarks32, _ = decode_pipnet([h.astype(np.float32) for h in heads64], table)
    assert landmarks32.dtype == np.float32
    assert np.abs(landmarks32 - landmarks).max() <= 1e-6


def test_pipnet_batch_equals_per_sample():
    table = get_layout("300w68").neighbours()
    g = np.random.default_rng(5)
    heads = [g.standard_normal((4, c, 8, 8)).astype(np.float32) for c in (68, 68, 68, 680, 680)]
    batch_lm, batch_sc = decode_pipnet(heads, table)
    for b in range(4):
        lm, sc = decode_pipnet([h[b : b + 1] for h in heads], table)
        np.testing.assert_array_equal(batch_lm[b : b + 1], lm)
        np.testing.assert_array_equal(batch_sc[b : b + 1], sc)


def test_pipnet_rejects_heads_that_do_not_fit_the_table():
    table = NeighbourTable.from_meanface(FOUR_POINTS, 2)
    heads = [np.zeros((1, c, 8, 8), np.float32) for c in (4, 4, 4, 12, 12)]
    with pytest.raises(ValueError, match="neighbour channels"):
        decode_pipnet(heads, table)
    with pytest.raises(ValueError, match="neighbour table"):
        decode_pipnet(heads, None)


def _heatmap(size=16, peak=(5, 7), left=0.0, right=0.0, up=0.0, down=0.0):
    hm = np.zeros((1, 1, size, size), np.float32)
    r, c = peak
    hm[0, 0, r, c] = 1.0
    if c > 0:
        hm[0, 0, r, c - 1] = left
    if c < size - 1:
        hm[0, 0, r, c + 1] = right
    if r > 0:
        hm[0, 0, r - 1, c] = up
    if r < size - 1:
        hm[0, 0, r + 1, c] = down
    return hm


def test_heatmap_interior_peak_moves_a_quarter_pixel_toward_larger_neighbour():
    landmarks, scores = decode_heatmap([_heatmap(left=0.2, right=0.6, up=0.7, down=0.1)])
    np.testing.assert_allclose(landmarks[0, 0], [(7 + 0.5 + 0.25) / 16, (5 + 0.5 - 0.25) / 16])
    assert scores.item() == 1.0


def test_heatmap_equal_neighbours_give_no_shift():
    landmarks, _ = decode_heatmap([_heatmap(left=0.3, right=0.3, up=0.4, down=0.4)])
    np.testing.assert_allclose(landmarks[0, 0], [7.5 / 16, 5.5 / 16])


@pytest.mark.parametrize("peak", [(5, 0), (5, 15), (0, 7), (15, 7), (0, 0)])
def test_heatmap_border_peak_is_not_shifted_on_either_axis(peak):
    landmarks, _ = decode_heatmap([_heatmap(peak=peak, left=0.5, right=0.9, up=0.5, down=0.9)])
    r, c = peak
    np.testing.assert_allclose(landmarks[0, 0], [(c + 0.5) / 16, (r + 0.5) / 16])


def test_heatmap_ties_take_the_first_maximum():
    hm = np.zeros((1, 1, 16, 16), np.float32)
    hm[0, 0, 9, 3] = 1.0
    hm[0, 0, 2, 12] = 1.0  # earlier in row-major order
    landmarks, _ = decode_heatmap([hm])
    np.testing.assert_allclose(landmarks[0, 0], [12.5 / 16, 2.5 / 16])


def test_heatmap_batch_equals_per_sample():
    hm = np.random.default_rng(1).standard_normal((5, 7, 64, 64)).astype(np.float32)
    batch_lm, batch_sc = decode_heatmap([hm])
    for b in range(5):
        lm, sc = decode_heatmap([hm[b : b + 1]])
        np.testing.assert_array_equal(batch_lm[b : b + 1], lm)
        np.testing.assert_array_equal(batch_sc[b : b + 1], sc)


def test_heatmap_decode_reads_the_last_hourglass_stack():
    first = _heatmap(peak=(3, 3))
    last = _heatmap(peak=(10, 12))
    decoder = get_decoder("heatmap_quarter")
    landmarks, _ = decoder.decode(decoder.select_heads([first, last]))
    np.testing.assert_allclose(landmarks[0, 0], [12.5 / 16, 10.5 / 16])
    assert get_decoder("pipnet_nrm").select_heads([first, last]) == (first, last)
    with pytest.raises(
        LmkError, match="unknown decode 'dark'; known: pipnet_nrm, heatmap_quarter, regression"
    ):
        get_decoder("dark")


def test_decode_table_entries_name_their_heads_and_a_graph_builder_that_exists():
    """Each decode's ONNX builder is a string (core stays onnx-free); it must resolve."""
    pytest.importorskip("onnx")
    for decoder in DECODERS.values():
        assert callable(decoder.graph())
        assert set(decoder.neighbour_heads) <= set(decoder.heads)
    assert get_decoder("pipnet_nrm").heads == ("cls", "x", "y", "nb_x", "nb_y")
    assert get_decoder("heatmap_quarter").heads == ("heatmaps",)


def test_only_the_neighbour_merge_decode_builds_a_neighbour_table():
    layout = get_layout("300w68")
    table = get_decoder("pipnet_nrm").neighbour_table(layout, 4)
    assert table is not None and table.num_nb == 4 and table.num_points == 68
    assert get_decoder("heatmap_quarter").neighbour_table(layout, 4) is None


def test_regression_decode_is_the_same_reshape_in_numpy_and_the_onnx_graph():
    """Interleaved x, y -> [N, L, 2]; scores are exactly 1 (no confidence) on both sides."""
    ort = pytest.importorskip("onnxruntime")
    decoder = get_decoder("regression")
    coords = np.random.default_rng(0).random((3, 136)).astype(np.float32)
    landmarks, scores = decoder.decode([coords])
    assert landmarks.shape == (3, 68, 2) and landmarks[1, 5, 1] == coords[1, 11]
    assert not decoder.has_confidence and np.all(scores == 1.0)
    graph = decoder.graph()(68, None, 0, 0, 17, 8, "batch")
    session = ort.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])
    onnx_landmarks, onnx_scores = session.run(["landmarks", "scores"], {"coords": coords})
    np.testing.assert_array_equal(onnx_landmarks, landmarks)
    np.testing.assert_array_equal(onnx_scores, scores)


def test_a_single_head_network_output_is_one_head_not_a_batch_of_rows():
    """A regression net may return its coordinates as one tensor: that is the one head."""
    coords = np.zeros((2, 136), np.float32)
    assert get_decoder("regression").select_heads(coords)[0] is coords
    assert get_decoder("regression").select_heads([coords])[0] is coords


def test_flip_average_maps_the_mirror_back_by_the_flip_table_worked_by_hand():
    """Two points that mirror each other (flip table (1, 0)): the mirror crop's point 1 is
    point 0 seen in the mirror, at x' = 1 - x; each point is the mean of its two views."""
    views = np.array(
        [
            [[0.2, 0.3], [0.7, 0.3]],  # the crop: points 0, 1
            [[0.3, 0.31], [0.8, 0.29]],  # its mirror image: point 0 there is point 1 here
        ],
        np.float32,
    )
    scores = np.array([[0.9, 0.5], [0.7, 0.1]], np.float32)
    landmarks, merged = flip_average(views, scores, (1, 0))
    np.testing.assert_allclose(landmarks, [[[0.2, 0.295], [0.7, 0.305]]], atol=1e-7)
    np.testing.assert_allclose(merged, [[0.5, 0.6]], atol=1e-7)


def test_flip_average_of_an_exactly_mirrored_prediction_is_that_prediction():
    """A model that sees the mirror image exactly mirrored gives back its own landmarks,
    for the 300w68 and wflw98 flip tables (each its own inverse)."""
    rng = np.random.default_rng(3)
    for name in ("300w68", "wflw98"):
        flip = np.asarray(get_layout(name).flip)
        plain = rng.random((2, len(flip), 2)).astype(np.float32)
        seen = plain[:, flip].copy()  # the mirror image's point i is our point flip[i] ...
        seen[..., 0] = 1.0 - seen[..., 0]  # ... mirrored
        views = np.concatenate([plain, seen])
        landmarks, _ = flip_average(views, np.ones(views.shape[:2], np.float32), flip)
        np.testing.assert_allclose(landmarks, plain, atol=1e-6)


def test_mirror_views_and_flip_average_are_the_same_in_numpy_and_the_onnx_graphs():
    """The in-graph copies (lmk.export.graphs) of the mirror batch and the merge, against the
    numpy twins, on random inputs with a fixed batch and a dynamic one."""
    ort = pytest.importorskip("onnxruntime")
    from lmk.export import graphs

    rng = np.random.default_rng(4)
    crops = rng.random((3, 3, 8, 8)).astype(np.float32)
    mirror = graphs.mirror_views_model(8, 17, 8, "batch", "views")
    run = ort.InferenceSession(mirror.SerializeToString(), providers=["CPUExecutionProvider"])
    np.testing.assert_array_equal(run.run(["views"], {"input": crops})[0], mirror_views(crops))
    flip = tuple(get_layout("300w68").flip)
    views = rng.random((6, 68, 2)).astype(np.float32)
    scores = rng.random((6, 68)).astype(np.float32)
    for batch, view_batch in (("batch", "views"), (3, 6)):
        merge = graphs.flip_average_model(68, flip, 17, 8, batch, view_batch)
        run = ort.InferenceSession(merge.SerializeToString(), providers=["CPUExecutionProvider"])
        got = run.run(["landmarks", "scores"], {"view_landmarks": views, "view_scores": scores})
        want = flip_average(views, scores, flip)
        np.testing.assert_allclose(got[0], want[0], atol=1e-7)
        np.testing.assert_allclose(got[1], want[1], atol=1e-7)
