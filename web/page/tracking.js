// Detect, then track, as lmk-run does: the page's copy of lmk/runtime/tracking.py. The
// detector runs only when no face is tracked, when a face was lost on the previous frame
// (mean landmark score under minScore, or most of it off the frame), or every detectEvery
// frames; otherwise each face's next crop is the box of its current landmarks. A fresh
// detection is refined on its own landmark boxes, so any detector's boxes land on the crop
// the model was trained for.

import { boxIou, fractionInside, regionFromLandmarks } from "./faces.js";
import { OneEuroFilter } from "./smoothing.js";

export const TRACKER_DEFAULTS = {
  detectEvery: 0,
  minScore: 0.7,
  maxFaces: 8,
  refine: 2,
  minInside: 0.5,
  smooth: false,
  minCutoff: 1.0,
  beta: 0.05,
};

export class Tracker {
  /** `model`: a LandmarkModel (model.js); `detector`: anything with detect(frame). */
  constructor(model, detector, config = {}) {
    this.model = model;
    this.detector = detector;
    // Without minScore, the model's own lmk.min_score (LandmarkSession.default_min_score).
    const minScore = config.minScore ?? model.info.minScore ?? TRACKER_DEFAULTS.minScore;
    this.config = { ...TRACKER_DEFAULTS, ...config, minScore };
    this.reset();
    this.frameCount = 0;
    this.detections = 0;
  }

  reset() {
    this.tracks = [];
    this.nextId = 0;
    this.lost = false;
  }

  region(face) {
    return regionFromLandmarks(face.landmarks);
  }

  /** Landmarks (frame pixels) of every tracked face in `frame` (RGBA ImageData-like). */
  async step(frame, dt = 1.0 / 30.0, stages = this.model.stages) {
    const cfg = this.config;
    const { width, height } = frame;
    const due = cfg.detectEvery > 0 && this.frameCount % cfg.detectEvery === 0;
    this.frameCount += 1;
    let fresh = [];
    if (!this.tracks.length || this.lost || due) fresh = await this.detect(frame, stages);
    const regions = [...this.tracks.map((t) => t.region), ...fresh];
    const faces = await this.model.predictRegions(frame, regions, stages);
    for (const region of fresh) this.tracks.push({ trackId: this.nextId++, region, smoother: null, age: 0 });
    let kept = [];
    this.lost = false;
    this.tracks.forEach((track, i) => {
      const face = faces[i];
      if (face.score < cfg.minScore || fractionInside(face.landmarks, width, height) < cfg.minInside) {
        this.lost = true;
        return;
      }
      track.region = this.region(face); // where this face is cropped next frame
      kept.push([track, face]);
    });
    kept = deduplicate(kept);
    this.tracks = [];
    const out = [];
    for (const [track, face] of kept) {
      track.age += 1;
      face.trackId = track.trackId;
      if (cfg.smooth) {
        track.smoother = track.smoother ?? new OneEuroFilter(cfg.minCutoff, cfg.beta);
        const scale = Math.sqrt(track.region.box[2] * track.region.box[3]) / 100.0;
        face.landmarks = track.smoother.filter(face.landmarks, dt, scale);
      }
      this.tracks.push(track);
      out.push(face);
    }
    return out;
  }

  /**
   * New faces: candidates from the detector that overlap no tracked face, ranked by the
   * landmark model's score in one batch, the best refined on their landmark boxes, then kept
   * if still confident and not a duplicate.
   */
  async detect(frame, stages) {
    const cfg = this.config;
    const detected = await stages.time("detect", async () => this.detector.detect(frame));
    // Each detector says how its box becomes the box a landmark model crops.
    const found = detected.map((r) => this.detector.toLandmarkBox(r));
    this.detections += 1;
    const room = cfg.maxFaces - this.tracks.length;
    const candidates = found.filter((r) => this.tracks.every((t) => boxIou(r.box, t.region.box) < 0.3));
    if (room <= 0 || !candidates.length) return [];
    const faces = await this.model.predictRegions(frame, candidates, stages);
    let best = byScore(faces).slice(0, Math.max(2 * room, 4));
    for (let i = 0; i < cfg.refine; i++) {
      best = await this.model.predictRegions(frame, best.map((f) => this.region(f)), stages);
    }
    const fresh = [];
    for (const face of byScore(best)) {
      const region = this.region(face);
      // A face detector's box is a face even where a landmark model trained elsewhere scores
      // it low (SynthFace models on photos); the frame detector's windows are not.
      if (face.score < cfg.minScore && !this.detector.findsFaces) continue;
      if (fresh.some((r) => boxIou(region.box, r.box) > 0.3)) continue;
      if (this.tracks.some((t) => boxIou(region.box, t.region.box) > 0.3)) continue;
      fresh.push(region);
    }
    return fresh.slice(0, room);
  }
}

function byScore(faces) {
  return faces.slice().sort((a, b) => b.score - a.score); // stable, as Python's sorted
}

/** Two tracks that converged on one face: keep the older (then the surer) one. */
function deduplicate(pairs) {
  const order = pairs.slice().sort((p, q) => q[0].age - p[0].age || q[1].score - p[1].score);
  const kept = [];
  for (const [track, face] of order) {
    if (kept.every(([t]) => boxIou(track.region.box, t.region.box) < 0.5)) kept.push([track, face]);
  }
  return kept.sort((p, q) => p[0].trackId - q[0].trackId);
}
