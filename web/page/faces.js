// Faces in a frame: boxes to model crops and landmarks back again, so the browser tracks a
// face exactly as lmk-run does. The page's copy of lmk/runtime/faces.py (FaceBox, crop_faces,
// region_from_landmarks, box_iou, fraction_inside, Face.score) and of lmk/core/geometry.py's
// crop_to_frame (landmarksToFrame) and LANDMARK_BOX_GROW.

import { applyAffine, invertAffine, policyMatrix, warpCrop } from "./crop.js";

// Tracked boxes are landmark bounds grown as SynthFace's detector-like boxes are
// (LANDMARK_BOX_GROW in lmk/core/geometry.py, the middle of SYNTH_BOX_GROW).
export const LANDMARK_BOX_GROW = 1.07;

/** A face region: box [x, y, w, h] in frame pixels, roll `angle` (radians), detector score. */
export function faceBox(box, angle = 0.0, score = 1.0) {
  return { box, angle, score };
}

/** uint8 BGR crops [N, size, size, 3] (one Uint8Array) and their frame->crop matrices. */
export function cropFaces(frame, regions, policy, size) {
  const crops = new Uint8Array(regions.length * size * size * 3);
  const matrices = regions.map((region, i) => {
    const m = policyMatrix(policy, region.box, size, region.angle);
    warpCrop(frame, m, size, crops, i * size * size * 3);
    return m;
  });
  return { crops, matrices };
}

/** Crop-normalised landmarks (Float32Array [N, L, 2]) -> frame pixels, one [L][2] per face. */
export function landmarksToFrame(landmarks, matrices, numLandmarks, size) {
  return matrices.map((matrix, i) => {
    const back = invertAffine(matrix);
    const points = [];
    for (let k = 0; k < numLandmarks; k++) {
      const j = (i * numLandmarks + k) * 2;
      points.push(applyAffine(back, [landmarks[j] * size, landmarks[j + 1] * size]));
    }
    return points;
  });
}

/**
 * The box a tracker crops next: the landmarks' bounds grown by `grow`, measured in the frame
 * turned upright by the eye line's roll when `eyePair` is given.
 */
export function regionFromLandmarks(points, eyePair = null, grow = LANDMARK_BOX_GROW) {
  let angle = 0.0;
  if (eyePair !== null) {
    const dx = points[eyePair[1]][0] - points[eyePair[0]][0];
    const dy = points[eyePair[1]][1] - points[eyePair[0]][1];
    if (Math.hypot(dx, dy) > 1e-6) angle = Math.atan2(dy, dx);
  }
  const bounds = (pts) => {
    const xs = pts.map((p) => p[0]);
    const ys = pts.map((p) => p[1]);
    return [Math.min(...xs), Math.min(...ys), Math.max(...xs), Math.max(...ys)];
  };
  const [x0, y0, x1, y1] = bounds(points);
  const centre = [(x0 + x1) / 2.0, (y0 + y1) / 2.0];
  const turn = (pts, a) => {
    const c = Math.cos(a);
    const s = Math.sin(a);
    return pts.map(([x, y]) => {
      const u = x - centre[0];
      const v = y - centre[1];
      return [u * c + v * -s + centre[0], u * s + v * c + centre[1]];
    });
  };
  const upright = angle ? turn(points, -angle) : points;
  const [lx, ly, hx, hy] = bounds(upright);
  let mid = [(lx + hx) / 2.0, (ly + hy) / 2.0];
  // The upright box's centre, turned back into the frame: the crop rotates about it.
  if (angle) mid = turn([mid], angle)[0];
  const w = Math.max(hx - lx, 1.0) * grow;
  const h = Math.max(hy - ly, 1.0) * grow;
  return faceBox([mid[0] - w / 2, mid[1] - h / 2, w, h], angle);
}

/** Intersection over union of two [x, y, w, h] boxes (angles ignored). */
export function boxIou(a, b) {
  const iw = Math.max(0.0, Math.min(a[0] + a[2], b[0] + b[2]) - Math.max(a[0], b[0]));
  const ih = Math.max(0.0, Math.min(a[1] + a[3], b[1] + b[3]) - Math.max(a[1], b[1]));
  const inter = iw * ih;
  const union = a[2] * a[3] + b[2] * b[3] - inter;
  return union > 0 ? inter / union : 0.0;
}

/** Share of the landmarks inside a width x height frame. */
export function fractionInside(points, width, height) {
  let inside = 0;
  for (const [x, y] of points) if (x >= 0 && x < width && y >= 0 && y < height) inside++;
  return inside / points.length;
}

/** A face's confidence: the mean landmark score. */
export function meanScore(scores) {
  if (!scores.length) return 0.0;
  let sum = 0;
  for (const s of scores) sum += s;
  return sum / scores.length;
}
