#!/usr/bin/env bash
# On a machine with an NVIDIA GPU (driver installed; no CUDA toolkit needed: cudarc loads the
# driver and NVRTC at run time) checks and measures the GPU path, ending with one summary line.
#
#   bash scripts/gpu-check.sh [--quick]
#
# Environment:
#   FLOWGRAD_BIN     a `flowgrad` built with `--features cuda` (e.g. built on another x86-64 Linux
#                    machine); without it the script builds one with cargo
#   FLOWGRAD_REFS    a folder holding checkouts FlowGrad/ and RectifiedFlow/ of the original code:
#                    then step 1 runs, the side by side with PyTorch at 256² (needs python3 + torch)
#   SIDE_BY_SIDE_ARGS extra arguments of that step (default: --rounds 2 --repeats 3)
#
# 0. NVRTC: burn-cuda compiles its kernels at run time, so libnvrtc must load: scripts/nvrtc-env.sh
#    finds it (loader cache, CUDA installs, pip's nvidia-cuda-nvrtc wheels) before anything is
#    built or run.
# 1. (with FLOWGRAD_REFS) bench/pytorch_side_by_side.py at the paper's size, both sides on the GPU
#    (first, as the longest step; a failure is reported at the end);
# 2. the exactness check of the gradient on CUDA: decomposed back-prop with ξ = 0 must equal full
#    back-prop (cosine ≥ 0.9999, from `flowgrad bench table1`), and FlowGrad's ξ = 5e-3 gradient
#    must stay close (cosine ≥ 0.99, the issue's target; 0.9907 on the CPU for this variant: the
#    reflowed model, Paper mode, VJPs at the segments' middle steps, interpolated costates);
# 3. the Table-1 benchmark on CUDA (ratios printed by `flowgrad bench table1`);
# 4. one end-to-end embedded edit of a bundled example on CUDA (`flowgrad edit`).
set -euo pipefail
cd "$(dirname "$0")/.."
QUICK=${1:-}
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || echo "gpu-check: nvidia-smi not found (continuing; burn-cuda needs the driver library)"

echo "== NVRTC"
# shellcheck source=scripts/nvrtc-env.sh
. scripts/nvrtc-env.sh

if [ -n "${FLOWGRAD_BIN:-}" ]; then
  BIN=$(realpath "$FLOWGRAD_BIN")
else
  echo "== build (release, --features cuda)"
  export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/flowgrad-target-cuda}
  cargo build --release --locked -p flowgrad-cli --features cuda
  BIN=$CARGO_TARGET_DIR/release/flowgrad
fi

SIDE=""
if [ -n "${FLOWGRAD_REFS:-}" ]; then
  echo "== side by side with PyTorch, CelebA-HQ 256², both on the GPU"
  # shellcheck disable=SC2086
  SIDE=$(PYTHONUNBUFFERED=1 python3 bench/pytorch_side_by_side.py --flowgrad "$FLOWGRAD_REFS/FlowGrad" \
    --rectified-flow "$FLOWGRAD_REFS/RectifiedFlow" --generate "$(mktemp -d)" --device cuda \
    --flowgrad-bin "$BIN" ${SIDE_BY_SIDE_ARGS:---rounds 2 --repeats 3} | tee /dev/stderr | grep '^side_by_side:') ||
    SIDE="side_by_side: FAILED"
fi

echo "== Table 1 on CUDA"
TABLE=$("$BIN" bench table1 --model reflow --mode paper --segment-anchor middle --segment-gradient interpolate $QUICK | tee /dev/stderr)
SUMMARY=$(grep '^table1:' <<<"$TABLE")
EXACT=$(awk '/^decomposed \(xi=0\)/ {print $NF}' <<<"$TABLE")
FAST=$(sed -n 's/.*cosine=\([0-9.]*\).*/\1/p' <<<"$SUMMARY")
python3 - "$EXACT" "$FAST" <<'PY'
import sys
exact, fast = map(float, sys.argv[1:3])
assert exact >= 0.9999, f"decomposed (xi=0) vs full back-prop cosine {exact} < 0.9999 on CUDA"
assert fast >= 0.99, f"FlowGrad xi=5e-3 cosine {fast} < 0.99 on CUDA"
PY

echo "== one embedded edit on CUDA"
OUT_DIR=$(mktemp -d)
START=$(date +%s.%N)
"$BIN" edit --input examples/00-tshirt-test19.png --output "$OUT_DIR/edited.png" --target coat --steps 25 --iterations 5
END=$(date +%s.%N)
test -s "$OUT_DIR/edited.png"
python3 - "$OUT_DIR/edited.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
assert r["judge_target_prob_after"] >= r["judge_target_prob_before"], r
PY

[ "$SIDE" != "side_by_side: FAILED" ] || { echo "gpu-check: the side by side failed (above)" >&2; exit 1; }
echo "gpu-check: OK  backend=cuda  $SUMMARY  exact_cosine=$EXACT  edit_seconds=$(python3 -c "print(round($END-$START,1))")  ${SIDE}"
