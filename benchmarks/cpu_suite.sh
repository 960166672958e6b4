#!/usr/bin/env bash
# Every CPU number behind the README's "Fast on the CPU" section, in one go on this machine:
#   1. lmk-bench: latency of the usual path, lmk's fused FP32/INT8 on ORT's CPU EP and on
#      OpenVINO (FP32, BF16, INT8), PIPNet-R18 at 256 px (random weights) and the bundled
#      models (trained: NME column), batch 1 and 32, 2 threads, spinning off;
#   2. benchmarks/cpu_precision.py: NME and max landmark difference vs PyTorch for every
#      precision on both EPs (bundled models, and a trained PIPNet-R18 if given);
#   3. benchmarks/video_cpu.py: lmk-run frames/s at 640x480, JSON-only and with video, spin
#      off/on, ORT FP32/INT8 and OpenVINO FP32/BF16/INT8, with per-stage times.
# Results land in benchmarks/results/<machine>/ (CPU model and flags in every file). Run it on
# a quiet machine: anything else running skews the numbers (ratios are same-run, so less so).
# Usage: benchmarks/cpu_suite.sh [TRAINED_PIPNET_R18.pt]
set -euo pipefail
cd "$(dirname "$0")/.."
r18=${1:-}
prec=.venv-cpu-precision   # torch + onnxruntime-openvino (its CPU EP and the OpenVINO EP)
make venv venv-ov
if [ ! -x "$prec/bin/lmk-bench" ]; then
  python3 -m venv "$prec"
  "$prec/bin/pip" install -q torch==2.13.0
  "$prec/bin/pip" install -q -e ".[export,bench,openvino]"
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
bundled=lmk/data/models
"$prec/bin/lmk-bench" --models pipnet_r18,pipnet_small,hourglass \
  --backends usual,fused_fp32,fused_int8,ov_fp32,ov_bf16,ov_int8 --batches 1,32 --threads 2 \
  --checkpoint "pipnet_small=$bundled/pipnet_mbv2_synth.pt" \
  --checkpoint "hourglass=$bundled/hourglass2_synth.pt" --overwrite --no-progress
"$prec/bin/python" benchmarks/cpu_precision.py --threads 2 --overwrite \
  ${r18:+--checkpoint "pipnet_r18=$r18"}
for target in cpu openvino; do
  .venv/bin/lmk-export --model pipnet --checkpoint "$bundled/pipnet_mbv2_synth.pt" --int8 \
    --int8-target "$target" -o "$tmp/pipnet_int8_$target.onnx" > /dev/null
done
.venv/bin/python benchmarks/video_cpu.py --int8 "$tmp/pipnet_int8_cpu.onnx" \
  --int8-ov "$tmp/pipnet_int8_openvino.onnx"
