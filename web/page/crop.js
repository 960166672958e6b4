// How a face box becomes the model's square input crop: the page's copy of
// lmk/core/geometry.py (CropPolicy, crop_matrix, rotation_about, compose_affine, warp_crop, apply_affine,
// invert_affine), operation for operation, so the browser crops a face exactly as
// lmk-run does. Affines are 2x3 row-major arrays [a, b, c, d, e, f]: x' = a x + b y + c.

/**
 * [x0, y0, x1, y1] of the crop of a box [x, y, w, h] under the policy a file's lmk.crop
 * describes (metadata.js gives {enlarge, shiftY, square, side}): CropPolicy.region. A square
 * crop's side is the box's mean side, or with side "max" its longer side (face-api.js pads
 * its box to a square that way).
 */
export function cropRegion(policy, box) {
  const [x, y, w, h] = box;
  const cx = x + w / 2.0;
  const cy = y + h / 2.0 + policy.shiftY * h;
  let halfW;
  let halfH;
  if (policy.square) {
    const side = policy.side === "max" ? Math.max(w, h) : (w + h) / 2.0;
    halfW = halfH = (policy.enlarge * side) / 2.0;
  } else {
    halfW = (policy.enlarge * w) / 2.0;
    halfH = (policy.enlarge * h) / 2.0;
  }
  return [cx - halfW, cy - halfH, cx + halfW, cy + halfH];
}

/** 2x3 affine taking region [x0, y0, x1, y1] onto [0, size]^2 (continuous coordinates). */
export function cropMatrix(region, size) {
  const [x0, y0, x1, y1] = region;
  const sx = size / (x1 - x0);
  const sy = size / (y1 - y0);
  return [sx, 0.0, -sx * x0, 0.0, sy, -sy * y0];
}

/** 2x3 affine turning points by `angle` radians (image axes, y down) about `centre`. */
export function rotationAbout(centre, angle) {
  const c = Math.cos(angle);
  const s = Math.sin(angle);
  const [cx, cy] = centre;
  return [c, -s, cx - c * cx + s * cy, s, c, cy - s * cx - c * cy];
}

/** The 2x3 affine outer(inner(p)). */
export function composeAffine(o, i) {
  return [
    o[0] * i[0] + o[1] * i[3],
    o[0] * i[1] + o[1] * i[4],
    o[0] * i[2] + o[1] * i[5] + o[2],
    o[3] * i[0] + o[4] * i[3],
    o[3] * i[1] + o[4] * i[4],
    o[3] * i[2] + o[4] * i[5] + o[5],
  ];
}

/** Frame -> crop affine for a box (and the face's roll `angle`), as CropPolicy.matrix. */
export function policyMatrix(policy, box, size, angle = 0.0) {
  const m = cropMatrix(cropRegion(policy, box), size);
  if (angle === 0.0) return m;
  const [x, y, w, h] = box;
  return composeAffine(m, rotationAbout([x + w / 2.0, y + h / 2.0], -angle));
}

/** The inverse 2x3 affine, computed as OpenCV's invertAffineTransform computes it. */
export function invertAffine(m) {
  let d = m[0] * m[4] - m[1] * m[3];
  d = d !== 0 ? 1.0 / d : 0.0;
  const a11 = m[4] * d;
  const a22 = m[0] * d;
  const a12 = -m[1] * d;
  const a21 = -m[3] * d;
  const b1 = -a11 * m[2] - a12 * m[5];
  const b2 = -a21 * m[2] - a22 * m[5];
  return [a11, a12, b1, a21, a22, b2];
}

/** Map a point [x, y] through a 2x3 affine. */
export function applyAffine(m, [x, y]) {
  return [x * m[0] + y * m[1] + m[2], x * m[3] + y * m[4] + m[5]];
}

const f32 = Math.fround;

/** Round half to even, as OpenCV's saturate_cast<uchar> of a float does. */
export function roundEven(v) {
  const r = Math.round(v);
  return r - v === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/**
 * Resample an RGBA frame (ImageData-like: {data, width, height}) into a size x size BGR crop
 * written at `out[offset..]`, with one bilinear affine warp; outside the frame is black.
 *
 * This is what lmk.crop.warp_crop gets from OpenCV's warpAffine (INTER_LINEAR,
 * BORDER_CONSTANT 0): the half-pixel shift to OpenCV's pixel-centre convention, the inverse
 * map in double precision, then source coordinates in float32 (each row's start rounded
 * twice, each pixel's x by a fused multiply-add), interpolation in float32, round half to
 * even. With OpenCV 5's warpAffine the crops are the same bytes (tests pin it).
 */
export function warpCrop(frame, matrix, size, out, offset = 0) {
  const { data, width, height } = frame;
  const cv = matrix.slice();
  cv[2] += cv[0] * 0.5 + cv[1] * 0.5 - 0.5;
  cv[5] += cv[3] * 0.5 + cv[4] * 0.5 - 0.5;
  const [m0, m1, m2, m3, m4, m5] = invertAffine(cv).map(f32);
  const pixel = (ix, iy, c) =>
    ix >= 0 && ix < width && iy >= 0 && iy < height ? data[(iy * width + ix) * 4 + c] : 0;
  let o = offset;
  for (let y = 0; y < size; y++) {
    const rowX = f32(f32(m1 * y) + m2);
    const rowY = f32(f32(m4 * y) + m5);
    for (let x = 0; x < size; x++) {
      // One rounding, as OpenCV's fused multiply-add (m0 * x is exact in a double).
      const sx = f32(m0 * x + rowX);
      const sy = f32(m3 * x + rowY);
      const ix = Math.floor(sx);
      const iy = Math.floor(sy);
      const a = f32(sx - ix);
      const b = f32(sy - iy);
      // BGR out of RGBA in: channel 2, 1, 0.
      for (let c = 2; c >= 0; c--) {
        const p00 = pixel(ix, iy, c);
        const p01 = pixel(ix + 1, iy, c);
        const p10 = pixel(ix, iy + 1, c);
        const p11 = pixel(ix + 1, iy + 1, c);
        const v0 = f32(p00 + f32(a * (p01 - p00)));
        const v1 = f32(p10 + f32(a * (p11 - p10)));
        const v = f32(v0 + f32(b * f32(v1 - v0)));
        out[o++] = Math.min(255, Math.max(0, roundEven(v)));
      }
    }
  }
}
