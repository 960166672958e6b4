// The detector's input: the frame fitted into its square, the page's copy of letterbox() in
// lmk/runtime/blazeface_detector.py. Aspect kept, centred, black padding; shrinking uses
// OpenCV's INTER_AREA arithmetic (the float32 area weights of cv::resize, or its integer
// average when the factor is a whole number), so the square is OpenCV's to a level.

import { roundEven } from "./crop.js";

const f32 = Math.fround;

/** OpenCV's computeResizeAreaTab: [dst index, src index, float32 weight] per contribution. */
function areaTable(srcSize, dstSize, scale) {
  const tab = [];
  for (let d = 0; d < dstSize; d++) {
    const fs1 = d * scale;
    const fs2 = fs1 + scale;
    const cell = Math.min(scale, srcSize - fs1);
    let s2 = Math.min(Math.floor(fs2), srcSize - 1);
    const s1 = Math.min(Math.ceil(fs1), s2);
    if (s1 - fs1 > 1e-3) tab.push([d, s1 - 1, f32((s1 - fs1) / cell)]);
    for (let s = s1; s < s2; s++) tab.push([d, s, f32(1.0 / cell)]);
    if (fs2 - s2 > 1e-3) tab.push([d, s2, f32(Math.min(Math.min(fs2 - s2, 1.0), cell) / cell)]);
  }
  return tab;
}

/** BGR value of an RGBA frame pixel. */
const bgr = (data, width, x, y, c) => data[(y * width + x) * 4 + 2 - c];

/** cv::resize INTER_AREA of a shrink: uint8 BGR output [dh, dw, 3] (Uint8Array). */
function resizeArea(frame, dw, dh) {
  const { data, width, height } = frame;
  const out = new Uint8Array(dw * dh * 3);
  const scaleX = width / dw;
  const scaleY = height / dh;
  const ix = Math.round(scaleX);
  const iy = Math.round(scaleY);
  if (Math.abs(scaleX - ix) < Number.EPSILON && Math.abs(scaleY - iy) < Number.EPSILON) {
    // Whole-number factor: OpenCV's integer block average (2x2: (sum + 2) >> 2).
    const area = ix * iy;
    const inv = f32(1 / area);
    for (let y = 0; y < dh; y++) {
      for (let x = 0; x < dw; x++) {
        for (let c = 0; c < 3; c++) {
          let sum = 0;
          for (let j = 0; j < iy; j++) for (let i = 0; i < ix; i++) sum += bgr(data, width, x * ix + i, y * iy + j, c);
          out[(y * dw + x) * 3 + c] = area === 4 ? (sum + 2) >> 2 : Math.min(255, roundEven(f32(sum * inv)));
        }
      }
    }
    return out;
  }
  const xtab = areaTable(width, dw, scaleX);
  const ytab = areaTable(height, dh, scaleY);
  const buf = new Float32Array(dw * 3);
  const sum = new Float32Array(dw * 3);
  const flush = (dy) => {
    for (let k = 0; k < dw * 3; k++) out[dy * dw * 3 + k] = Math.min(255, Math.max(0, roundEven(sum[k])));
  };
  let prev = ytab[0][0];
  for (const [dy, sy, beta] of ytab) {
    buf.fill(0);
    for (const [dx, sx, alpha] of xtab) {
      for (let c = 0; c < 3; c++) buf[dx * 3 + c] = f32(buf[dx * 3 + c] + f32(bgr(data, width, sx, sy, c) * alpha));
    }
    if (dy !== prev) {
      flush(prev);
      for (let k = 0; k < dw * 3; k++) sum[k] = f32(beta * buf[k]);
      prev = dy;
    } else {
      for (let k = 0; k < dw * 3; k++) sum[k] = f32(sum[k] + f32(beta * buf[k]));
    }
  }
  flush(prev);
  return out;
}

/** Bilinear enlargement (frames smaller than the square): OpenCV's INTER_LINEAR sampling
 * positions, interpolated in float (OpenCV uses 11-bit fixed point: within a level). */
function resizeLinear(frame, dw, dh) {
  const { data, width, height } = frame;
  const out = new Uint8Array(dw * dh * 3);
  const at = (d, scale, n) => {
    let f = (d + 0.5) * scale - 0.5;
    let s = Math.floor(f);
    f -= s;
    if (s < 0) [s, f] = [0, 0];
    if (s >= n - 1) [s, f] = [n - 1, 0];
    return [s, f, Math.min(s + 1, n - 1)];
  };
  for (let y = 0; y < dh; y++) {
    const [y0, fy, y1] = at(y, height / dh, height);
    for (let x = 0; x < dw; x++) {
      const [x0, fx, x1] = at(x, width / dw, width);
      for (let c = 0; c < 3; c++) {
        const top = bgr(data, width, x0, y0, c) * (1 - fx) + bgr(data, width, x1, y0, c) * fx;
        const bottom = bgr(data, width, x0, y1, c) * (1 - fx) + bgr(data, width, x1, y1, c) * fx;
        out[(y * dw + x) * 3 + c] = Math.min(255, Math.max(0, roundEven(top * (1 - fy) + bottom * fy)));
      }
    }
  }
  return out;
}

/**
 * An RGBA frame ({data, width, height}) fitted into a `size` square: `square` (uint8 BGR,
 * [size, size, 3]) and `frameBox` (Float32Array [x0, y0, w, h]: the frame pixels the square
 * shows, what the detector file maps its boxes back through).
 */
export function letterbox(frame, size) {
  const { width, height } = frame;
  const scale = size / Math.max(width, height);
  // Python's round() is half to even, as roundEven.
  const newW = Math.max(1, Math.min(size, roundEven(width * scale)));
  const newH = Math.max(1, Math.min(size, roundEven(height * scale)));
  let resized;
  if (newW === width && newH === height) {
    resized = new Uint8Array(width * height * 3);
    for (let p = 0; p < width * height; p++) for (let c = 0; c < 3; c++) resized[p * 3 + c] = frame.data[p * 4 + 2 - c];
  } else {
    resized = scale < 1 ? resizeArea(frame, newW, newH) : resizeLinear(frame, newW, newH);
  }
  const left = Math.floor((size - newW) / 2);
  const top = Math.floor((size - newH) / 2);
  const square = new Uint8Array(size * size * 3);
  for (let y = 0; y < newH; y++) {
    square.set(resized.subarray(y * newW * 3, (y + 1) * newW * 3), ((y + top) * size + left) * 3);
  }
  const sx = newW / width;
  const sy = newH / height;
  const frameBox = Float32Array.from([-left / sx, -top / sy, size / sx, size / sy]);
  return { square, frameBox };
}
