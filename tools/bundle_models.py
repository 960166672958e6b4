"""Make the bundled models (lmk/data/models/) from the SynthFace training runs.

The PIPNet's best.pt is stored with FP16 weights (``Checkpoint.with_fp16_storage``) and
exported with ``--store-fp16`` (FP32 compute on the same FP16-rounded weights) to stay under
10 MB; the hourglass fits in FP32. Each file is scored on 1000 held-out SynthFace faces
(bundled.json) for the models' README.

    benchmarks/train_synth.sh runs/train_synth hourglass mbv2
    python tools/bundle_models.py --runs runs/train_synth
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from lmk.checkpoint import load_checkpoint
from lmk.export.exporter import ExportOptions, export_to_file
from lmk.runtime.bundled import BUNDLED, models_dir
from lmk.train.eval_cli import score_file

RUNS = {"pipnet": "mbv2", "hourglass": "hourglass"}
# PIPNet-MobileNetV2 is 3.6 M parameters (14 MB in FP32): stored FP16. The hourglass (1.8 M)
# fits in FP32, and stays there: its decode (argmax, quarter-pixel shift) is discrete, so
# even FP16 rounding of the weights can flip a shift on a near tie (0.5 heatmap px).
STORE_FP16 = {"pipnet": True, "hourglass": False}


def held_out_nme(model: Path, size: int) -> float:
    return score_file(model, "synth", size)["overall"]["nme"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, default=Path("runs/train_synth"))
    parser.add_argument("--eval-size", type=int, default=1000)
    parser.add_argument("--only", choices=sorted(RUNS), help="bundle one model")
    args = parser.parse_args()
    folder = models_dir()
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for name, run in RUNS.items():
        if args.only and name != args.only:
            continue
        source = args.runs / run / "best.pt"
        ckpt = load_checkpoint(source)
        onnx_path = folder / BUNDLED[name]
        pt_path = onnx_path.with_suffix(".pt")
        (ckpt.with_fp16_storage() if STORE_FP16[name] else ckpt).save(pt_path)
        small = load_checkpoint(pt_path)
        onnx_path.unlink(missing_ok=True)
        report = export_to_file(small, ExportOptions(), onnx_path, store_fp16=STORE_FP16[name])
        row = {
            "name": name,
            "source_nme": held_out_nme(source, args.eval_size),
            "pt_nme": held_out_nme(pt_path, args.eval_size),
            "onnx_nme": held_out_nme(onnx_path, args.eval_size),
            "pt_mb": pt_path.stat().st_size / 1e6,
            "onnx_mb": onnx_path.stat().st_size / 1e6,
            "parity": report["parity"]["landmarks"],
            "command": small.provenance.get("command"),
            "model": f"{small.spec.name} {small.spec.args}",
        }
        print(json.dumps(row))
        rows.append(row)
    record = folder / "bundled.json"
    previous = json.loads(record.read_text()) if record.is_file() else []
    rows += [r for r in previous if r["name"] not in {row["name"] for row in rows}]
    record.write_text(json.dumps(sorted(rows, key=lambda r: r["name"]), indent=1) + "\n")


if __name__ == "__main__":
    main()
