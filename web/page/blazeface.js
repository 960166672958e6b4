// An lmk BlazeFace detector file on onnxruntime-web, the page's copy of BlazeFaceOnnxDetector
// (lmk/runtime/blazeface_detector.py): letterbox the frame into the file's square, feed
// `image` (uint8 BGR) and `frame_box`, and the file returns every anchor's box, keypoints and
// score in frame pixels (the anchor decode is inside it); the weighted NMS runs here, as on
// the host. It has FrameDetector's interface (detectors.js), so the Tracker takes it as is.

import { faceBox } from "./faces.js";
import { letterbox } from "./letterbox.js";
import { parseLmkMetadata, readMetadataProps } from "./metadata.js";
import { weightedNms } from "./nms.js";
import { openSession } from "./runtime.js";

const NMS_IOU = 0.3; // lmk.runtime.blazeface.NMS_IOU, when the file states none
const FETCH_HINT = "make one with `lmk models fetch blazeface`";

/**
 * A detection's roll (radians, image axes) from its flat keypoints [x0, y0, x1, y1, ...]: the
 * line from the right eye (keypoint 0, on the image's left) to the left eye (keypoint 1), as
 * eye_line_roll in lmk/runtime/blazeface_detector.py. The box stays axis-aligned; a tracker
 * that turns crops upright (lmk.rotate) uses this angle for a new face's first crop.
 */
export function eyeLineRoll(keypoints) {
  const dx = keypoints[2] - keypoints[0];
  const dy = keypoints[3] - keypoints[1];
  return Math.hypot(dx, dy) > 1e-6 ? Math.atan2(dy, dx) : 0.0;
}

export class BlazeFaceDetector {
  /** Read the metadata from `bytes` (an lmk detector file) and open an ORT session. */
  static async load(runtime, bytes, name = "detector") {
    const { kind, values } = parseLmkMetadata(readMetadataProps(bytes), name);
    if (kind !== "detector" || values["lmk.model"] !== "blazeface") {
      throw new Error(`${name} is not an lmk BlazeFace detector file (lmk.kind=${kind}); ${FETCH_HINT}`);
    }
    const session = await openSession(runtime, bytes);
    return new BlazeFaceDetector(runtime, session, values, name);
  }

  constructor(runtime, session, values, name) {
    this.runtime = runtime;
    this.session = session;
    this.fileName = name;
    this.name = "blazeface";
    this.findsFaces = true; // its boxes are faces even where a landmark model scores them low
    this.inputSize = Number(values["lmk.input_size"]);
    this.minScore = Number(values["lmk.min_score"]);
    this.iou = Number(values["lmk.nms"]?.iou ?? NMS_IOU);
    // How its box becomes the box a landmark model crops: the file says (lmk.landmark_box).
    const rule = values["lmk.landmark_box"] ?? { grow: 1.0, shift_y: 0.0 };
    this.landmarkBox = { grow: Number(rule.grow), shiftY: Number(rule.shift_y) };
    if (!(this.inputSize > 0 && this.minScore >= 0 && this.landmarkBox.grow > 0)) {
      throw new Error(`${name}: lmk.input_size, lmk.min_score or lmk.landmark_box is missing or out of range`);
    }
    this.lastKeypoints = [];
    this.record = null; // an array: every detect() call's faces are kept (tests)
    this.describe = `blazeface (${name}, lmk detector file)`;
  }

  /** Every anchor's candidate in frame pixels, straight from the file. */
  async candidates(frame) {
    const size = this.inputSize;
    const { square, frameBox } = letterbox(frame, size);
    const ort = this.runtime.ort;
    const out = await this.session.run({
      image: new ort.Tensor("uint8", square, [1, size, size, 3]),
      frame_box: new ort.Tensor("float32", frameBox, [1, 4]),
    });
    const anchors = out.scores.dims[1];
    const perPoint = out.keypoints.data.length / anchors;
    const boxes = [];
    const keypoints = [];
    const scores = Array.from(out.scores.data);
    for (let a = 0; a < anchors; a++) {
      boxes.push(Array.from(out.boxes.data.subarray(a * 4, a * 4 + 4)));
      keypoints.push(Array.from(out.keypoints.data.subarray(a * perPoint, (a + 1) * perPoint)));
    }
    for (const tensor of Object.values(out)) tensor.dispose?.();
    return { boxes, keypoints, scores };
  }

  /** Faces in an RGBA frame, best first (boxes in frame pixels). */
  async detect(frame) {
    const { boxes, keypoints, scores } = await this.candidates(frame);
    const faces = weightedNms(boxes, keypoints, scores, this.minScore, this.iou);
    this.lastKeypoints = faces.map((f) => f.keypoints);
    const found = faces.map((f) => faceBox(f.box, eyeLineRoll(f.keypoints), f.score));
    this.record?.push(found);
    return found;
  }

  /** BlazeFace's box (brows to chin) grown about its centre and shifted, as the file's
   * lmk.landmark_box says: the box a landmark model crops. */
  toLandmarkBox(region) {
    const [x, y, w, h] = region.box;
    const { grow, shiftY } = this.landmarkBox;
    const cx = x + w / 2.0;
    const cy = y + h / 2.0 + shiftY * h;
    const gw = w * grow;
    const gh = h * grow;
    return faceBox([cx - gw / 2.0, cy - gh / 2.0, gw, gh], region.angle, region.score);
  }
}
