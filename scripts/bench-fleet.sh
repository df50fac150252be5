#!/usr/bin/env bash
# Fleet overhead of the embedded fleet (same coordinator/worker/checkpoint code as Kubernetes,
# over a local store and the in-process broker) at realistic settings (N = 100, M = 10, the
# bundled model, the 8 example images): share of task time outside the editor, checkpoint size,
# and scaling from 1 to 2 workers. Prints one summary line. Usage:
#
#   bash scripts/bench-fleet.sh [path/to/release/flowgrad] [steps] [iterations]
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-${CARGO_TARGET_DIR:-target}/release/flowgrad}
STEPS=${2:-100}
ITERATIONS=${3:-10}
[ -x "$BIN" ] || { echo "build it first: cargo build --release -p flowgrad-cli (looked for $BIN)"; exit 1; }
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

run() { # workers → wall seconds; leaves report.json in $WORK/w$1
  local start end
  start=$(date +%s.%N)
  "$BIN" run --input examples --output "$WORK/w$1" --target coat --steps "$STEPS" --iterations "$ITERATIONS" --workers "$1" >/dev/null 2>&1 &
  local pid=$!
  # the largest checkpoint seen while the edit runs
  while kill -0 "$pid" 2>/dev/null; do
    find "$WORK/w$1/.flowgrad/jobs" -name '*.safetensors' -printf '%s\n' 2>/dev/null | sort -n | tail -1 >>"$WORK/ckpt-sizes" || true
    sleep 0.5
  done
  wait "$pid"
  end=$(date +%s.%N)
  python3 -c "print($end - $start)"
}

ONE=$(run 1)
TWO=$(run 2)
python3 - "$WORK" "$ONE" "$TWO" "$STEPS" "$ITERATIONS" <<'PY'
import json, sys
work, one, two, steps, iterations = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4], sys.argv[5]
report = json.load(open(f"{work}/w1/report.json"))
edit = sum(r["edit_seconds"] for r in report["results"])
total = sum(r["total_seconds"] for r in report["results"])
sizes = [int(s) for s in open(f"{work}/ckpt-sizes").read().split()] if open(f"{work}/ckpt-sizes").read().strip() else [0]
iters = sum(r["iterations_run"] for r in report["results"])
checkpoint = sum(r["checkpoint_seconds"] for r in report["results"])
print(f"tasks {len(report['results'])}, N={steps}, M={iterations}: editor {edit:.1f} s of {total:.1f} s task time")
print(f"fleet: overhead_share={(total - edit) / total:.4f} checkpoint_bytes={max(sizes)} "
      f"overhead_per_iteration_ms={1000 * (total - edit) / max(iters, 1):.1f} "
      f"checkpoint_write_ms_per_iteration={1000 * checkpoint / max(iters, 1):.1f} wall_1_worker_s={one:.1f} wall_2_workers_s={two:.1f} speedup_1_to_2={one / two:.2f}")
PY
