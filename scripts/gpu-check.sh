#!/usr/bin/env bash
# On a machine with an NVIDIA GPU (driver installed; no CUDA toolkit needed: cudarc loads the
# driver at run time): builds the binaries with `--features cuda` (burn-cuda) and checks and
# measures the GPU path, ending with one summary line.
#
#   bash scripts/gpu-check.sh [--quick]
#
# 1. the exactness check of the gradient on CUDA: decomposed back-prop with ξ = 0 must equal full
#    back-prop (cosine ≥ 0.9999, from `flowgrad bench table1`), and FlowGrad's ξ = 5e-3 gradient
#    must stay close (cosine ≥ 0.99, the issue's target; 0.9907 on the CPU for this variant: the
#    reflowed model, Paper mode, VJPs at the segments' middle steps, interpolated costates);
# 2. the Table-1 benchmark on CUDA (ratios printed by `flowgrad bench table1`);
# 3. one end-to-end embedded edit of a bundled example on CUDA (`flowgrad edit`).
set -euo pipefail
cd "$(dirname "$0")/.."
QUICK=${1:-}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/flowgrad-target-cuda}
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || echo "gpu-check: nvidia-smi not found (continuing; burn-cuda needs the driver library)"

echo "== build (release, --features cuda)"
cargo build --release --locked -p flowgrad-cli --features cuda
BIN=$CARGO_TARGET_DIR/release/flowgrad

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
OUT=$(mktemp -d)
START=$(date +%s.%N)
"$BIN" edit --input examples/00-tshirt-test19.png --output "$OUT/edited.png" --target coat --steps 25 --iterations 5
END=$(date +%s.%N)
test -s "$OUT/edited.png"
python3 - "$OUT/edited.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
assert r["judge_target_prob_after"] >= r["judge_target_prob_before"], r
PY

echo "gpu-check: OK  backend=cuda  $SUMMARY  exact_cosine=$EXACT  edit_seconds=$(python3 -c "print(round($END-$START,1))")"
