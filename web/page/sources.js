// Frames for the tracker: a camera (getUserMedia), a video file, or still photos, each read
// into RGBA pixels (ImageData) through one canvas. Photos are decoded without colour
// conversion, so the pixels are the file's own (what OpenCV reads on the Python side).

export class FrameReader {
  constructor() {
    this.canvas = document.createElement("canvas");
    this.ctx = this.canvas.getContext("2d", { willReadFrequently: true });
  }

  /** RGBA pixels of a video element's current frame or an ImageBitmap. */
  read(source, width, height) {
    if (this.canvas.width !== width || this.canvas.height !== height) {
      this.canvas.width = width;
      this.canvas.height = height;
    }
    this.ctx.drawImage(source, 0, 0, width, height);
    return this.ctx.getImageData(0, 0, width, height);
  }
}

/** An ImageBitmap of a photo (File, Blob or URL), pixels as stored. */
export async function decodeImage(source) {
  const blob = typeof source === "string" ? await (await fetch(source)).blob() : source;
  return createImageBitmap(blob, { colorSpaceConversion: "none", premultiplyAlpha: "none" });
}

/** A playing <video> element on the user's camera. */
export async function openCamera(video) {
  if (!navigator.mediaDevices?.getUserMedia) {
    throw new Error("this browser gives the page no camera (getUserMedia needs https or localhost)");
  }
  const stream = await navigator.mediaDevices.getUserMedia({ video: true, audio: false });
  video.srcObject = stream;
  await video.play();
  return stream;
}

/** A playing <video> element on a video file the user chose. */
export async function openVideoFile(video, file) {
  video.srcObject = null;
  video.src = URL.createObjectURL(file);
  video.loop = true;
  video.muted = true;
  try {
    await video.play();
  } catch (err) {
    throw new Error(`this browser cannot play ${file.name} (${err.message}); try an MP4 (H.264) or WebM file`);
  }
}

/** Call `onFrame(now)` once per new video frame until `stop()`; frames that arrive while the
 * previous one is still being processed are skipped (live input). */
export function eachVideoFrame(video, onFrame) {
  let running = true;
  let busy = false;
  const tick = async (now) => {
    if (!running) return;
    if (!busy && video.readyState >= 2 && video.videoWidth > 0) {
      busy = true;
      try {
        await onFrame(now);
      } finally {
        busy = false;
      }
    }
    schedule();
  };
  const schedule = () => {
    if (!running) return;
    if (video.requestVideoFrameCallback) video.requestVideoFrameCallback(tick);
    else requestAnimationFrame(tick);
  };
  schedule();
  return () => {
    running = false;
  };
}
