"""Input normalisation: the one place its arithmetic is defined (numpy only).

Every path that turns pixels into network input (torch reference, numpy baseline, the ONNX
graph) computes ``(pixel - offset) * scale`` with the float32 constants from
:meth:`Normalisation.constants`, so they agree bit for bit before the network.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Normalisation:
    """``(pixel / 255 - mean) / std`` per channel, after converting BGR to ``channel_order``."""

    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    channel_order: str = "rgb"

    def constants(self) -> tuple[np.ndarray, np.ndarray]:
        """float32 ``offset = 255 * mean`` and ``scale = 1 / (255 * std)``, per channel."""
        mean = np.asarray(self.mean, dtype=np.float64)
        std = np.asarray(self.std, dtype=np.float64)
        return (255.0 * mean).astype(np.float32), (1.0 / (255.0 * std)).astype(np.float32)

    def channel_index(self) -> list[int]:
        """Which BGR channel feeds each input channel."""
        return [2, 1, 0] if self.channel_order == "rgb" else [0, 1, 2]

    def apply_bgr_nhwc(self, images: np.ndarray) -> np.ndarray:
        """uint8 BGR [N, H, W, 3] -> float32 normalised [N, 3, H, W] (the numpy baseline path)."""
        offset, scale = self.constants()
        x = images[..., self.channel_index()].astype(np.float32)
        x = (x - offset) * scale
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2))

    def to_dict(self) -> dict:
        return {"mean": list(self.mean), "std": list(self.std), "channel_order": self.channel_order}

    @classmethod
    def from_dict(cls, data: Mapping) -> Normalisation:
        return cls(
            tuple(float(v) for v in data["mean"]),  # type: ignore[arg-type]
            tuple(float(v) for v in data["std"]),  # type: ignore[arg-type]
            str(data.get("channel_order", "rgb")),
        )


IMAGENET = Normalisation((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
UNIT_RANGE = Normalisation((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))  # face-alignment: RGB / 255 only
FACEAPI_MEAN_RGB = (122.782, 117.001, 104.298)
"""face-api.js FaceFeatureExtractor.forwardInput: (RGB - meanRgb) / 255, no std."""
FACEAPI_NORMALISATION = Normalisation(
    (FACEAPI_MEAN_RGB[0] / 255.0, FACEAPI_MEAN_RGB[1] / 255.0, FACEAPI_MEAN_RGB[2] / 255.0),
    (1.0, 1.0, 1.0),
)
