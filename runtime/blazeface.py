"""BlazeFace's host-side math, numpy only: SSD anchors, the reference decode, weighted NMS.

Facts from MediaPipe's face-detection graphs (``face_detection_short_range_common.pbtxt``,
``face_detection_back*.pbtxt``; Apache-2.0), re-derived here:

- anchors (``SsdAnchorsCalculator``): 4 layers with strides (8, 16, 16, 16) at 128 px or
  (16, 32, 32, 32) at 256 px, one aspect ratio plus the interpolated one, fixed size 1x1,
  centres at ``(col + 0.5) / cols``. Layers of equal stride share one map, so the 16x16 map
  has 2 anchors per cell and the 8x8 map 6: 896 in all, in (map, row, column, anchor) order.
- decode (``TensorsToDetectionsCalculator``): values are in input pixels relative to the
  anchor centre, x before y (``reverse_output_order``); ``x = raw / size + anchor_x``,
  ``w = raw / size``; 6 keypoints likewise; score = sigmoid(clip(logit, +-100)).
- ``WEIGHTED`` non-maximum suppression with IoU threshold 0.3: the best remaining box
  absorbs every box overlapping it by more than the threshold; the result's coordinates are
  the score-weighted mean of that cluster, its score the best one's.

The exported graph (``lmk.export.blazeface``) fuses the decode; :func:`decode_reference` is
the numpy twin it is checked against, and what the OpenCV fallback runs.
"""

from __future__ import annotations

import numpy as np

NMS_IOU = 0.3
SCORE_CLIP = 100.0
# MediaPipe's min_score_thresh for these graphs (the detection threshold lmk defaults to).
MEDIAPIPE_MIN_SCORE = 0.5
_STRIDES = {128: (8, 16, 16, 16), 256: (16, 32, 32, 32)}
INPUT_SIDES = tuple(_STRIDES)
# How a BlazeFace box becomes the box a landmark model crops (issue 12 part 6): the box lmk
# tracks with is the landmarks' bounds grown 1.07x (runtime/faces.py). Fitted on a
# validation set, geometry only (no landmark model): on dlib's 43 faces BlazeFace (back)
# finds 42, and the tracker's box is 1.054x its width and 1.048x its height (sd 0.07), its
# centre 0.056 of a height lower (sd 0.04; 0.001 of a width across). Least squares over
# width and height together: grow 1.051, shift_y +0.056 (benchmarks/real_calibration.py).
# Written into each exported detector file as ``lmk.landmark_box``.
LANDMARK_BOX = {"grow": 1.051, "shift_y": 0.056}


def anchor_centres(input_size: int) -> np.ndarray:
    """[A, 2] anchor centres (x, y), normalised to the square input, in output order."""
    if input_size not in _STRIDES:
        raise ValueError(f"no BlazeFace anchor table for a {input_size} px input")
    strides = _STRIDES[input_size]
    centres = []
    for stride in dict.fromkeys(strides):  # equal strides share one feature map
        per_cell = 2 * strides.count(stride)  # aspect ratio 1.0 + the interpolated one
        cells = input_size // stride
        grid = (np.arange(cells, dtype=np.float64) + 0.5) / cells
        ys, xs = np.meshgrid(grid, grid, indexing="ij")
        cell = np.stack([xs.ravel(), ys.ravel()], axis=1)
        centres.append(np.repeat(cell, per_cell, axis=0))
    return np.concatenate(centres).astype(np.float32)


def decode_reference(
    regressors: np.ndarray, logits: np.ndarray, input_size: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Raw heads ``[N, A, 16]``, ``[N, A]`` -> boxes ``[N, A, 4]`` (x, y, w, h), keypoints
    ``[N, A, 6, 2]`` and scores ``[N, A]``, all normalised to the square input."""
    anchors = anchor_centres(input_size).astype(np.float64)
    raw = np.asarray(regressors, np.float64) / input_size
    centre = raw[..., 0:2] + anchors
    size = raw[..., 2:4]
    boxes = np.concatenate([centre - size / 2.0, size], axis=-1)
    keypoints = raw[..., 4:].reshape(*raw.shape[:-1], -1, 2) + anchors[:, None, :]
    clipped = np.clip(np.asarray(logits, np.float64), -SCORE_CLIP, SCORE_CLIP)
    scores = 1.0 / (1.0 + np.exp(-clipped))
    return boxes.astype(np.float32), keypoints.astype(np.float32), scores.astype(np.float32)


def to_frame(
    boxes: np.ndarray, keypoints: np.ndarray, frame_box: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Normalised boxes ``[N, A, 4]`` / keypoints ``[N, A, P, 2]`` -> frame pixels, where
    ``frame_box [N, 4]`` is the (x0, y0, w, h) the square input showed."""
    origin = frame_box[:, None, :2].astype(np.float32)
    extent = frame_box[:, None, 2:].astype(np.float32)
    boxes = np.concatenate([origin + boxes[..., :2] * extent, boxes[..., 2:] * extent], axis=-1)
    return boxes, origin[:, :, None, :] + keypoints * extent[:, :, None, :]


def _iou_with(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one (x, y, w, h) box with each of ``boxes``."""
    x0 = np.maximum(box[0], boxes[:, 0])
    y0 = np.maximum(box[1], boxes[:, 1])
    x1 = np.minimum(box[0] + box[2], boxes[:, 0] + boxes[:, 2])
    y1 = np.minimum(box[1] + box[3], boxes[:, 1] + boxes[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    union = box[2] * box[3] + boxes[:, 2] * boxes[:, 3] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def weighted_nms(
    boxes: np.ndarray,
    keypoints: np.ndarray,
    scores: np.ndarray,
    min_score: float,
    iou_threshold: float = NMS_IOU,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """MediaPipe's weighted NMS over one image's candidates.

    ``boxes [K, 4]`` (x, y, w, h), ``keypoints [K, P, 2]``, ``scores [K]``; candidates below
    ``min_score`` are dropped first. Each round takes the best remaining candidate, finds all
    remaining ones whose IoU with it exceeds ``iou_threshold`` (vectorised), and emits their
    score-weighted mean box and keypoints with the best score. Returns the kept faces, best
    first. Rounds are at most the number of faces, so the loop is short.
    """
    keep = scores >= min_score
    boxes, keypoints, scores = boxes[keep], keypoints[keep], scores[keep]
    order = np.argsort(-scores, kind="stable")
    boxes, keypoints, scores = boxes[order], keypoints[order], scores[order]
    corners = np.concatenate([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]], axis=1)
    points = keypoints.reshape(len(scores), int(np.prod(keypoints.shape[1:])))
    out_boxes, out_points, out_scores = [], [], []
    remaining = np.arange(len(scores))
    while remaining.size:
        best = remaining[0]
        cluster_mask = _iou_with(boxes[best], boxes[remaining]) > iou_threshold
        cluster_mask[0] = True
        cluster = remaining[cluster_mask]
        weights = scores[cluster].astype(np.float64)[:, None]
        total = weights.sum()
        merged = (corners[cluster] * weights).sum(axis=0) / total
        out_boxes.append(np.concatenate([merged[:2], merged[2:] - merged[:2]]))
        out_points.append((points[cluster] * weights).sum(axis=0) / total)
        out_scores.append(scores[best])
        remaining = remaining[~cluster_mask]
    n = len(out_scores)
    return (
        np.asarray(out_boxes, np.float32).reshape(n, 4),
        np.asarray(out_points, np.float32).reshape(n, *keypoints.shape[1:]),
        np.asarray(out_scores, np.float32),
    )
