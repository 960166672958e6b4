"""SynthFace: built-in procedural face data, and WFLW / 300W / CSV / JSON annotation files.

numpy + OpenCV only (no torch), so data can be made and read on any box. ``render_face``
draws one posed cartoon face with exact WFLW-98 landmarks; ``render_clip`` makes a clip of
smoothly moving faces; ``lmk.synth.formats`` reads and writes the annotation files.
"""

from lmk.synth.crops import synth_crop, synth_crops
from lmk.synth.formats import (
    Annotation,
    read_300w,
    read_annotations,
    read_csv,
    read_json,
    read_pts,
    read_wflw,
    write_csv,
    write_json,
    write_pts,
    write_wflw,
)
from lmk.synth.render import (
    WFLW_ATTRIBUTES,
    WFLW_TO_300W,
    FaceParams,
    SynthSample,
    render_face,
    sample_params,
    sample_seed,
    wflw98_to_300w68,
)
from lmk.synth.video import ClipFace, ClipFrame, render_clip

__all__ = [
    "WFLW_ATTRIBUTES",
    "WFLW_TO_300W",
    "Annotation",
    "ClipFace",
    "ClipFrame",
    "FaceParams",
    "SynthSample",
    "read_300w",
    "read_annotations",
    "read_csv",
    "read_json",
    "read_pts",
    "read_wflw",
    "render_clip",
    "render_face",
    "sample_params",
    "sample_seed",
    "synth_crop",
    "synth_crops",
    "wflw98_to_300w68",
    "write_csv",
    "write_json",
    "write_pts",
    "write_wflw",
]
