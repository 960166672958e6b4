"""Export MediaPipe's BlazeFace as an lmk *detector* file, and its export-time self-check.

The file (``lmk.kind = detector``) takes

- ``image`` uint8 [N, S, S, 3] BGR: the frame letterboxed into the model's square input
  (the runtime pads the frame to a square and resizes it: ``lmk.runtime.blazeface``);
- ``frame_box`` float32 [N, 4]: ``(x0, y0, width, height)`` of the frame region that square
  shows, in frame pixels (x0/y0 are negative where the square pads the frame),

and returns the ``top_k`` best anchors, decoded and mapped back to frame pixels:
``boxes`` [N, K, 4] ``(x, y, w, h)``, ``keypoints`` [N, K, 6, 2] and ``scores`` [N, K]
(sigmoid, best first). Only the weighted NMS is left to the host. The decode uses Slice,
Reshape, Mul/Add, Clip, Sigmoid, TopK (sorted) and GatherElements with int32 indices: ops
TensorRT's parser imports, with static shapes except the batch.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import TensorProto, compose

import lmk
from lmk.core.errors import LmkError
from lmk.core.metadata import FORMAT_VERSION, encode
from lmk.core.normalise import Normalisation
from lmk.export import graphs
from lmk.export.exporter import _opset, _trace
from lmk.models.blazeface import NUM_COORDS, NUM_KEYPOINTS, BlazeFace
from lmk.models.blazeface_import import load_blazeface_tflite
from lmk.runtime import blazeface as host

# MediaPipe's input: RGB scaled to [-1, 1].
BLAZEFACE_NORMALISATION = Normalisation((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
TOP_K = 100
KEYPOINT_NAMES = ["right_eye", "left_eye", "nose_tip", "mouth", "right_ear", "left_ear"]
# Self-check tolerances: raw heads are in input pixels (|values| up to ~150) and logits reach
# ~100, so 1e-2 is ~1e-4 relative (two fp32 implementations sum in different orders).
RAW_TOLERANCE = 1e-2
DECODE_TOLERANCE_PX = 1e-3  # boxes/keypoints on a 1000 px frame box
SCORE_TOLERANCE = 1e-5


def decode_model(input_size: int, top_k: int, opset: int, ir_version: int, batch: int | str):
    """raw ``regressors`` [N, A, 16] + ``logits`` [N, A] + ``frame_box`` -> top-K detections
    in frame pixels (the graph twin of :func:`lmk.runtime.blazeface.decode_reference`)."""
    anchors = host.anchor_centres(input_size)
    count = len(anchors)
    g = graphs.GraphBuilder("blazeface_decode")
    # Normalise to the square input: value / S, plus the anchor centre for positions.
    scaled = g.op("Mul", "regressors", g.const(np.float32(1.0 / input_size)))
    offsets = np.zeros((count, NUM_COORDS), np.float32)
    offsets[:, 0:2] = anchors
    offsets[:, 4:] = np.tile(anchors, (1, NUM_KEYPOINTS))
    # Box centre (cx, cy, w, h) -> corner (x, y, w, h): a constant linear map on 4 values.
    to_corner = np.eye(NUM_COORDS, dtype=np.float32)
    to_corner[2, 0] = to_corner[3, 1] = -0.5
    values = g.op("Add", g.op("MatMul", scaled, g.const(to_corner)), g.const(offsets))
    # Into frame pixels: x -> x0 + x * width, y -> y0 + y * height; sizes only scale.
    frame = g.reshape("frame_box", [0, 1, 4])
    origin = g.op(
        "Slice", frame, g.const([0], np.int64), g.const([2], np.int64), g.const([2], np.int64)
    )
    extent = g.op(
        "Slice", frame, g.const([2], np.int64), g.const([4], np.int64), g.const([2], np.int64)
    )
    scale = g.op("Tile", extent, g.const([1, 1, NUM_COORDS // 2], np.int64))
    zero = g.op("Mul", origin, g.const(np.float32(0.0)))
    shift = g.op(
        "Concat",
        origin,
        zero,
        g.op("Tile", origin, g.const([1, 1, NUM_KEYPOINTS], np.int64)),
        axis=2,
    )
    pixels = g.op("Add", g.op("Mul", values, scale), shift)
    clipped = g.op(
        "Clip",
        "logits",
        g.const(np.float32(-host.SCORE_CLIP)),
        g.const(np.float32(host.SCORE_CLIP)),
    )
    all_scores = g.op("Sigmoid", clipped)
    top_scores, top_index = g.op_outputs(
        "TopK", all_scores, g.const([top_k], np.int64), count=2, axis=1, sorted=1
    )
    g.op("Identity", top_scores, out="scores")
    index = g.op("Cast", top_index, to=TensorProto.INT32)
    index = g.op("Tile", g.reshape(index, [0, top_k, 1]), g.const([1, 1, NUM_COORDS], np.int64))
    picked = g.op("GatherElements", pixels, index, axis=1)
    g.op(
        "Slice",
        picked,
        g.const([0], np.int64),
        g.const([4], np.int64),
        g.const([2], np.int64),
        out="boxes",
    )
    kps = g.op(
        "Slice",
        picked,
        g.const([4], np.int64),
        g.const([NUM_COORDS], np.int64),
        g.const([2], np.int64),
    )
    g.reshape(kps, [0, top_k, NUM_KEYPOINTS, 2], out="keypoints")
    t = graphs._tensor
    inputs = [
        t("regressors", TensorProto.FLOAT, [batch, count, NUM_COORDS]),
        t("logits", TensorProto.FLOAT, [batch, count]),
        t("frame_box", TensorProto.FLOAT, [batch, 4]),
    ]
    outputs = [
        t("boxes", TensorProto.FLOAT, [batch, top_k, 4]),
        t("keypoints", TensorProto.FLOAT, [batch, top_k, NUM_KEYPOINTS, 2]),
        t("scores", TensorProto.FLOAT, [batch, top_k]),
    ]
    return g.model(inputs, outputs, opset, ir_version)


class _Raw(torch.nn.Module):
    def __init__(self, model: BlazeFace):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model(x)


def network_model(model: BlazeFace, opset: int, batch: int | None) -> onnx.ModelProto:
    """The traced network alone: float NCHW ``input`` -> ``regressors``, ``logits``."""
    size = model.input_size
    example = torch.zeros(batch or 2, 3, size, size)
    dynamic = None if batch else ({0: torch.export.Dim("batch", min=1, max=4096)},)
    names = ("regressors", "logits")
    network = _trace(_Raw(model.eval()), example, opset, names, dynamic, dynamo=True)
    if _opset(network) != opset:
        network = _trace(_Raw(model.eval()), example, opset, names, dynamic, dynamo=False)
    for value in list(network.graph.input) + list(network.graph.output):
        dim = value.type.tensor_type.shape.dim[0]
        if batch:
            dim.dim_value = batch
        else:
            dim.dim_param = "batch"
    return network


def metadata(model: BlazeFace, source: Path, top_k: int, batch: int | None) -> dict:
    """What the runtime needs to letterbox, read and post-process the detector file."""
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    return {
        "lmk.format": FORMAT_VERSION,
        "lmk.kind": "detector",
        "lmk.model": "blazeface",
        "lmk.model_args": {"variant": model.variant},
        "lmk.input_size": model.input_size,
        "lmk.input_format": "uint8_nhwc_bgr",
        "lmk.channel_order": "rgb",
        "lmk.mean": list(BLAZEFACE_NORMALISATION.mean),
        "lmk.std": list(BLAZEFACE_NORMALISATION.std),
        "lmk.letterbox": "runtime: pad the frame to a centred square, resize to input_size; "
        "frame_box = that square in frame pixels",
        "lmk.decode": "ssd_anchors_topk",
        "lmk.outputs": ["boxes", "keypoints", "scores"],
        "lmk.box_format": "xywh_frame_pixels",
        "lmk.top_k": top_k,
        "lmk.keypoints": KEYPOINT_NAMES,
        "lmk.nms": {"method": "weighted", "iou": host.NMS_IOU},
        # MediaPipe's own detection threshold for these graphs (min_score_thresh).
        "lmk.min_score": host.MEDIAPIPE_MIN_SCORE,
        "lmk.landmark_box": host.LANDMARK_BOX,
        "lmk.batch": batch or "dynamic",
        "lmk.provenance": {"source": source.name, "sha256": digest, "licence": "Apache-2.0"},
        "lmk.version": lmk.__version__,
    }


def build_detector(
    model: BlazeFace, source: Path, opset: int = 17, batch: int | None = None, top_k: int = TOP_K
) -> tuple[onnx.ModelProto, onnx.ModelProto]:
    """(the detector file, the traced network alone for the raw-head self-check)."""
    network = network_model(model, opset, batch)
    opset_v, ir = _opset(network), network.ir_version
    dim: int | str = batch or "batch"
    decode = decode_model(
        model.input_size, min(top_k, len(host.anchor_centres(model.input_size))), opset_v, ir, dim
    )
    full = compose.merge_models(
        network, decode, io_map=[("regressors", "regressors"), ("logits", "logits")]
    )
    pre = graphs.uint8_bgr_preprocess_model(
        BLAZEFACE_NORMALISATION, model.input_size, opset_v, ir, dim
    )
    full = compose.merge_models(pre, full, io_map=[("input", "input")])
    full.graph.name = "lmk_blazeface"
    full.producer_name, full.producer_version = "lmk", lmk.__version__
    for key, value in encode(metadata(model, source, top_k, batch)).items():
        entry = full.metadata_props.add()
        entry.key, entry.value = key, value
    return full, network


def opencv_raw_heads(path: Path, blob: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """OpenCV DNN's own run of the ``.tflite`` on an NCHW RGB blob in [-1, 1]: an execution
    independent of lmk's importer, what the self-check compares the file against."""
    import cv2

    if not hasattr(cv2.dnn, "readNetFromTFLite"):
        raise LmkError(f"OpenCV {cv2.__version__} cannot read TFLite files; install opencv>=5")
    engine = getattr(cv2.dnn, "ENGINE_CLASSIC", None)
    net = (
        cv2.dnn.readNetFromTFLite(str(path), engine=engine)
        if engine is not None
        else cv2.dnn.readNetFromTFLite(str(path))
    )
    names = net.getUnconnectedOutLayersNames()
    regressors, logits = [], []
    for image in blob:  # these graphs have a batch of 1
        net.setInput(image[None])
        for value in net.forward(names):
            if value.shape[-1] == NUM_COORDS:
                regressors.append(value.reshape(-1, NUM_COORDS))
            else:
                logits.append(value.reshape(-1))
    return np.stack(regressors), np.stack(logits)


def compare_top_k(
    graph: tuple[np.ndarray, np.ndarray, np.ndarray],
    reference: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> dict[str, float]:
    """Max |diff| between the graph's top-K (boxes, keypoints, scores) and the reference's
    decode of every anchor. Each graph entry is paired with the reference anchor of equal
    score (1e-6) whose box is nearest: sigmoid saturates to exactly 1.0 for strong faces,
    and TopK may order tied scores differently from a stable sort."""
    boxes, points, scores = graph
    ref_boxes, ref_points, ref_scores = reference
    worst = {"boxes_vs_numpy_px": 0.0, "keypoints_vs_numpy_px": 0.0, "scores_vs_numpy": 0.0}
    for n in range(scores.shape[0]):
        close = np.abs(ref_scores[n][None, :] - scores[n][:, None]) <= 1e-6  # [K, A]
        box_gap = np.abs(ref_boxes[n][None] - boxes[n][:, None]).max(axis=-1)  # [K, A]
        pick = np.where(close, box_gap, np.inf).argmin(axis=1)
        unmatched = ~close[np.arange(len(pick)), pick]
        pick = np.where(unmatched, np.argsort(-ref_scores[n], kind="stable")[: len(pick)], pick)
        gaps = {
            "boxes_vs_numpy_px": np.abs(boxes[n] - ref_boxes[n][pick]).max(),
            "keypoints_vs_numpy_px": np.abs(points[n] - ref_points[n][pick]).max(),
            "scores_vs_numpy": np.abs(scores[n] - ref_scores[n][pick]).max(),
        }
        worst = {k: max(worst[k], float(v)) for k, v in gaps.items()}
    return worst


def self_check(
    source: Path, full: bytes, network: bytes, images: np.ndarray, frame_boxes: np.ndarray
) -> dict[str, float]:
    """Max |diff| of (1) the file's raw heads vs OpenCV's run of the ``.tflite`` and (2) the
    file's fused decode vs :func:`lmk.runtime.blazeface.decode_reference` on those heads.
    Raises :class:`LmkError` past the stated tolerances."""
    from lmk.runtime.session import graph_session

    blob = BLAZEFACE_NORMALISATION.apply_bgr_nhwc(images)
    regressors, logits = graph_session(network).run(["regressors", "logits"], {"input": blob})
    cv_regressors, cv_logits = opencv_raw_heads(source, blob)
    result = {
        "regressors_vs_opencv": float(np.abs(regressors - cv_regressors).max()),
        "logits_vs_opencv": float(np.abs(logits - cv_logits).max()),
    }
    session = graph_session(full)
    boxes, keypoints, scores = session.run(
        ["boxes", "keypoints", "scores"], {"image": images, "frame_box": frame_boxes}
    )
    size = images.shape[1]
    ref_boxes, ref_points, ref_scores = host.decode_reference(regressors, logits, size)
    ref_boxes, ref_points = host.to_frame(ref_boxes, ref_points, frame_boxes)
    result.update(compare_top_k((boxes, keypoints, scores), (ref_boxes, ref_points, ref_scores)))
    limits = {
        "regressors_vs_opencv": RAW_TOLERANCE,
        "logits_vs_opencv": RAW_TOLERANCE,
        "boxes_vs_numpy_px": DECODE_TOLERANCE_PX,
        "keypoints_vs_numpy_px": DECODE_TOLERANCE_PX,
        "scores_vs_numpy": SCORE_TOLERANCE,
    }
    failed = [f"{k} {result[k]:.3g} > {limits[k]:g}" for k in limits if not result[k] <= limits[k]]
    if failed:
        raise LmkError("BlazeFace self-check failed: " + "; ".join(failed))
    return result


def export_blazeface(source: Path, output: Path, opset: int = 17, batch: int | None = None) -> dict:
    """Import ``source`` (.tflite), build and check the detector file, write it to ``output``."""
    from lmk.core.geometry import CropPolicy
    from lmk.export import checks
    from lmk.synth import synth_crops

    model = load_blazeface_tflite(source)
    full, network = build_detector(model, source, opset, batch)
    checks.check_validity(full)
    full, note = checks.simplify(full)
    checks.check_validity(full)
    trt = checks.tensorrt_check(full)
    count = batch or 2
    images = synth_crops(count, model.input_size, CropPolicy(enlarge=2.0), seed=0)
    rng = np.random.default_rng(0)
    frame_boxes = np.concatenate(
        [rng.uniform(-50, 50, (count, 2)), rng.uniform(200, 1000, (count, 1)).repeat(2, 1)], axis=1
    ).astype(np.float32)
    errors = self_check(
        source, full.SerializeToString(), network.SerializeToString(), images, frame_boxes
    )
    onnx.save(full, str(output))
    return {
        "model": f"blazeface ({model.variant}, {model.input_size} px)",
        "source": source.name,
        "simplify": note,
        "tensorrt": "ok" if trt.ok else "; ".join(trt.problems),
        **{k: f"{v:.2e}" for k, v in errors.items()},
    }
