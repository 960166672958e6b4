#!/usr/bin/env bash
# One command for a CUDA machine: GPU parity tests + lmk-bench with the GPU backends (and the
# CPU ones, so every GPU number has its CPU ratio from the same run), everything left in
# benchmarks/results/<machine>/ ready to commit. On a machine without a GPU it runs what it
# can (the GPU tests skip, the CPU bench runs in --quick mode) and says what it skipped and why.
#
# Why a separate venv: onnxruntime and onnxruntime-gpu install the same `onnxruntime` package
# and cannot share an environment, so the GPU build goes into its own venv (.venv-gpu) and the
# CPU dev venv (.venv) is left alone.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: benchmarks/gpu_suite.sh [options] [-- lmk-bench options]

On a CUDA machine: create/use a venv with lmk[export,bench] + onnxruntime-gpu (the CPU
onnxruntime is uninstalled there), run `pytest -m gpu tests/parity`, run lmk-bench with every
backend, and leave in benchmarks/results/<machine>/:
  nvidia-smi.txt       the card, driver, clocks and memory as nvidia-smi shows them
  gpu-probe.txt        which ONNX Runtime providers load, and what is missing when one does not
  pytest-gpu.xml/.log  the GPU parity tests (junit XML and the log)
  latency.json/.md/.png, bench.log   lmk-bench's results
  gpu_suite.md         what ran, what was skipped and why
Without a GPU: the same steps as far as they go (default venv .venv, CPU bench in --quick mode).

Options:
  --venv DIR              venv to create or use (default .venv-gpu with a GPU, else .venv)
  --python PY             interpreter for a new venv (default: $PYTHON or python3)
  --system-site-packages  a new venv sees PY's packages (reuse an image's torch; no download)
  --wheels DIR            offline: install only from wheels in DIR (pip --no-index)
  --tensorrt PKG          also pip-install TensorRT's libraries, e.g. tensorrt-cu12-libs; match
                          the CUDA and TensorRT majors onnxruntime-gpu was built for (gpu-probe.txt
                          names the libnvinfer it looks for)
  --no-install            use the venv as it is (nothing installed or removed)
  --out DIR               results folder (default benchmarks/results/<machine>/)
  --overwrite             replace results already in that folder
  --quick | --full        bench mode (default: full with a GPU, quick without)
  --dry-run               print the plan and the commands, change nothing
  -h, --help              this text
Everything after -- goes to lmk-bench, e.g. -- --models pipnet_r18,pipnet_small --batches 1,32
EOF
}

die() {
  echo "error: $*" >&2
  exit 2
}

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

venv=""
python=${PYTHON:-python3}
system_site=0
wheels=""
tensorrt_pkg=""
install=1
out=""
overwrite=0
mode=auto
dry=0
bench_extra=()
while (($#)); do
  case $1 in
    --venv) venv=${2:?--venv needs a folder}; shift ;;
    --python) python=${2:?--python needs an interpreter}; shift ;;
    --system-site-packages) system_site=1 ;;
    --wheels) wheels=${2:?--wheels needs a folder}; shift ;;
    --tensorrt) tensorrt_pkg=${2:?--tensorrt needs a package}; shift ;;
    --no-install) install=0 ;;
    --out) out=${2:?--out needs a folder}; shift ;;
    --overwrite) overwrite=1 ;;
    --quick) mode=quick ;;
    --full) mode=full ;;
    --dry-run) dry=1 ;;
    -h | --help) usage; exit 0 ;;
    --) shift; bench_extra=("$@"); break ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
  shift
done
[[ -z $wheels || -d $wheels ]] || die "--wheels $wheels is not a folder"

ran=()
skipped=()
note_ran() { ran+=("$*"); echo "== $*" >&2; }
note_skip() { skipped+=("$*"); echo "== skipped: $*" >&2; }

# Runs a command, or only prints it with --dry-run.
run() {
  if ((dry)); then
    printf '+' >&2
    printf ' %q' "$@" >&2
    printf '\n' >&2
  else
    "$@"
  fi
}

# --- 1. the GPU, as the driver sees it ---------------------------------------------------
gpu=""
if ! command -v nvidia-smi >/dev/null 2>&1; then
  gpu_reason="no nvidia-smi on PATH (no NVIDIA driver on this machine)"
elif ! nvidia-smi -L >/dev/null 2>&1; then
  gpu_reason="nvidia-smi sees no GPU: $(nvidia-smi -L 2>&1 | head -n 1)"
else
  gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -n 1)
fi
if [[ -n $gpu ]]; then
  echo "== GPU: $gpu" >&2
else
  note_skip "GPU parts: $gpu_reason"
fi
if [[ $mode == auto ]]; then
  if [[ -n $gpu ]]; then mode=full; else mode=quick; fi
fi

# --- 2. the venv ---------------------------------------------------------------------------
if [[ -z $venv ]]; then
  if [[ -n $gpu ]]; then venv=.venv-gpu; else venv=.venv; fi
fi
py=$venv/bin/python
pip_install=("$py" -m pip install -q)
[[ -z $wheels ]] || pip_install+=(--no-index --find-links "$wheels")
# The PyTorch release CI tests against (the Makefile's TORCH pin).
torch_spec=$(sed -n 's/^TORCH *?= *//p' Makefile)
torch_spec=${torch_spec:-torch}

if ((install)); then
  if [[ ! -x $py ]]; then
    venv_args=()
    if ((system_site)); then venv_args+=(--system-site-packages); fi
    run "$python" -m venv "${venv_args[@]}" "$venv"
  fi
  if [[ -x $py ]] && "$py" -c "import torch" >/dev/null 2>&1; then
    echo "== torch already in $venv: kept" >&2
  else
    run "${pip_install[@]}" "$torch_spec"
  fi
  if [[ -n $gpu ]]; then
    run "${pip_install[@]}" -e ".[export,bench]" pytest
    # onnxruntime-gpu installs over the same package folder as onnxruntime: remove both and
    # install the GPU build clean, or the survivor's files are a mix of the two.
    if [[ -x $py ]] && "$py" -m pip show onnxruntime >/dev/null 2>&1; then
      run "$py" -m pip uninstall -q -y onnxruntime onnxruntime-gpu
    fi
    run "${pip_install[@]}" onnxruntime-gpu
    [[ -z $tensorrt_pkg ]] || run "${pip_install[@]}" "$tensorrt_pkg"
    note_ran "venv $venv: lmk[export,bench], pytest, onnxruntime-gpu${tensorrt_pkg:+, $tensorrt_pkg}"
  else
    run "${pip_install[@]}" -e ".[cpu,export,bench]" pytest
    note_ran "venv $venv: lmk[cpu,export,bench], pytest (no GPU: CPU onnxruntime)"
  fi
elif [[ ! -x $py ]]; then
  die "--no-install, but $py does not exist"
fi
have_py=1
[[ -x $py ]] || have_py=0 # only in a dry run: the venv would be made above
((have_py)) || echo "== (dry run: $venv does not exist yet; its steps are shown, not probed)" >&2

# --- 3. CUDA / cuDNN / TensorRT libraries from pip packages onto the loader path -------------
# onnxruntime-gpu dlopens libcudart, libcudnn and libnvinfer; pip ships them under
# site-packages/nvidia/*/lib and tensorrt_libs, which the loader does not search by itself.
if ((have_py)); then
  libdirs=$("$py" - <<'EOF'
import glob, os, site
roots = [*site.getsitepackages(), site.getusersitepackages()]
found = []
for root in roots:
    found += glob.glob(os.path.join(root, "nvidia", "*", "lib"))
    found += glob.glob(os.path.join(root, "nvidia", "cu*", "lib"))
    found += glob.glob(os.path.join(root, "tensorrt_libs"))
print(":".join(sorted({d for d in found if os.path.isdir(d)})))
EOF
  )
  if [[ -n $libdirs ]]; then
    export LD_LIBRARY_PATH="$libdirs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  fi
fi

# --- 4. results folder ---------------------------------------------------------------------
if [[ -z $out ]]; then
  if ((have_py)); then
    slug=$("$py" -c "from lmk.bench.machine import describe, machine_slug; print(machine_slug(describe()))")
  else
    slug="<machine>"
  fi
  out=benchmarks/results/$slug
fi
outputs=(nvidia-smi.txt gpu-probe.txt pytest-gpu.xml pytest-gpu.log bench.log gpu_suite.md
  latency.json latency.md latency.png)
if ((!overwrite)); then
  for name in "${outputs[@]}"; do
    [[ ! -e $out/$name ]] || die "$out/$name exists; pass --overwrite to replace it"
  done
fi
echo "== results: $out" >&2
run mkdir -p "$out"
# With --dry-run nothing is written: the reports go to a scratch folder that is removed.
write_to=$out
if ((dry)); then
  write_to=$(mktemp -d)
  trap 'rm -rf "$write_to"' EXIT
fi

# --- 5. nvidia-smi and the provider probe ---------------------------------------------------
if [[ -n $gpu ]]; then
  {
    nvidia-smi
    echo
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem,power.limit --format=csv
  } >"$write_to/nvidia-smi.txt" 2>&1 || true
  note_ran "nvidia-smi -> nvidia-smi.txt"
fi

cuda_ok=0
trt_ok=0
if ((have_py)); then
  # Whether each provider really loads and runs (onnxruntime-gpu lists TensorRT even when
  # libnvinfer is missing), through lmk's runtime on the bundled model: the session options,
  # TensorRT caches and profile, TF32 decision and IO binding lmk-run uses. When one does not
  # load: which libraries its shared object cannot find.
  "$py" - >"$write_to/gpu-probe.txt" 2>&1 <<'EOF' || true
import os, subprocess, tempfile
import numpy as np
import onnxruntime as ort
from lmk.core.errors import LmkError
from lmk.runtime import bundled_model
from lmk.runtime.session import InferenceModel, RuntimeOptions

print("onnxruntime", ort.__version__, "device", ort.get_device())
print("providers listed:", ", ".join(ort.get_available_providers()))
capi = os.path.join(os.path.dirname(ort.__file__), "capi")
for ep, lib in (
    ("cuda", "libonnxruntime_providers_cuda.so"),
    ("tensorrt", "libonnxruntime_providers_tensorrt.so"),
):
    reason = None
    extra = {"trt_cache_dir": tempfile.mkdtemp(prefix="lmk-probe-")} if ep == "tensorrt" else {}
    try:
        model = InferenceModel(bundled_model(), RuntimeOptions(ep=ep, **extra))
        size = model.input_size
        model.infer(np.zeros((1, size, size, 3), np.uint8))
    except LmkError as exc:
        reason = str(exc)
    except Exception as exc:
        reason = f"failed on a first run: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
    path = os.path.join(capi, lib)
    if reason and os.path.exists(path):
        ldd = subprocess.run(["ldd", path], capture_output=True, text=True).stdout
        missing = sorted({l.split()[0] for l in ldd.splitlines() if "not found" in l})
        if missing:
            reason += f"; {lib} cannot find {', '.join(missing)}"
    print(f"{ep}: {'ok' if reason is None else reason}")
EOF
  cat "$write_to/gpu-probe.txt" >&2
  grep -q '^cuda: ok' "$write_to/gpu-probe.txt" && cuda_ok=1
  grep -q '^tensorrt: ok' "$write_to/gpu-probe.txt" && trt_ok=1
  note_ran "provider probe -> gpu-probe.txt"
  ((cuda_ok)) || note_skip "CUDA backends: $(sed -n 's/^cuda: //p' "$write_to/gpu-probe.txt")"
  ((trt_ok)) || note_skip "TensorRT backends: $(sed -n 's/^tensorrt: //p' "$write_to/gpu-probe.txt")"
fi

# --- 6. GPU parity tests --------------------------------------------------------------------
pytest_rc=0
if ((dry)); then
  run "$py" -m pytest -m gpu tests/parity -rs --junitxml "$out/pytest-gpu.xml"
else
  "$py" -m pytest -m gpu tests/parity -rs --junitxml "$out/pytest-gpu.xml" 2>&1 \
    | tee "$out/pytest-gpu.log" || pytest_rc=$?
fi
pytest_line=""
if ((!dry)); then
  pytest_line=$(tail -n 1 "$out/pytest-gpu.log" 2>/dev/null || true)
fi
case $pytest_rc in
  0) note_ran "pytest -m gpu tests/parity: ${pytest_line:-planned}" ;;
  5) note_skip "GPU parity tests: none collected" ;;
  *) note_ran "pytest -m gpu tests/parity FAILED (exit $pytest_rc): $pytest_line" ;;
esac

# --- 7. lmk-bench: GPU backends + the CPU ones for ratios -----------------------------------
bench_args=(--backends all --out "$out" --no-progress)
if ((overwrite)); then bench_args+=(--overwrite); fi
if [[ $mode == quick ]]; then bench_args+=(--quick); fi
bench_rc=0
if ((dry)); then
  run "$venv/bin/lmk-bench" "${bench_args[@]}" "${bench_extra[@]}"
else
  "$venv/bin/lmk-bench" "${bench_args[@]}" "${bench_extra[@]}" 2>&1 | tee "$out/bench.log" \
    || bench_rc=$?
fi
if ((bench_rc)); then
  note_ran "lmk-bench FAILED (exit $bench_rc): see bench.log"
else
  note_ran "lmk-bench ($mode) -> latency.json/.md/.png"
fi
[[ $mode == full ]] || note_skip "full bench: --quick numbers only (no GPU; pass --full to time the CPU properly)"

# --- 8. summary -----------------------------------------------------------------------------
{
  echo "# gpu_suite.sh on ${gpu:-a machine without a GPU}"
  echo
  echo "Commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo ' (with local changes)'), $(date -u +%Y-%m-%dT%H:%M:%SZ), venv $venv."
  echo
  if ((dry)); then echo "Would run (dry run):"; else echo "Ran:"; fi
  for line in "${ran[@]}"; do echo "- $line"; done
  if ((${#skipped[@]})); then
    echo
    echo "Skipped:"
    for line in "${skipped[@]}"; do echo "- $line"; done
  fi
} >"$write_to/gpu_suite.md"
echo >&2
cat "$write_to/gpu_suite.md" >&2
if ((dry)); then echo "(dry run: nothing was installed, run or written)" >&2; fi
if ((pytest_rc != 0 && pytest_rc != 5 || bench_rc != 0)); then
  exit 1
fi
