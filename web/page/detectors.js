// Where the tracker's fresh faces come from, the interface of lmk/runtime/detectors.py:
// `detect(frame) -> [faceBox]` (maybe async), `toLandmarkBox(region)` (how the detector's
// box becomes the box a landmark model crops) and `findsFaces` (true for a real face
// detector, whose boxes are faces even where the landmark model scores them low). FrameDetector is that file's "frame" detector: a
// fixed (or user-drawn) box, or, without one, windows over the frame at four scales that the
// tracker ranks by the landmark model's own score, so faces are found with no detector file.
//
// A detector file (lmk.kind = "detector") runs through blazeface.js's BlazeFaceDetector, which
// has this same interface (`name`, `findsFaces`, `detect`, `toLandmarkBox`), so the Tracker
// takes either unchanged: it refines every detection on landmark boxes, as lmk-run does.

import { faceBox } from "./faces.js";

const SCALES = [1.0, 0.7, 0.5, 0.35]; // window side / the frame's short side

/** np.arange(0, stop, step) */
function arange(stop, step) {
  const n = Math.max(0, Math.ceil(stop / step));
  return Array.from({ length: n }, (_, i) => i * step);
}

function overlapsFrame(box, width, height) {
  const [x, y, w, h] = box;
  return x < width && y < height && x + w > 0 && y + h > 0;
}

export class FrameDetector {
  constructor(box = null) {
    if (box !== null && !(box.length === 4 && box.every(Number.isFinite) && box[2] > 0 && box[3] > 0)) {
      throw new Error("a face box is x, y, w, h with a positive width and height");
    }
    this.name = "frame";
    this.findsFaces = false; // windows need the landmark score to tell faces from background
    this.box = box;
  }

  /** A window or drawn box is already the region to crop. */
  toLandmarkBox(region) {
    return region;
  }

  detect(frame) {
    const { width: w, height: h } = frame;
    if (this.box !== null) return overlapsFrame(this.box, w, h) ? [faceBox(this.box.slice())] : [];
    const windows = [faceBox([0.0, 0.0, w, h])];
    for (const scale of SCALES) {
      const side = scale * Math.min(w, h);
      const step = side / 2.0;
      const xs = arange(Math.max(w - side, 0.0) + 1e-6, step);
      const ys = arange(Math.max(h - side, 0.0) + 1e-6, step);
      for (const y of ys) for (const x of xs) windows.push(faceBox([x, y, side, side]));
    }
    return windows;
  }
}
