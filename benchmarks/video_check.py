"""What checking a written video costs: counting its packets against decoding every frame.

Every video lmk writes (lmk-run --out, lmk-synth video, the demo) is reopened and its frames
counted before it moves into place, since OpenCV's writer does not report a full disk
(lmk.core.fileio.check_video_frames). That check used to decode every frame; it now counts
the container's packets (FFmpeg's raw mode) and looks at the last one. This script times both
on the same files, a 1280x720 SynthFace clip re-encoded as lmk-run writes each container
(.mp4 and .mkv mp4v, .avi MJPG), each method in its own block, alternating, and reports
the ratio measured in this run. No ONNX Runtime is involved, so no spinning caveat applies.
Writes video_check.{json,md} under benchmarks/results/<machine>/.

    .venv/bin/python benchmarks/video_check.py [--frames 300] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lmk.bench.machine import describe, load_note, machine_slug  # noqa: E402
from lmk.core.fileio import check_video_frames  # noqa: E402
from lmk.synth.video import write_clip  # noqa: E402
from runtime.outputs import VIDEO_CODECS  # noqa: E402

SIZE = (1280, 720)


def decode_every_frame(path: Path, expected: int) -> None:
    """The check as it was: grab (decode) each frame and count."""
    capture = cv2.VideoCapture(str(path))
    count = 0
    while count < expected + 1 and capture.grab():
        count += 1
    capture.release()
    assert count == expected, (path, count)


def reencode(source: Path, target: Path) -> int:
    capture = cv2.VideoCapture(str(source))
    fourcc = cv2.VideoWriter_fourcc(*VIDEO_CODECS[target.suffix])
    writer = cv2.VideoWriter(str(target), fourcc, 25.0, SIZE)
    count = 0
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        writer.write(frame)
        count += 1
    writer.release()
    capture.release()
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, help="results folder (default: per machine)")
    args = parser.parse_args()
    machine = describe()
    out = args.out or ROOT / "benchmarks" / "results" / machine_slug(machine)
    load_start = os.getloadavg()[0]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "source.mp4"
        write_clip(source, seed=3, frames=args.frames, size=SIZE)
        for suffix in (".mp4", ".avi", ".mkv"):
            video = Path(tmp) / f"clip{suffix}"
            frames = reencode(source, video)
            times: dict[str, list[float]] = {"decode": [], "packets": []}
            for _ in range(args.repeats):  # alternating blocks, so drift hits both alike
                for method, check in (
                    ("decode", lambda v=video, n=frames: decode_every_frame(v, n)),
                    ("packets", lambda v=video, n=frames: check_video_frames(v, n, v)),
                ):
                    start = time.perf_counter()
                    check()
                    times[method].append(time.perf_counter() - start)
            decode, packets = (1000 * statistics.median(times[m]) for m in ("decode", "packets"))
            rows.append(
                {
                    "container": suffix,
                    "codec": VIDEO_CODECS[suffix],
                    "frames": frames,
                    "megabytes": round(video.stat().st_size / 1e6, 2),
                    "decode_ms": round(decode, 2),
                    "packets_ms": round(packets, 2),
                    "ratio": round(decode / packets, 1),
                }
            )
            print(rows[-1], flush=True)
    report = {
        "machine": machine,
        "size": list(SIZE),
        "repeats": args.repeats,
        "load": {"start": load_start, "end": os.getloadavg()[0]},
        "rows": rows,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "video_check.json").write_text(json.dumps(report, indent=2) + "\n")
    flags = " ".join(f for f in machine["cpu_flags"] if f.startswith(("avx", "amx")))
    lines = [
        "# Checking a written video: packets counted vs every frame decoded",
        "",
        f"Machine: {machine['cpu']}, {machine['cores']} cores ({flags}); "
        f"OpenCV {cv2.__version__}. A {SIZE[0]}x{SIZE[1]} SynthFace clip, "
        f"median of {args.repeats} alternating runs. "
        + load_note(report["load"]["start"], report["load"]["end"], own=1),
        "",
        "| container | codec | frames | MB | decode every frame (ms) | count packets (ms) | ratio |",
        "|---|---|---|---|---|---|---|",
        *(
            f"| {r['container']} | {r['codec']} | {r['frames']} | {r['megabytes']} | "
            f"{r['decode_ms']} | {r['packets_ms']} | {r['ratio']}x |"
            for r in rows
        ),
        "",
        "Ratios are within this run. Per frame, decoding is what a long lmk-run --out paid again "
        "after its work was done.",
        "",
    ]
    (out / "video_check.md").write_text("\n".join(lines))
    print(f"wrote {out / 'video_check.md'}")


if __name__ == "__main__":
    main()
