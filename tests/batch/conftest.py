"""lmk-batch's tests share one local Ray instance of 2 CPUs (starting Ray takes seconds and
most of a 2-core machine; it is stopped once tests/batch/ is done) and one small SynthFace
collection with its single-process reference: what lmk-run's own engine (``run_pipeline``,
one process, no Ray) finds in each file, at full precision."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest

from lmk.core.cli_util import run_cli

IMAGES = 300
CLIPS = 3
CLIP_FRAMES = 12
IMAGE_SIZE = (112, 112)
BOX = "0,0,112,112"
"""The frame detector's fixed region (whole images; in the clips, where the face starts):
three crops an image instead of ~35 scanning windows, so 300 images stay quick on 2 cores."""


@pytest.fixture(scope="package")
def ray_address() -> str:
    """A local Ray of 2 CPUs for tests/batch/; lmk-batch run in-process uses it as is,
    a subprocess joins it with ``--ray ADDRESS``."""
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    ray = pytest.importorskip("ray", reason='Ray is not installed (pip install "lmk[batch]")')
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        object_store_memory=256 * 1024 * 1024,
    )
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@dataclass
class Collection:
    folder: Path
    images: list[Path]
    clips: list[Path]
    reference: dict[tuple[str, int], list]
    """(path, frame) -> that frame's (face id, face) from lmk-run's engine in one process."""


def reference_faces(paths: list[Path], kind: str) -> dict[tuple[str, int], list]:
    """lmk-run's engine (the tracker and pipeline it runs, one process, no Ray) on ``paths``:
    each image set or video as lmk-run reads it."""
    from lmk.runtime.api import LandmarkSession
    from lmk.runtime.pipeline import Sinks, run_pipeline
    from lmk.runtime.sources import Source, display_name, open_source

    session = LandmarkSession(ep="cpu", threads=1)
    found: dict[tuple[str, int], list] = {}
    sources = (
        [(Source("images", "set", count=len(paths), files=paths), None)]
        if kind == "image"
        else [(open_source(p), display_name(p)) for p in paths]
    )
    for source, name in sources:
        with source:

            def keep(frame, faces, name=name, video=source.kind == "video"):
                # Face ids as the dataset has them: a video's track ids, an image's numbers.
                ids = [f.track_id for f in faces] if video else list(range(len(faces)))
                found[(name or frame.name, frame.index if video else 0)] = list(
                    zip(ids, faces, strict=True)
                )

            tracker = session.tracker("frame", box=tuple(float(v) for v in BOX.split(",")))
            run_pipeline(session, tracker, source, Sinks(), on_frame=keep)
    return found


def face_frame(box: np.ndarray, grow: float = 1.15) -> np.ndarray:
    """The affine map that cuts a frame to ``box`` grown by ``grow``, at IMAGE_SIZE: what a
    collection of aligned face photos or face clips looks like, and what BOX finds in three
    crops."""
    x, y, w, h = box
    scale = IMAGE_SIZE[0] / (max(w, h) * grow)
    return np.array(
        [
            [scale, 0.0, IMAGE_SIZE[0] / 2 - (x + w / 2) * scale],
            [0.0, scale, IMAGE_SIZE[1] / 2 - (y + h / 2) * scale],
        ]
    )


def framed(image: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    return cv2.warpAffine(image, matrix, IMAGE_SIZE, borderMode=cv2.BORDER_REFLECT)


def write_face_clip(path: Path, seed: int) -> None:
    """A SynthFace clip cut to where its face is in the first frame (the face moves a little
    inside it), mp4v."""
    from lmk.synth.video import render_clip

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), 25.0, IMAGE_SIZE)
    matrix = None
    for frame in render_clip(seed, CLIP_FRAMES, (192, 160)):
        matrix = face_frame(frame.faces[0].box, 1.4) if matrix is None else matrix
        writer.write(framed(frame.image, matrix))
    writer.release()


@pytest.fixture(scope="package")
def collection(tmp_path_factory) -> Collection:
    """300 SynthFace images and 3 short clips in one folder (the clips in a subfolder)."""
    from lmk.synth.params import sample_seed
    from lmk.synth.render import render_face

    folder = tmp_path_factory.mktemp("collection").resolve()
    images = []
    for i in range(IMAGES):
        path = folder / f"img{i:04d}.png"
        sample = render_face(sample_seed(7, i), (160, 160))
        cv2.imwrite(str(path), framed(sample.image, face_frame(sample.box)))
        images.append(path.resolve())
    (folder / "clips").mkdir()
    clips = []
    for k in range(CLIPS):
        path = folder / "clips" / f"clip{k}.mp4"
        write_face_clip(path, seed=20 + k)
        clips.append(path.resolve())
    reference = {**reference_faces(images, "image"), **reference_faces(clips, "video")}
    return Collection(folder, images, clips, reference)


def lmk_batch(*args: object) -> int:
    """lmk-batch in this process (on the session's Ray), as its console script runs it."""
    from lmk.batch.cli import batch_command

    return run_cli(batch_command, [*map(str, args), "--detector", "frame", "--box", BOX, "--quiet"])


def dataset_faces(table) -> dict[tuple[str, int], list[tuple[int, np.ndarray]]]:
    """The face rows of a dataset table: (path, frame) -> [(face id, landmarks [L, 2])]."""
    rows = table.filter(table.column("status").to_numpy(zero_copy_only=False) == "ok")
    out: dict[tuple[str, int], list] = {}
    marks = np.asarray(rows.column("landmarks").combine_chunks().flatten()).reshape(
        rows.num_rows, -1, 2
    )
    for path, frame, face, points in zip(
        rows.column("path").to_pylist(),
        rows.column("frame").to_pylist(),
        rows.column("face").to_pylist(),
        marks,
        strict=True,
    ):
        out.setdefault((path, frame), []).append((face, points))
    return out


def assert_matches_reference(table, reference: dict, paths: set[str] | None = None) -> float:
    """Every face of ``reference`` (restricted to ``paths``) is in ``table`` with the same id
    and landmarks within 1e-5 of its crop; no other face is. Returns the largest difference
    as a fraction of the face's crop box side."""
    got = dataset_faces(table)
    worst = 0.0
    for (path, frame), faces in reference.items():
        if paths is not None and path not in paths:
            continue
        rows = sorted(got.pop((path, frame), []), key=lambda r: r[0])
        assert [r[0] for r in rows] == [i for i, _ in faces], (path, frame)
        for (_, points), (_, face) in zip(rows, faces, strict=True):
            side = float(max(face.region.box[2], face.region.box[3]))
            worst = max(worst, float(np.abs(points - face.landmarks).max()) / side)
    assert not got, f"faces the single-process run did not find: {sorted(got)[:5]}"
    assert worst <= 1e-5, worst
    return worst


def no_duplicate_rows(table) -> bool:
    keys = list(
        zip(
            table.column("path").to_pylist(),
            table.column("frame").to_pylist(),
            table.column("face").to_pylist(),
            strict=True,
        )
    )
    return len(keys) == len(set(keys))
