"""How a face box becomes the model's square input crop (numpy only; the runtime uses it too).

The policy travels with the model (checkpoint, then ONNX metadata) so that training, export
and the runtime all crop a face the same way.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class CropPolicy:
    """Crop region from a box ``(x, y, w, h)`` in frame pixels.

    ``square``: side = ``enlarge * (w + h) / 2`` about the (shifted) box centre; otherwise the
    crop is ``enlarge * w`` by ``enlarge * h`` (stretched to the square input, as the official
    PIPNet preprocessing does). ``shift_y`` moves the centre by that fraction of ``h``.
    """

    enlarge: float = 1.2
    shift_y: float = 0.0
    square: bool = True

    def region(self, box: np.ndarray | tuple[float, float, float, float]) -> np.ndarray:
        """[x0, y0, x1, y1] of the crop, float frame pixels (may extend past the frame)."""
        x, y, w, h = (float(v) for v in box)
        cx, cy = x + w / 2.0, y + h / 2.0 + self.shift_y * h
        if self.square:
            half_w = half_h = self.enlarge * (w + h) / 4.0
        else:
            half_w, half_h = self.enlarge * w / 2.0, self.enlarge * h / 2.0
        return np.array([cx - half_w, cy - half_h, cx + half_w, cy + half_h])

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> CropPolicy:
        return cls(
            enlarge=float(data["enlarge"]),
            shift_y=float(data.get("shift_y", 0.0)),
            square=bool(data.get("square", True)),
        )


LMK_CROP = CropPolicy(enlarge=1.2)
PIPNET_OFFICIAL_CROP = CropPolicy(enlarge=1.2, square=False)
# face-alignment: centre moved up by 0.12 h, side = 200 * (w + h) / 195.
FAN_OFFICIAL_CROP = CropPolicy(enlarge=400.0 / 195.0, shift_y=-0.12)
