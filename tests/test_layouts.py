"""Layouts and PIPNet's neighbour tables (docs/design.md sections 3 and 5)."""

from __future__ import annotations

import numpy as np
import pytest

from lmk.core.errors import LmkError
from lmk.core.layouts import PUBLIC_LAYOUTS, Layout, NeighbourTable, custom_layout, get_layout

# The 4-point mean face worked by hand below: squared distances
#   d01 = 1, d02 = 4, d03 = 50, d12 = 5, d13 = 41, d23 = 34
FOUR_POINTS = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0], [5.0, 5.0]])


@pytest.mark.parametrize(
    ("name", "points", "norm"),
    [
        ("wflw98", 98, (60, 72)),
        ("300w68", 68, (36, 45)),
        ("cofw29", 29, (8, 9)),
        ("aflw19", 19, "box"),
    ],
)
def test_public_layout_has_release_facts(name, points, norm):
    layout = get_layout(name)
    assert layout.num_points == points
    assert layout.nme_norm == norm
    assert layout.meanface.shape == (points, 2)
    assert (layout.meanface > 0).all() and (layout.meanface < 1).all()
    assert all(layout.flip[layout.flip[i]] == i for i in range(points))


@pytest.mark.parametrize("name", PUBLIC_LAYOUTS)
def test_flip_table_maps_mirrored_meanface_onto_itself(name):
    layout = get_layout(name)
    mirrored = layout.meanface.copy()
    centre_x = mirrored[:, 0].mean()  # COFW's mean face sits 0.02 right of the crop centre
    mirrored[:, 0] = 2 * centre_x - mirrored[:, 0]
    # After mirroring, new point i takes old point flip[i]; a near-symmetric mean face maps
    # onto itself, while the identity permutation does not.
    err_flip = np.abs(mirrored[list(layout.flip)] - layout.meanface).max()
    err_identity = np.abs(mirrored - layout.meanface).max()
    assert err_flip < 0.04  # COFW chin is 0.016 off the mean face axis
    assert err_identity > 0.2


def test_unknown_layout_names_the_known_ones():
    with pytest.raises(LmkError, match="wflw98"):
        get_layout("wflw99")


def test_four_point_neighbours_worked_by_hand():
    table = NeighbourTable.from_meanface(FOUR_POINTS, num_nb=2)
    np.testing.assert_array_equal(table.nb, [[1, 2], [0, 2], [0, 1], [2, 1]])
    # Reverse index in ascending i, as indices into [own (4), neighbour (4*2)]:
    #   0 <- (1,0) (2,0)        = 4+2*1+0, 4+2*2+0           = 6, 8
    #   1 <- (0,0) (2,1) (3,1)  = 4, 9, 11
    #   2 <- (0,1) (1,1) (3,0)  = 5, 7, 10
    #   3 <- nobody: keeps its own prediction
    # max_len = 3; shorter lists repeat cyclically.
    assert table.max_len == 3
    np.testing.assert_array_equal(
        table.gather, [[0, 6, 8, 6], [1, 4, 9, 11], [2, 5, 7, 10], [3, 3, 3, 3]]
    )
    merge = table.merge
    assert merge.shape == (4, 12)
    expected_row0 = np.zeros(12)
    expected_row0[[0, 8]] = 0.25
    expected_row0[6] = 0.5
    np.testing.assert_allclose(merge[0], expected_row0)
    np.testing.assert_allclose(merge[3], np.eye(12)[3])
    np.testing.assert_allclose(merge.sum(axis=1), 1.0)


def test_neighbour_ties_keep_the_lower_index():
    # Points 1 and 2 are both at distance 1 from point 0: stable order picks 1 first.
    face = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [3.0, 3.0]])
    table = NeighbourTable.from_meanface(face, num_nb=1)
    assert table.nb[0, 0] == 1


def test_wflw_table_matches_pipnet_release_sizes():
    table = get_layout("wflw98").neighbours()
    assert table.nb.shape == (98, 10)
    assert not (table.nb == np.arange(98)[:, None]).any()
    assert table.gather.shape == (98, 1 + table.max_len)
    # Each of the 980 neighbour channels appears in exactly one landmark's list.
    used = np.unique(table.gather[:, 1:][table.gather[:, 1:] >= 98])
    np.testing.assert_array_equal(used, np.arange(98, 98 + 980))


def test_num_nb_out_of_range_is_an_error():
    with pytest.raises(LmkError, match="num_nb"):
        NeighbourTable.from_meanface(FOUR_POINTS, num_nb=4)


def test_custom_layout_meanface_is_mean_of_annotations():
    rng = np.random.default_rng(0)
    annotations = rng.uniform(0.1, 0.9, size=(20, 5, 2))
    layout = custom_layout("hand5", annotations, flip=[4, 3, 2, 1, 0], nme_norm=(0, 4), num_nb=2)
    np.testing.assert_allclose(layout.meanface, annotations.mean(axis=0))
    assert layout.neighbours().nb.shape == (5, 2)
    again = Layout.from_dict(layout.to_dict())
    np.testing.assert_array_equal(again.meanface, layout.meanface)
    assert again.flip == layout.flip and again.nme_norm == (0, 4)


@pytest.mark.parametrize(
    ("flip", "message"),
    [([0, 1, 2], "entries"), ([0, 1, 1, 3, 4], "permutation"), ([1, 2, 0, 3, 4], "inverse")],
)
def test_custom_layout_rejects_bad_flip_tables(flip, message):
    annotations = np.full((3, 5, 2), 0.5)
    with pytest.raises(LmkError, match=message):
        custom_layout("bad", annotations, flip=flip, nme_norm=(0, 1))


def test_custom_layout_rejects_non_finite_annotations():
    annotations = np.full((3, 5, 2), 0.5)
    annotations[1, 2, 0] = np.nan
    with pytest.raises(LmkError, match="NaN"):
        custom_layout("bad", annotations, flip=[0, 1, 2, 3, 4], nme_norm=(0, 1))
