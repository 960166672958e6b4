// MediaPipe's weighted non-maximum suppression, the page's copy of weighted_nms() in
// lmk/runtime/blazeface.py: the best remaining candidate absorbs every remaining one that
// overlaps it by more than the IoU threshold; the face is the score-weighted mean of that
// cluster (corners and keypoints, in double), with the best one's score. Overlaps are
// computed in float32, as numpy computes them on the file's float32 boxes.

const f32 = Math.fround;

/** IoU (float32 arithmetic) of two [x, y, w, h] boxes. */
function iou32(a, b) {
  const x0 = Math.max(a[0], b[0]);
  const y0 = Math.max(a[1], b[1]);
  const x1 = Math.min(f32(a[0] + a[2]), f32(b[0] + b[2]));
  const y1 = Math.min(f32(a[1] + a[3]), f32(b[1] + b[3]));
  const inter = f32(Math.max(f32(x1 - x0), 0) * Math.max(f32(y1 - y0), 0));
  const union = f32(f32(f32(a[2] * a[3]) + f32(b[2] * b[3])) - inter);
  return union > 0 ? f32(inter / Math.max(union, f32(1e-12))) : 0.0;
}

/**
 * `boxes` [K][4] (x, y, w, h), `keypoints` [K][P*2] (flat x, y pairs), `scores` [K], all
 * float32 values; candidates under `minScore` are dropped first. Returns the kept faces,
 * best first: {box: [4], keypoints: [P*2], score}.
 */
export function weightedNms(boxes, keypoints, scores, minScore, iouThreshold = 0.3) {
  const min = f32(minScore);
  const threshold = f32(iouThreshold);
  // Stable by descending score, as np.argsort(-scores, kind="stable").
  let remaining = scores
    .map((s, i) => i)
    .filter((i) => scores[i] >= min)
    .sort((i, j) => scores[j] - scores[i]);
  const faces = [];
  while (remaining.length) {
    const best = remaining[0];
    const cluster = remaining.filter((i, k) => k === 0 || iou32(boxes[best], boxes[i]) > threshold);
    remaining = remaining.filter((i, k) => k !== 0 && !(iou32(boxes[best], boxes[i]) > threshold));
    let total = 0;
    const corners = [0, 0, 0, 0];
    const points = new Array(keypoints[best].length).fill(0);
    for (const i of cluster) {
      const w = scores[i];
      total += w;
      const [x, y, bw, bh] = boxes[i];
      [x, y, f32(x + bw), f32(y + bh)].forEach((v, c) => (corners[c] += v * w));
      keypoints[i].forEach((v, c) => (points[c] += v * w));
    }
    const merged = corners.map((v) => v / total);
    faces.push({
      box: [merged[0], merged[1], merged[2] - merged[0], merged[3] - merged[1]].map(f32),
      keypoints: points.map((v) => f32(v / total)),
      score: scores[best],
    });
  }
  return faces;
}
