// Milliseconds per named stage (read, detect, track, preprocess, infer, draw), as lmk-run's
// summary reports them: totals for a run, and a rolling window for the numbers on screen.

export const STAGES = ["read", "detect", "track", "preprocess", "infer", "draw"];

export class StageTimes {
  constructor(window = 30) {
    this.window = window;
    this.clear();
  }

  clear() {
    this.totals = Object.fromEntries(STAGES.map((s) => [s, 0]));
    this.frameTimes = []; // per-frame {stage: ms} of the last `window` frames
    this.current = Object.fromEntries(STAGES.map((s) => [s, 0]));
    this.frames = 0;
    this.frameEnds = [];
  }

  add(stage, ms) {
    this.totals[stage] = (this.totals[stage] ?? 0) + ms;
    this.current[stage] = (this.current[stage] ?? 0) + ms;
  }

  /** Time `fn` (sync or async) into `stage`; returns its result. */
  async time(stage, fn) {
    const start = performance.now();
    try {
      return await fn();
    } finally {
      this.add(stage, performance.now() - start);
    }
  }

  timeSync(stage, fn) {
    const start = performance.now();
    try {
      return fn();
    } finally {
      this.add(stage, performance.now() - start);
    }
  }

  /** Close a frame: its stage times join the rolling window, its end time the frames/s. */
  endFrame() {
    this.frames += 1;
    this.frameTimes.push(this.current);
    this.frameEnds.push(performance.now());
    if (this.frameTimes.length > this.window) this.frameTimes.shift();
    if (this.frameEnds.length > this.window + 1) this.frameEnds.shift();
    this.current = Object.fromEntries(STAGES.map((s) => [s, 0]));
  }

  /** Mean ms per frame of each stage over the rolling window. */
  recentMs() {
    const n = Math.max(1, this.frameTimes.length);
    return Object.fromEntries(
      STAGES.map((s) => [s, this.frameTimes.reduce((sum, t) => sum + (t[s] ?? 0), 0) / n]),
    );
  }

  /** Frames per second over the rolling window (0 until two frames ended). */
  fps() {
    const ends = this.frameEnds;
    if (ends.length < 2) return 0;
    return (1000 * (ends.length - 1)) / (ends[ends.length - 1] - ends[0]);
  }
}
