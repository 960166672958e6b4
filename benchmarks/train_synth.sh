#!/usr/bin/env bash
# The training runs behind benchmarks/results/<machine>/train_synth.md and the bundled models.
# Each run is sized (steps x batch) to finish inside 20 minutes on the 2-core CI-sized machine;
# every epoch ends with a held-out evaluation, so log.jsonl holds NME against wall-clock time.
# Usage: benchmarks/train_synth.sh [RUNS_DIR] [r18|hourglass|mbv2 ...]
set -euo pipefail
runs=${1:-runs/train_synth}
shift || true
which=${*:-r18 hourglass mbv2}
common=(--data synth --train-size 4000 --val-size 300 --input-size 128 --batch-size 16
        --workers 1 --seed 0 --lr 1e-3 --lr-schedule cosine --overwrite)
for name in $which; do
  case $name in
    r18)        args=(--model pipnet --backbone resnet18 --epochs 14 --steps-per-epoch 75) ;;
    hourglass)  args=(--model hourglass --num-stacks 2 --num-features 128 --heatmap-loss awing
                      --epochs 14 --steps-per-epoch 50) ;;
    mbv2)       args=(--model pipnet --backbone mobilenetv2 --num-nb 4 --epochs 18 --steps-per-epoch 100) ;;
    *) echo "unknown run $name" >&2; exit 2 ;;
  esac
  lmk-train "${common[@]}" "${args[@]}" --out "$runs/$name"
done
