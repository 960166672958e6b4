"""The numpy host decoders (runtime, benchmark baseline) decode exactly like the reference."""

from __future__ import annotations

import numpy as np
import torch

from lmk.core.decode import numpy_heatmap_decode, numpy_pipnet_decode
from lmk.core.layouts import get_layout
from lmk.decode import decode_heatmap, decode_pipnet


def test_numpy_pipnet_baseline_equals_reference_decode():
    table = get_layout("wflw98").neighbours()
    g = torch.Generator().manual_seed(0)
    heads = [torch.randn(4, c, 8, 8, generator=g) for c in (98, 98, 98, 980, 980)]
    want_lm, want_sc = decode_pipnet(*heads, table)
    got_lm, got_sc = numpy_pipnet_decode(*(h.numpy() for h in heads), table.gather)
    assert np.abs(got_lm - want_lm.numpy()).max() <= 1e-6
    assert np.array_equal(got_sc, want_sc.numpy())


def test_numpy_heatmap_baseline_equals_reference_decode():
    heatmaps = torch.randn(3, 68, 64, 64, generator=torch.Generator().manual_seed(1))
    heatmaps[0, 0] = 0
    heatmaps[0, 0, 0, 5] = 1  # a border peak
    want_lm, want_sc = decode_heatmap(heatmaps)
    got_lm, got_sc = numpy_heatmap_decode(heatmaps.numpy())
    assert np.abs(got_lm - want_lm.numpy()).max() <= 1e-6
    assert np.array_equal(got_sc, want_sc.numpy())
