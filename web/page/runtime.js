// Which onnxruntime-web build and execution provider the page runs on. WebGPU when the
// browser offers an adapter (ort.webgpu build), else the WASM EP with SIMD and threads
// (ort.wasm build). Threads need cross-origin isolation (COOP/COEP headers, which `lmk web`
// sends); without it the WASM EP runs one thread, and the page says so.

const ORT_DIR = new URL("./ort/", import.meta.url).href;

async function webgpuAdapter() {
  if (!("gpu" in navigator)) return null;
  try {
    return await navigator.gpu.requestAdapter();
  } catch {
    return null;
  }
}

/**
 * Load onnxruntime-web. `ep`: "auto" (WebGPU when offered, else WASM), "wasm" or "webgpu";
 * `threads`: WASM threads (0: all cores when isolated, else 1). A page loads one build once:
 * another EP or thread count needs a reload (the page keeps both in its URL).
 */
export async function loadRuntime(ep = "auto", threads = 0) {
  if (!["auto", "wasm", "webgpu"].includes(ep)) throw new Error(`unknown EP ${ep}; use auto, wasm or webgpu`);
  const adapter = ep === "wasm" ? null : await webgpuAdapter();
  if (ep === "webgpu" && adapter === null) {
    throw new Error("this browser offers no WebGPU adapter; choose the WASM EP");
  }
  const useWebgpu = adapter !== null;
  const ort = await import(`${ORT_DIR}${useWebgpu ? "ort.webgpu.min.mjs" : "ort.wasm.min.mjs"}`);
  const isolated = globalThis.crossOriginIsolated === true;
  const cores = navigator.hardwareConcurrency || 1;
  const wanted = threads > 0 ? threads : cores;
  const numThreads = isolated ? wanted : 1;
  ort.env.wasm.wasmPaths = ORT_DIR;
  ort.env.wasm.numThreads = numThreads;
  ort.env.wasm.proxy = false;
  return {
    ort,
    ep: useWebgpu ? "webgpu" : "wasm",
    providers: useWebgpu ? ["webgpu", "wasm"] : ["wasm"],
    threads: numThreads,
    isolated,
    simd: true, // onnxruntime-web 1.19+ ships only SIMD builds
    version: ort.env.versions?.web ?? "",
    note: isolated || threads === 1 ? "" : "not cross-origin isolated: 1 WASM thread (serve with COOP/COEP headers)",
  };
}

/**
 * An ORT session on an lmk file's `bytes` with the runtime's execution providers and full
 * graph optimisation: the one place the page opens a file, landmark model or detector alike.
 */
export async function openSession(runtime, bytes) {
  return runtime.ort.InferenceSession.create(bytes, {
    executionProviders: runtime.providers,
    graphOptimizationLevel: "all",
  });
}
