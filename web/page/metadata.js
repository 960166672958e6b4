// An lmk ONNX file describes itself in ModelProto.metadata_props (JSON values). The page reads
// them from the file's own bytes, so there is no second copy of the metadata to drift: a
// small protobuf reader walks the top-level fields and decodes only field 14.

const METADATA_PROPS = 14; // ModelProto.metadata_props (repeated StringStringEntryProto)
const ENTRY_KEY = 1;
const ENTRY_VALUE = 2;
const FORMAT_VERSION = 1; // lmk.runtime.metadata.FORMAT_VERSION
const INPUT_FORMATS = ["uint8_nhwc_bgr", "float_nchw_rgb"];
const EXPORT_HINT =
  "export one with lmk-export (e.g. lmk-export --model pipnet --checkpoint CKPT -o model.onnx)";

class ProtoReader {
  constructor(bytes, start = 0, end = bytes.length) {
    this.bytes = bytes;
    this.pos = start;
    this.end = end;
  }

  get done() {
    return this.pos >= this.end;
  }

  varint() {
    // Multiplication, not shifts: lengths past 2^31 (a large graph) stay exact.
    let value = 0;
    let scale = 1;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.end) throw new Error("truncated varint");
      const byte = this.bytes[this.pos++];
      value += (byte & 0x7f) * scale;
      if (byte < 0x80) return value;
      scale *= 128;
    }
    throw new Error("malformed varint");
  }

  /** [field number, wire type] of the next field. */
  tag() {
    const tag = this.varint();
    return [Math.floor(tag / 8), tag % 8];
  }

  /** The [start, end) of a length-delimited field's payload; the reader moves past it. */
  span() {
    const length = this.varint();
    const start = this.pos;
    if (start + length > this.end) throw new Error("truncated field");
    this.pos += length;
    return [start, start + length];
  }

  skip(wireType) {
    if (wireType === 0) this.varint();
    else if (wireType === 1) this.pos += 8;
    else if (wireType === 2) this.span();
    else if (wireType === 5) this.pos += 4;
    else throw new Error(`unsupported protobuf wire type ${wireType}`);
    if (this.pos > this.end) throw new Error("truncated field");
  }
}

/** metadata_props of an ONNX file as a Map of strings (raises on bytes that are not protobuf). */
export function readMetadataProps(bytes) {
  const data = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
  const text = new TextDecoder("utf-8", { fatal: true });
  const props = new Map();
  const reader = new ProtoReader(data);
  while (!reader.done) {
    const [field, wire] = reader.tag();
    if (field !== METADATA_PROPS || wire !== 2) {
      reader.skip(wire);
      continue;
    }
    const [start, end] = reader.span();
    const entry = new ProtoReader(data, start, end);
    let key = "";
    let value = "";
    while (!entry.done) {
      const [f, w] = entry.tag();
      if ((f === ENTRY_KEY || f === ENTRY_VALUE) && w === 2) {
        const [s, e] = entry.span();
        const decoded = text.decode(data.subarray(s, e));
        if (f === ENTRY_KEY) key = decoded;
        else value = decoded;
      } else {
        entry.skip(w);
      }
    }
    props.set(key, value);
  }
  return props;
}

function fail(source, key, expected, value) {
  let shown = JSON.stringify(value);
  if (shown !== undefined && shown.length > 60) shown = `${shown.slice(0, 57)}...`;
  return new Error(`${source}: lmk metadata ${key} must be ${expected}, got ${shown}`);
}

function integer(values, key, minimum, source) {
  const v = values[key];
  if (!Number.isInteger(v) || v < minimum) throw fail(source, key, `an integer >= ${minimum}`, v);
  return v;
}

function numbers(values, key, length, source) {
  const v = values[key];
  if (!Array.isArray(v) || v.length !== length || !v.every(Number.isFinite)) {
    throw fail(source, key, `a list of ${length} finite numbers`, v);
  }
  return v;
}

function optionalBoolean(values, key, source) {
  const v = values[key];
  if (v !== undefined && typeof v !== "boolean") throw fail(source, key, "true or false", v);
  return v;
}

/** lmk.nme_norm's two point indices (the eye corners a tracker turns crops by), or null for
 * "box". The page has no table of public layouts, so a file without lmk.nme_norm (written
 * before lmk.rotate existed, as lmk-export always writes it) cannot rotate: refused where its
 * lmk.rotate asks to, rather than tracked differently from lmk-run. */
function eyePair(values, numLandmarks, source) {
  const v = values["lmk.nme_norm"];
  if (v === "box") return null;
  if (v === undefined) {
    if (values["lmk.rotate"] === true) {
      throw new Error(`${source}: lmk.rotate needs lmk.nme_norm (the eye pair); export the file again`);
    }
    return null;
  }
  if (!Array.isArray(v) || v.length !== 2 || !v.every((i) => Number.isInteger(i) && i >= 0 && i < numLandmarks)) {
    throw fail(source, "lmk.nme_norm", '"box" or a list of two point indices', v);
  }
  return v;
}

/**
 * The fields the page needs, checked as lmk.runtime.metadata.parse_metadata checks them (types
 * and ranges of what the page uses). A detector file (lmk.kind = "detector") is returned with
 * kind "detector" so the page can place it in the detector slot instead.
 */
export function parseLmkMetadata(props, source = "model") {
  if (!props.has("lmk.format")) throw new Error(`${source} has no lmk metadata; ${EXPORT_HINT}`);
  const values = {};
  for (const [key, text] of props) {
    if (!key.startsWith("lmk.")) continue;
    try {
      values[key] = JSON.parse(text);
    } catch (err) {
      throw new Error(`${source}: corrupt lmk metadata (${key}: ${err.message})`);
    }
  }
  if (integer(values, "lmk.format", 1, source) > FORMAT_VERSION) {
    throw new Error(`${source}: lmk metadata format ${values["lmk.format"]} is newer than this page`);
  }
  const kind = values["lmk.kind"] ?? "landmarks";
  if (kind === "detector") return { kind, values, source };
  const required = ["lmk.model", "lmk.layout", "lmk.num_landmarks", "lmk.input_size",
    "lmk.input_format", "lmk.mean", "lmk.std", "lmk.decode", "lmk.crop"];
  const missing = required.filter((key) => !(key in values));
  if (missing.length) {
    throw new Error(`${source}: lmk metadata lacks ${missing.join(", ")}; ${EXPORT_HINT}`);
  }
  const inputFormat = values["lmk.input_format"];
  if (!INPUT_FORMATS.includes(inputFormat)) {
    throw fail(source, "lmk.input_format", `one of ${INPUT_FORMATS.join(", ")}`, inputFormat);
  }
  if (values["lmk.decode"] === "none") {
    throw new Error(
      `${source} holds raw heads (exported with --decode none); the page runs files with the ` +
        "decode inside: export it again with --decode fused",
    );
  }
  const crop = values["lmk.crop"];
  if (typeof crop !== "object" || crop === null || !(crop.enlarge > 0 && crop.enlarge <= 100)) {
    throw fail(source, "lmk.crop", 'an object {"enlarge": > 0, "shift_y": ..., "square": ...}', crop);
  }
  const side = crop.side ?? "mean";
  if (side !== "mean" && side !== "max") throw fail(source, "lmk.crop.side", '"mean" or "max"', side);
  const numLandmarks = integer(values, "lmk.num_landmarks", 1, source);
  const flags = Object.fromEntries(
    ["confidence", "rotate"].map((name) => [name, optionalBoolean(values, `lmk.${name}`, source)]),
  );
  const minScore = values["lmk.min_score"];
  const std = numbers(values, "lmk.std", 3, source);
  if (!std.every((v) => v > 0)) throw fail(source, "lmk.std", "3 positive numbers", std);
  return {
    kind,
    source,
    values,
    model: String(values["lmk.model"]),
    layout: String(values["lmk.layout"]),
    numLandmarks,
    inputSize: integer(values, "lmk.input_size", 1, source),
    inputFormat,
    mean: numbers(values, "lmk.mean", 3, source),
    std,
    decode: values["lmk.decode"],
    crop: {
      enlarge: crop.enlarge,
      shiftY: Number.isFinite(crop.shift_y) ? crop.shift_y : 0,
      square: crop.square !== false,
      side,
    },
    // Whether the scores measure anything (lmk.confidence; false for faceapi68's regressor):
    // without, the tracker lets the detector confirm faces (tracking.js).
    confidence: flags.confidence ?? true,
    // The tracker's default for turning crops upright along the eye line (lmk.rotate).
    rotate: flags.rotate ?? false,
    // The eye pair the tracker's roll is measured on (lmk.nme_norm; "box": none).
    eyePair: eyePair(values, numLandmarks, source),
    // The tracker's lost-face threshold, set at export from validation scores (lmk.min_score).
    minScore: Number.isFinite(minScore) && minScore >= 0 && minScore <= 1 ? minScore : null,
    precision: String(values["lmk.precision"] ?? "fp32"),
    int8: values["lmk.int8"] ?? null,
    version: String(values["lmk.version"] ?? ""),
  };
}
