"""SynthFace faces cropped the way a model sees them (calibration, quick evaluation)."""

from __future__ import annotations

import numpy as np

from lmk.core.geometry import CropPolicy, apply_affine, warp_crop
from lmk.synth.params import sample_seed
from lmk.synth.render import render_face


def synth_crop(
    seed: int, size: int, policy: CropPolicy, image_size: int = 384
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One face: (uint8 BGR crop [S, S, 3], landmarks in crop pixels [98, 2], attributes [6])."""
    sample = render_face(seed, image_size=image_size)
    matrix = policy.matrix(sample.box, size)
    return (
        warp_crop(sample.image, matrix, size),
        apply_affine(matrix, sample.landmarks),
        sample.attributes,
    )


def synth_crops(
    count: int, size: int, policy: CropPolicy | None = None, seed: int = 0
) -> np.ndarray:
    """``count`` uint8 BGR crops [M, S, S, 3] of different SynthFace faces (deterministic)."""
    policy = policy or CropPolicy()
    return np.stack([synth_crop(sample_seed(seed, i), size, policy)[0] for i in range(count)])
