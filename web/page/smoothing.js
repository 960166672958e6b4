// One Euro filter (Casiez, Roussel and Vogel, CHI 2012) for landmark jitter: the page's copy
// of lmk/runtime/smoothing.py. A low-pass filter whose cutoff rises with speed: still faces
// are smoothed hard, fast motion passes with little lag. Positions are in pixels, so the
// caller passes the face size (/100) as `scale` to make `beta` size-independent.

function alpha(cutoff, dt) {
  const tau = 1.0 / (2.0 * Math.PI * cutoff);
  return 1.0 / (1.0 + tau / dt);
}

export class OneEuroFilter {
  constructor(minCutoff = 1.0, beta = 0.05, dCutoff = 1.0) {
    if (!(minCutoff > 0) || !(dCutoff > 0) || !(beta >= 0)) {
      throw new Error("One Euro needs min_cutoff > 0, d_cutoff > 0 and beta >= 0");
    }
    this.minCutoff = minCutoff;
    this.beta = beta;
    this.dCutoff = dCutoff;
    this.reset();
  }

  reset() {
    this.x = null;
    this.dx = null;
  }

  /** Filter a list of [x, y] points sampled `dt` seconds after the previous call. */
  filter(points, dt, scale = 1.0) {
    const flat = points.flat();
    if (this.x === null || this.x.length !== flat.length || dt <= 0) {
      this.x = flat.slice();
      this.dx = flat.map(() => 0.0);
      return points.map((p) => p.slice());
    }
    const ad = alpha(this.dCutoff, dt);
    const out = [];
    for (let i = 0; i < flat.length; i++) {
      const dx = (flat[i] - this.x[i]) / dt;
      this.dx[i] = this.dx[i] + ad * (dx - this.dx[i]);
      const cutoff = this.minCutoff + (this.beta * Math.abs(this.dx[i])) / Math.max(scale, 1e-6);
      this.x[i] = this.x[i] + alpha(cutoff, dt) * (flat[i] - this.x[i]);
      out.push(this.x[i]);
    }
    const result = [];
    for (let i = 0; i < out.length; i += 2) result.push([out[i], out[i + 1]]);
    return result;
  }
}
