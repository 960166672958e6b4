"""SynthFace: built-in procedural face data.

numpy + OpenCV only (no torch), so data can be made on any box. ``render_face`` draws one
posed cartoon face with exact WFLW-98 landmarks; ``render_clip`` makes a clip of smoothly
moving faces; ``lmk.annotations`` reads and writes the annotation files it is saved as.
"""

from lmk.synth.crops import synth_crop, synth_crops
from lmk.synth.params import FaceParams, sample_params, sample_seed
from lmk.synth.render import SynthSample, render_face
from lmk.synth.video import ClipFace, ClipFrame, render_clip

__all__ = [
    "ClipFace",
    "ClipFrame",
    "FaceParams",
    "SynthSample",
    "render_clip",
    "render_face",
    "sample_params",
    "sample_seed",
    "synth_crop",
    "synth_crops",
]
