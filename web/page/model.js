// An lmk landmark file on onnxruntime-web: uint8 BGR crops in, landmarks (normalised to the
// crop) and scores out. The decode is inside the file, so this is all the page needs: read
// the metadata, feed the crops, map the points back through each crop's inverse warp.

import { cropFaces, landmarksToFrame, meanScore } from "./faces.js";
import { parseLmkMetadata, readMetadataProps } from "./metadata.js";
import { openSession } from "./runtime.js";
import { StageTimes } from "./stages.js";

export class LandmarkModel {
  /** Read the metadata from `bytes` and open an ORT session on `runtime` (runtime.js). */
  static async load(runtime, bytes, name = "model") {
    const info = parseLmkMetadata(readMetadataProps(bytes), name);
    if (info.kind !== "landmarks") {
      throw new Error(`${name} is a ${info.kind} file (lmk.kind); choose a landmark model`);
    }
    const session = await openSession(runtime, bytes);
    return new LandmarkModel(runtime, session, info, name);
  }

  constructor(runtime, session, info, name) {
    this.runtime = runtime;
    this.session = session;
    this.info = info;
    this.name = name;
    this.inputName = session.inputNames[0];
    this.stages = new StageTimes();
    const batch = info.values["lmk.batch"];
    this.fixedBatch = Number.isInteger(batch) && batch > 0 ? batch : 0;
    this.record = null; // an array: every batch's crops, matrices and outputs are kept (tests)
  }

  /** The ORT input tensor for `n` uint8 BGR crops, in the file's input format. */
  feed(crops, n) {
    const s = this.info.inputSize;
    if (this.info.inputFormat === "uint8_nhwc_bgr") {
      return new this.runtime.ort.Tensor("uint8", crops, [n, s, s, 3]);
    }
    // float_nchw_rgb: the file expects RGB / 255 normalised by its mean and std.
    const { mean, std } = this.info;
    const plane = s * s;
    const out = new Float32Array(n * 3 * plane);
    for (let i = 0; i < n; i++) {
      for (let p = 0; p < plane; p++) {
        const src = (i * plane + p) * 3;
        for (let c = 0; c < 3; c++) {
          out[(i * 3 + c) * plane + p] = (crops[src + 2 - c] / 255 - mean[c]) / std[c];
        }
      }
    }
    return new this.runtime.ort.Tensor("float32", out, [n, 3, s, s]);
  }

  /** Landmarks [n, L, 2] and scores [n, L] (Float32Arrays) for `n` crops, in one run (or
   * in chunks of a file's fixed batch, the last padded). */
  async infer(crops, n) {
    const s = this.info.inputSize;
    const L = this.info.numLandmarks;
    const chunk = this.fixedBatch || n;
    const landmarks = new Float32Array(n * L * 2);
    const scores = new Float32Array(n * L);
    const per = s * s * 3;
    for (let start = 0; start < n; start += chunk) {
      const count = Math.min(chunk, n - start);
      let part = crops.subarray(start * per, (start + count) * per);
      if (this.fixedBatch && count < chunk) {
        const padded = new Uint8Array(chunk * per);
        padded.set(part);
        part = padded;
      }
      const out = await this.session.run({ [this.inputName]: this.feed(part, chunk) });
      landmarks.set(out.landmarks.data.subarray(0, count * L * 2), start * L * 2);
      if (out.scores) scores.set(out.scores.data.subarray(0, count * L), start * L);
      for (const tensor of Object.values(out)) tensor.dispose?.();
    }
    return { landmarks, scores };
  }

  /** Faces for `regions` (faceBox) of an RGBA frame: landmarks in frame pixels, scores,
   * the mean score; all faces in one batched inference (lmk's LandmarkSession.predict_regions). */
  async predictRegions(frame, regions, stages = this.stages) {
    if (!regions.length) return [];
    const size = this.info.inputSize;
    const L = this.info.numLandmarks;
    const { crops, matrices } = stages.timeSync("preprocess", () =>
      cropFaces(frame, regions, this.info.crop, size),
    );
    const out = await stages.time("infer", () => this.infer(crops, regions.length));
    const points = stages.timeSync("preprocess", () =>
      landmarksToFrame(out.landmarks, matrices, L, size),
    );
    if (this.record) this.record.push({ crops, matrices, ...out });
    return regions.map((region, i) => {
      const scores = out.scores.slice(i * L, (i + 1) * L);
      return { landmarks: points[i], scores, region, trackId: -1, score: meanScore(scores) };
    });
  }
}
