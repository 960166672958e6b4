"""Accuracy of a backend: NME on SynthFace's held-out faces, scored as ``lmk-eval`` scores.

The crops are ``lmk-eval --data synth``'s held-out set (``SYNTH_VAL_BASE`` seeds, the model's
crop policy and input size, no augmentation), so the NME of the ``pytorch`` backend here is
the number ``lmk-eval CHECKPOINT --size N`` prints; INT8 calibration draws from another seed
(:data:`lmk.bench.backends.CALIBRATION_SEED`), so no calibration face is ever scored. Scoring
is :func:`lmk.train.engine.score` (landmarks mapped back to the frame, :func:`lmk.core.metrics.nme`):
nothing here re-implements a metric.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class HeldOut:
    """The held-out faces of one model: uint8 BGR crops and what scoring them needs."""

    crops: np.ndarray  # uint8 [N, S, S, 3]
    gt: np.ndarray  # [N, L, 2] frame pixels
    matrix: np.ndarray  # [N, 2, 3] frame -> crop pixels
    box: np.ndarray  # [N, 4]
    attributes: np.ndarray  # [N, 6]
    layout: Any  # lmk.core.layouts.Layout
    input_size: int

    def __len__(self) -> int:
        return len(self.crops)

    def nme(self, landmarks: np.ndarray) -> float:
        """Mean NME (a fraction) of crop-normalised ``landmarks`` [N, L, 2] for these faces."""
        from lmk.train.engine import Predictions, score

        predictions = Predictions(
            landmarks=np.asarray(landmarks, dtype=np.float64),
            gt=self.gt,
            matrix=self.matrix,
            box=self.box,
            attributes=self.attributes,
            index=np.arange(len(self.crops)),
        )
        results, _ = score(predictions, self.layout, self.input_size)
        return float(results["overall"]["nme"])


def held_out(checkpoint: Any, count: int) -> HeldOut:
    """The first ``count`` faces of ``lmk-eval``'s SynthFace held-out set for ``checkpoint``."""
    from lmk.train.data import (
        SYNTH_VAL_BASE,
        LandmarkDataset,
        SynthSource,
        synth_image_size,
    )

    layout = checkpoint.layout
    source = SynthSource(
        count, SYNTH_VAL_BASE, layout.name, synth_image_size(checkpoint.input_size)
    )
    dataset = LandmarkDataset(
        source,
        layout,
        checkpoint.input_size,
        checkpoint.crop,
        checkpoint.normalisation,
        augment=None,
        return_crop=True,
    )
    items = [dataset[i] for i in range(count)]

    def stack(key: str) -> np.ndarray:
        return np.stack([item[key].numpy() for item in items])

    return HeldOut(
        crops=np.ascontiguousarray(stack("crop")),
        gt=stack("frame_landmarks"),
        matrix=stack("matrix"),
        box=stack("box"),
        attributes=stack("attributes"),
        layout=layout,
        input_size=checkpoint.input_size,
    )


def predict(run: Any, crops: np.ndarray, batch: int = 32) -> np.ndarray:
    """``run`` (crops -> landmarks [N, L, 2]) over ``crops`` in batches of ``batch``."""
    return np.concatenate(
        [np.asarray(run(crops[i : i + batch])) for i in range(0, len(crops), batch)]
    )
