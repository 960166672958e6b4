// Detect, then track, as lmk-run does: the page's copy of lmk/runtime/tracking.py. The
// detector runs only when no face is tracked, when a face was lost on the previous frame
// (mean landmark score under minScore, or most of it off the frame), or every detectEvery
// frames; otherwise each face's next crop is the box (and, with rotate, the roll) of its
// current landmarks. A fresh detection is refined on its own landmark boxes, so any
// detector's boxes land on the crop the model was trained for.
//
// A model without per-point confidence (lmk.confidence false: faceapi68) cannot say it lost
// a face, so the detector confirms its faces instead: every verifyEvery frames, and on the
// frame after a face's landmark box jumped (IoU with its previous box under maxJump). A
// tracked face no detection overlaps is dropped; one a detection overlaps restarts from it.

import { FrameDetector } from "./detectors.js";
import { boxIou, faceBox, fractionInside, regionFromLandmarks } from "./faces.js";
import { OneEuroFilter } from "./smoothing.js";

// TrackerConfig's defaults; rotate null: the model's own lmk.rotate, as LandmarkSession.tracker.
export const TRACKER_DEFAULTS = {
  detectEvery: 0,
  minScore: 0.7,
  maxFaces: 8,
  refine: 2,
  minInside: 0.5,
  rotate: null,
  smooth: false,
  minCutoff: 1.0,
  beta: 0.05,
  verifyEvery: 10,
  maxJump: 0.7,
};

export class Tracker {
  /** `model`: a LandmarkModel (model.js); `detector`: anything with detect(frame). */
  constructor(model, detector, config = {}) {
    this.model = model;
    this.detector = detector;
    // Without minScore, the model's own lmk.min_score (LandmarkSession.default_min_score);
    // without rotate, its lmk.rotate.
    const minScore = config.minScore ?? model.info.minScore ?? TRACKER_DEFAULTS.minScore;
    const rotate = config.rotate ?? model.info.rotate;
    this.config = { ...TRACKER_DEFAULTS, ...config, minScore, rotate };
    this.tracks = [];
    this.nextId = 0;
    this.frameCount = 0;
    this.lost = false;
    this.detections = 0;
    this.eyes = this.config.rotate ? model.info.eyePair : null;
    this.confidence = model.info.confidence;
    this.jumped = false;
    const scan = detector instanceof FrameDetector && detector.box === null;
    if (scan && !this.confidence) {
      throw new Error(
        `${model.info.model} has no per-point confidence, which the whole-frame search ranks ` +
          "windows by: draw a box around the face, or serve a BlazeFace file (lmk models fetch blazeface)",
      );
    }
  }

  reset() {
    this.tracks = [];
    this.lost = false;
    this.jumped = false;
  }

  region(face) {
    return regionFromLandmarks(face.landmarks, this.eyes);
  }

  /** Landmarks (frame pixels) of every tracked face in `frame` (RGBA ImageData-like). */
  async step(frame, dt = 1.0 / 30.0, stages = this.model.stages) {
    const cfg = this.config;
    const { width, height } = frame;
    let due = cfg.detectEvery > 0 && this.frameCount % cfg.detectEvery === 0;
    if (!this.confidence) {
      const verify = cfg.verifyEvery > 0 && this.frameCount % cfg.verifyEvery === 0;
      due = due || verify || this.jumped;
    }
    this.frameCount += 1;
    let fresh = [];
    if (!this.tracks.length || this.lost || due) {
      const found = await this.runDetector(frame, stages);
      // Only the detector can say a face without confidence is gone.
      if (!this.confidence) await this.reseed(frame, found, stages);
      fresh = await this.newFaces(frame, found, stages);
    }
    const regions = [...this.tracks.map((t) => t.region), ...fresh];
    const faces = await this.model.predictRegions(frame, regions, stages);
    for (const region of fresh) this.tracks.push({ trackId: this.nextId++, region, smoother: null, age: 0 });
    let kept = [];
    this.lost = false;
    this.jumped = false;
    this.tracks.forEach((track, i) => {
      const face = faces[i];
      if (face.score < cfg.minScore || fractionInside(face.landmarks, width, height) < cfg.minInside) {
        this.lost = true;
        return;
      }
      const region = this.region(face); // where this face is cropped next frame
      if (!this.confidence && track.age && boxIou(region.box, track.region.box) < cfg.maxJump) {
        this.jumped = true;
      }
      track.region = region;
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
   * No confidence: keep the tracks a detection overlaps (IoU >= 0.3) and restart each from
   * its detection, refined as a new one is, so a drifted track is pulled back; drop the
   * others (Tracker._reseed).
   */
  async reseed(frame, found, stages) {
    const kept = [];
    const seeds = [];
    for (const track of this.tracks) {
      const overlaps = found.map((f) => boxIou(track.region.box, f.box));
      const best = Math.max(...overlaps);
      if (overlaps.length && best >= 0.3) {
        kept.push(track);
        seeds.push(found[overlaps.indexOf(best)]); // the first of equals, as np.argmax
      }
    }
    this.tracks = kept;
    if (!kept.length) return;
    let faces = await this.model.predictRegions(frame, seeds, stages);
    for (let i = 0; i < this.config.refine; i++) {
      faces = await this.model.predictRegions(frame, faces.map((f) => this.region(f)), stages);
    }
    kept.forEach((track, i) => {
      track.region = this.region(faces[i]);
    });
  }

  /** The detector's faces as the boxes a landmark model crops (Tracker._run_detector). */
  async runDetector(frame, stages) {
    const detected = await stages.time("detect", async () => this.detector.detect(frame));
    // Each detector says how its box becomes the box a landmark model crops.
    let found = detected.map((r) => this.detector.toLandmarkBox(r));
    // A detector's roll (BlazeFace's eye line) turns crops only with rotate.
    if (!this.config.rotate) found = found.map((r) => faceBox(r.box, 0.0, r.score));
    this.detections += 1;
    return found;
  }

  /**
   * New faces: detector boxes that overlap no tracked face, ranked by the landmark model's
   * score in one batch, the best refined on their landmark boxes, then kept if still
   * confident and not a duplicate (Tracker._new_faces).
   */
  async newFaces(frame, found, stages) {
    const cfg = this.config;
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
