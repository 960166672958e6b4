// The page: pick a model and an input, track faces, draw them, show EP, frames/s and the time
// of each stage. `window.lmk` exposes the same engine to scripts (the tests and the browser
// benchmark drive the page through it, not through a copy).

import { BlazeFaceDetector } from "./blazeface.js";
import { FrameDetector } from "./detectors.js";
import { drawFaces, drawPendingBox } from "./draw.js";
import { LandmarkModel } from "./model.js";
import { loadRuntime } from "./runtime.js";
import { decodeImage, eachVideoFrame, FrameReader, openCamera, openVideoFile } from "./sources.js";
import { STAGES, StageTimes } from "./stages.js";
import { Tracker } from "./tracking.js";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);

const app = {
  runtime: null,
  model: null,
  detector: null, // a BlazeFaceDetector when a detector file is loaded
  tracker: null,
  trackerError: false, // the error on screen says why there is no tracker
  stages: new StageTimes(),
  reader: new FrameReader(),
  userBox: null,
  stopVideo: null,
  stream: null,
  photos: [],
  photoIndex: 0,
  lastFrame: null,
  lastFaces: [],
};

function showError(err) {
  const text = err instanceof Error ? err.message : String(err);
  $("error").textContent = `error: ${text}`;
  console.error(err);
}

function clearError() {
  $("error").textContent = "";
}

/** Where fresh faces come from: a drawn box first, else the detector file, else the
 * whole-frame search (lmk-run's --detector auto prefers BlazeFace likewise). */
function chooseDetector(box) {
  return box === null && app.detector ? app.detector : new FrameDetector(box);
}

/** A fresh tracker from `box` (or the detector) and show which detector it runs. Where the
 * model cannot track from that detector (no confidence, and the whole-frame search) the
 * Tracker's error is thrown and no tracker is left. */
function startTracker(box, smooth, rotate) {
  app.tracker = null;
  $("detector").textContent = "none";
  app.tracker = new Tracker(app.model, chooseDetector(box), { smooth, rotate });
  $("detector").textContent = app.tracker.detector.describe ?? `frame (${box ? "drawn box" : "whole-frame search"})`;
  return app.tracker;
}

/** The "upright crops" choice: null (the model's lmk.rotate), true or false, as lmk-run's
 * --rotate / --no-rotate. */
function rotateChoice() {
  return { on: true, off: false }[$("rotate").value] ?? null;
}

/** The page's tracker for the current model, box and detector; where there can be none the
 * page says why and goes on showing the input without faces, so a box can be drawn on it. */
function newTracker() {
  if (!app.model) return;
  try {
    startTracker(app.userBox, $("smooth").checked, rotateChoice());
    if (app.trackerError) clearError(); // a drawn box (or a detector) answered it
    app.trackerError = false;
  } catch (err) {
    app.trackerError = true;
    showError(err);
  }
}

/** A served model's name (models/NAME) or a File the user chose -> [name, bytes]. */
async function readModelBytes(source) {
  if (typeof source !== "string") return [source.name, new Uint8Array(await source.arrayBuffer())];
  const url = `models/${encodeURIComponent(source)}`;
  const response = await fetch(url);
  if (!response.ok) throw new Error(`cannot fetch ${url}: HTTP ${response.status}`);
  return [source, new Uint8Array(await response.arrayBuffer())];
}

/** Load a detector file (or none: ""), one session at a time. */
async function loadDetector(source) {
  let detector = null;
  if (source) {
    const [name, bytes] = await readModelBytes(source);
    detector = await BlazeFaceDetector.load(app.runtime, bytes, name);
  }
  await app.detector?.session.release();
  app.detector = detector;
  newTracker();
  return detector;
}

async function loadModel(source) {
  const [name, bytes] = await readModelBytes(source);
  const model = await LandmarkModel.load(app.runtime, bytes, name);
  await app.model?.session.release(); // one session at a time: WASM memory is not unlimited
  app.model = model;
  model.stages = app.stages;
  app.stages.clear();
  showModel(model);
  newTracker();
  return model;
}

/** lmk.crop in words: a square's side is the box's mean side, or its longer one ("max"). */
function cropText(crop) {
  const square = crop.square ? `, square on the ${crop.side === "max" ? "longer" : "mean"} side` : ", stretched";
  return `box x${crop.enlarge}${square}${crop.shiftY ? `, shift ${crop.shiftY}` : ""}`;
}

function showModel(model) {
  const i = model.info;
  const rows = [
    ["file", model.name],
    ["model", `${i.model} (${i.precision}${i.int8 ? `, INT8 ${i.int8.activations}` : ""})`],
    ["layout", `${i.layout}, ${i.numLandmarks} points`],
    ["input", `${i.inputFormat} ${i.inputSize}x${i.inputSize}`],
    ["decode", `${i.decode} (inside the file)`],
    ["crop", cropText(i.crop)],
    ["scores", i.confidence ? "per-point confidence" : "no confidence: the detector confirms faces"],
    ["rotate", i.rotate ? "crops turned upright along the eye line" : "no (axis-aligned crops)"],
  ];
  $("metadata").replaceChildren(
    ...rows.map(([k, v]) => {
      const tr = document.createElement("tr");
      tr.innerHTML = "<th></th><td></td>";
      tr.firstChild.textContent = k;
      tr.lastChild.textContent = v;
      return tr;
    }),
  );
}

function showRuntime(rt) {
  $("ep").textContent = `${rt.ep === "webgpu" ? "WebGPU" : "WASM"}${rt.ep === "wasm" ? `, SIMD, ${rt.threads} thread${rt.threads === 1 ? "" : "s"}` : ""}`;
  $("ort").textContent = `onnxruntime-web ${rt.version}${rt.isolated ? ", cross-origin isolated" : ""}`;
  $("note").textContent = rt.note;
  $("ep-select").value = params.get("ep") ?? "auto";
  $("threads").value = params.get("threads") ?? "0";
}

function showStats() {
  const ms = app.stages.recentMs();
  $("fps").textContent = app.stages.fps().toFixed(1);
  $("faces").textContent = String(app.lastFaces.length);
  $("detections").textContent = String(app.tracker?.detections ?? 0);
  $("stages").replaceChildren(
    ...STAGES.map((s) => {
      const tr = document.createElement("tr");
      tr.innerHTML = "<th></th><td></td>";
      tr.firstChild.textContent = s;
      tr.lastChild.textContent = `${ms[s].toFixed(2)} ms`;
      return tr;
    }),
  );
}

/** Track one RGBA frame, draw it with its faces; `image` is what the canvas shows. */
async function processFrame(frame, image, dt) {
  const stages = app.stages;
  const before = STAGES.reduce((sum, s) => sum + stages.current[s], 0);
  const start = performance.now();
  if (!app.tracker) newTracker(); // says again why there is none
  const faces = app.tracker ? await app.tracker.step(frame, dt, stages) : [];
  const inside = STAGES.reduce((sum, s) => sum + stages.current[s], 0) - before;
  stages.add("track", Math.max(0, performance.now() - start - inside));
  stages.timeSync("draw", () => render(image, frame, faces));
  stages.endFrame();
  app.lastFrame = { image, frame };
  app.lastFaces = faces;
  showStats();
  return faces;
}

function render(image, frame, faces) {
  const canvas = $("canvas");
  if (canvas.width !== frame.width || canvas.height !== frame.height) {
    canvas.width = frame.width;
    canvas.height = frame.height;
  }
  const ctx = canvas.getContext("2d");
  if (image) ctx.drawImage(image, 0, 0, frame.width, frame.height);
  else ctx.putImageData(frame, 0, 0);
  drawFaces(ctx, faces, Math.max(1, Math.min(frame.width, frame.height) / 480));
}

function stopInputs() {
  app.stopVideo?.();
  app.stopVideo = null;
  app.stream?.getTracks().forEach((t) => t.stop());
  app.stream = null;
  $("photo-nav").hidden = true;
}

async function runVideo(video) {
  newTracker();
  app.stages.clear();
  let previous = null;
  app.stopVideo = eachVideoFrame(video, async (now) => {
    const dt = previous === null ? 1 / 30 : (now - previous) / 1000;
    previous = now;
    const frame = app.stages.timeSync("read", () =>
      app.reader.read(video, video.videoWidth, video.videoHeight),
    );
    try {
      await processFrame(frame, video, dt);
    } catch (err) {
      stopInputs();
      showError(err);
    }
  });
}

async function showPhoto(index) {
  app.photoIndex = index;
  const bitmap = app.photos[index];
  newTracker(); // a photo is a new scene: detect afresh
  const frame = app.stages.timeSync("read", () => app.reader.read(bitmap, bitmap.width, bitmap.height));
  await processFrame(frame, bitmap, 1 / 30);
  $("photo-pos").textContent = `${index + 1} / ${app.photos.length}`;
}

function wireControls() {
  const guard = (fn) => async (event) => {
    clearError();
    try {
      await fn(event);
    } catch (err) {
      showError(err);
    }
  };
  $("model-select").addEventListener("change", guard((e) => loadModel(e.target.value)));
  $("model-file").addEventListener("change", guard((e) => e.target.files[0] && loadModel(e.target.files[0])));
  $("detector-select").addEventListener("change", guard((e) => loadDetector(e.target.value)));
  $("camera").addEventListener("click", guard(async () => {
    stopInputs();
    app.stream = await openCamera($("video"));
    await runVideo($("video"));
  }));
  $("video-file").addEventListener("change", guard(async (e) => {
    if (!e.target.files[0]) return;
    stopInputs();
    await openVideoFile($("video"), e.target.files[0]);
    await runVideo($("video"));
  }));
  $("photos").addEventListener("change", guard(async (e) => {
    if (!e.target.files.length) return;
    stopInputs();
    app.photos = await Promise.all([...e.target.files].map((f) => decodeImage(f)));
    $("photo-nav").hidden = app.photos.length < 2;
    app.stages.clear();
    await showPhoto(0);
  }));
  $("prev").addEventListener("click", guard(() => showPhoto((app.photoIndex + app.photos.length - 1) % app.photos.length)));
  $("next").addEventListener("click", guard(() => showPhoto((app.photoIndex + 1) % app.photos.length)));
  $("smooth").addEventListener("change", () => newTracker());
  $("rotate").addEventListener("change", () => newTracker());
  $("clear-box").addEventListener("click", () => {
    app.userBox = null;
    $("box").textContent = "whole-frame search";
    newTracker();
  });
  const reload = () => {
    const next = new URLSearchParams(location.search);
    next.set("ep", $("ep-select").value);
    next.set("threads", $("threads").value);
    location.search = next.toString();
  };
  $("ep-select").addEventListener("change", reload);
  $("threads").addEventListener("change", reload);
  wireBoxDrawing();
}

/** Drag on the canvas to draw the face box (the fixed-box detector); it replaces the
 * whole-frame search until cleared. */
function wireBoxDrawing() {
  const canvas = $("canvas");
  let start = null;
  const at = (e) => {
    const r = canvas.getBoundingClientRect();
    return [((e.clientX - r.left) * canvas.width) / r.width, ((e.clientY - r.top) * canvas.height) / r.height];
  };
  const boxOf = (a, b) => [Math.min(a[0], b[0]), Math.min(a[1], b[1]), Math.abs(a[0] - b[0]), Math.abs(a[1] - b[1])];
  canvas.addEventListener("pointerdown", (e) => {
    start = at(e);
    canvas.setPointerCapture(e.pointerId);
  });
  canvas.addEventListener("pointermove", (e) => {
    if (!start || !app.lastFrame) return;
    render(app.lastFrame.image, app.lastFrame.frame, app.lastFaces);
    drawPendingBox(canvas.getContext("2d"), boxOf(start, at(e)));
  });
  canvas.addEventListener("pointerup", async (e) => {
    if (!start) return;
    const box = boxOf(start, at(e));
    start = null;
    if (box[2] < 8 || box[3] < 8) return;
    app.userBox = box;
    $("box").textContent = `drawn box ${box.map((v) => Math.round(v)).join(", ")}`;
    newTracker();
    if (app.photos.length && !app.stopVideo) await showPhoto(app.photoIndex);
  });
}

async function init() {
  wireControls();
  app.runtime = await loadRuntime(params.get("ep") ?? "auto", Number(params.get("threads") ?? 0));
  showRuntime(app.runtime);
  const response = await fetch("models/index.json");
  if (!response.ok) throw new Error("cannot fetch models/index.json (is the page served by `lmk web`?)");
  const listed = await response.json();
  const option = (m) => {
    const element = document.createElement("option");
    element.value = element.textContent = m.name;
    return element;
  };
  const models = listed.filter((m) => (m.kind ?? "landmarks") === "landmarks");
  const detectors = listed.filter((m) => m.kind === "detector");
  $("model-select").replaceChildren(...models.map(option));
  $("detector-select").append(...detectors.map(option));
  const detector = params.get("detector") ?? detectors[0]?.name ?? "";
  if (detector) {
    $("detector-select").value = detector;
    await loadDetector(detector);
  }
  const first = params.get("model") ?? models[0]?.name;
  if (first) {
    $("model-select").value = first;
    await loadModel(first);
  }
}

// ---- the scripting interface (tests, benchmarks/web_latency.py) ----

function fromBase64(text) {
  const raw = atob(text);
  const bytes = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
  return bytes;
}

function toBase64(bytes) {
  let raw = "";
  for (let i = 0; i < bytes.length; i += 0x8000) raw += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(raw);
}

const faceJson = (f) => ({
  trackId: f.trackId, score: f.score, box: f.region.box, angle: f.region.angle, landmarks: f.landmarks,
});

window.lmk = {
  ready: init(),
  /** What the page shows: EP, threads, model metadata, frames/s and stage times. */
  info() {
    const rt = app.runtime;
    return {
      ep: rt?.ep, threads: rt?.threads, isolated: rt?.isolated, simd: rt?.simd, version: rt?.version,
      model: app.model ? { name: app.model.name, ...app.model.info, values: undefined } : null,
      detector: app.detector
        ? { file: app.detector.fileName, inputSize: app.detector.inputSize, minScore: app.detector.minScore, landmarkBox: app.detector.landmarkBox }
        : null,
      fps: app.stages.fps(), stagesMs: app.stages.recentMs(), frames: app.stages.frames,
      shown: { ep: $("ep").textContent, fps: $("fps").textContent, error: $("error").textContent, detector: $("detector").textContent },
    };
  },
  load: async (name) => (await loadModel(name)).info.model,
  /** Load a served detector file by name ("" : none, the frame detector). */
  loadDetector: async (name) => (await loadDetector(name))?.fileName ?? null,
  /** The detector file's faces in one image (URL): boxes, scores, keypoints (frame pixels)
   * and the landmark boxes the tracker crops from them. */
  async detect(url) {
    const bitmap = await decodeImage(url);
    const frame = app.reader.read(bitmap, bitmap.width, bitmap.height);
    const faces = await app.detector.detect(frame);
    return {
      boxes: faces.map((f) => f.box), scores: faces.map((f) => f.score), keypoints: app.detector.lastKeypoints,
      landmarkBoxes: faces.map((f) => app.detector.toLandmarkBox(f).box),
    };
  },
  /** Landmarks and scores of `n` uint8 BGR crops (base64 of [n, S, S, 3]). */
  async infer(cropsBase64, n) {
    const out = await app.model.infer(fromBase64(cropsBase64), n);
    return { landmarks: Array.from(out.landmarks), scores: Array.from(out.scores) };
  },
  /** Track photos (URLs) as one sequence, as lmk-run tracks a clip; with `record`, every
   * batch the model ran (crops, matrices, outputs) comes back too, and every detection
   * call's faces where the detector is the BlazeFace file. */
  async track(urls, { fps = 25, box = null, smooth = false, rotate = null, record = false } = {}) {
    app.userBox = box;
    const detector = startTracker(box, smooth, rotate).detector;
    app.stages.clear();
    app.model.record = record ? [] : null;
    detector.record = record ? [] : null;
    const frames = [];
    for (const url of urls) {
      const bitmap = await decodeImage(url);
      const frame = app.stages.timeSync("read", () => app.reader.read(bitmap, bitmap.width, bitmap.height));
      const batches = app.model.record?.length ?? 0;
      const faces = await processFrame(frame, bitmap, 1 / fps);
      frames.push({ faces: faces.map(faceJson), batches: [batches, app.model.record?.length ?? 0] });
    }
    const records = (app.model.record ?? []).map((r) => ({
      crops: toBase64(r.crops), matrices: r.matrices, landmarks: Array.from(r.landmarks), scores: Array.from(r.scores),
    }));
    const detected = (detector.record ?? []).map((found) => found.map((r) => ({ box: r.box, angle: r.angle, score: r.score })));
    app.model.record = null;
    detector.record = null;
    return { frames, records, detected, detections: app.tracker.detections, detector: detector.name };
  },
  /** Run the camera path for `count` frames; see `collect`. */
  async camera(count) {
    stopInputs();
    app.stream = await openCamera($("video"));
    await runVideo($("video"));
    return this.collect(count);
  },
  /** The next `count` frames the running camera or video file gives (then it stops): each
   * frame's faces and a 4x-downsampled grey thumbnail (to find which frame of a known clip
   * was delivered). */
  async collect(count) {
    const video = $("video");
    const frames = [];
    await new Promise((resolve) => {
      const poll = () => {
        if (app.lastFrame && app.stopVideo && app.lastFrame !== frames.at(-1)?.ref) {
          const { frame } = app.lastFrame;
          const w = Math.floor(frame.width / 4);
          const h = Math.floor(frame.height / 4);
          const grey = new Array(w * h);
          for (let y = 0; y < h; y++) {
            for (let x = 0; x < w; x++) {
              const p = (y * 4 * frame.width + x * 4) * 4;
              grey[y * w + x] = (frame.data[p] + frame.data[p + 1] + frame.data[p + 2]) / 3;
            }
          }
          frames.push({ ref: app.lastFrame, faces: app.lastFaces.map(faceJson), thumb: grey, w, h });
        }
        if (frames.length >= count) resolve();
        else setTimeout(poll, 5);
      };
      poll();
    });
    const info = this.info();
    stopInputs();
    return { frames: frames.map(({ ref, ...rest }) => rest), width: video.videoWidth, height: video.videoHeight, info };
  },
  /** Milliseconds of `runs` inferences of `batch` copies of one crop (after `warmup`). */
  async timeInfer(cropBase64, batch, runs, warmup = 5) {
    const one = fromBase64(cropBase64);
    const crops = new Uint8Array(one.length * batch);
    for (let i = 0; i < batch; i++) crops.set(one, i * one.length);
    for (let i = 0; i < warmup; i++) await app.model.infer(crops, batch);
    const times = [];
    for (let i = 0; i < runs; i++) {
      const start = performance.now();
      await app.model.infer(crops, batch);
      times.push(performance.now() - start);
    }
    return times;
  },
};
window.lmk.ready.catch(showError);
