#!/usr/bin/env bash
# Installs and starts everything the test suite needs, then runs it (the README's test command;
# .ci/run calls this script). Safe to re-run: every step skips what is already in place.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

log() { printf '\n== %s %s\n' "$(date -u +%H:%M:%S)" "$*"; }

# Build outputs outside the clone survive between runs on the same machine.
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/flowgrad-target}
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
export FLOWGRAD_FIXTURES=${FLOWGRAD_FIXTURES:-$ROOT/../shared/fixtures}

log "system packages"
# Fashion-MNIST (bundled model's data, test images), a TrueType font for `flowgrad eval` plots
if [ ! -d /usr/share/datasets/fashion-mnist ] || [ ! -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist fonts-dejavu-core >/dev/null
fi

log "tools"
command -v cargo-nextest >/dev/null || cargo install --locked cargo-nextest
{ command -v cargo-clippy >/dev/null && command -v rustfmt >/dev/null; } || rustup component add clippy rustfmt
[ -f "$FLOWGRAD_FIXTURES/FORMAT.md" ] || { echo "parity fixtures not found at $FLOWGRAD_FIXTURES (set FLOWGRAD_FIXTURES)"; exit 1; }

log "S3-compatible server (SeaweedFS) for the storage and fleet tests"
# a clean server every run: each test bucket is a SeaweedFS collection that takes volumes
bash scripts/s3-server.sh stop >/dev/null 2>&1 || true
rm -rf "${FLOWGRAD_S3_HOME:-/var/tmp/flowgrad-s3}"/data-*
eval "$(bash scripts/s3-server.sh start)"
trap 'bash scripts/s3-server.sh stop >/dev/null 2>&1 || true' EXIT
export FLOWGRAD_TEST_AMQP_URL=${FLOWGRAD_TEST_AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}

log "RabbitMQ: remove test queues an earlier, killed run left behind"
# Every test deletes its queues; a run killed half-way cannot. Quorum queues hold file handles, and
# a few hundred of them exhaust RabbitMQ's descriptors (connections then time out), so expire
# leftovers now (a policy applies to queues that exist) and keep a 30-minute expiry as a safety net.
if command -v rabbitmqctl >/dev/null && rabbitmqctl -q list_queues name >/dev/null 2>&1; then
  stale() { rabbitmqctl -q list_queues name | grep -c '^test-' || true; }
  if [ "$(stale)" -gt 0 ]; then
    echo "$(stale) test queues left behind: expiring them"
    rabbitmqctl -q set_policy --apply-to queues flowgrad-test-expiry '^test-' '{"expires":1000}'
    for _ in $(seq 60); do [ "$(stale)" -eq 0 ] && break; sleep 2; done
    echo "$(stale) left"
  fi
  rabbitmqctl -q set_policy --apply-to queues flowgrad-test-expiry '^test-' '{"expires":1800000}'
else
  echo "rabbitmqctl not usable here: skipped (tests delete their own queues)"
fi

log "deployment: helm lint/template over the value sets, kubernetes-validate, rendered configs"
export FLOWGRAD_RENDERED_CONFIGS=${FLOWGRAD_RENDERED_CONFIGS:-/var/tmp/flowgrad-rendered}
bash scripts/validate-deploy.sh "$FLOWGRAD_RENDERED_CONFIGS"

log "patched dependency: vendor/burn-autodiff is crates.io's release plus its patch, nothing else"
bash scripts/check-vendored.sh

log "CUDA feature: no LLVM download in its tree"
if cargo tree -e normal,build -i tracel-llvm-bundler -p flowgrad-cli --features cuda 2>/dev/null | grep -q tracel; then
  echo "tracel-llvm-bundler is in the CUDA dependency tree: it downloads LLVM at build time"; exit 1
fi

log "lints: rustfmt; clippy -D warnings on every target, built with the CUDA feature (no GPU needed)"
cargo fmt --all -- --check
cargo clippy --locked --workspace --all-targets --features flowgrad-cli/cuda -- -D warnings

log "LibTorch build (the CPU build that outruns the original at 256²): the parity fixtures on PyTorch's kernels"
# torch 2.9.0 from PyPI (scripts/tch-env.sh); the tests' build below puts the default binary back
(
  . scripts/tch-env.sh
  cargo build --locked -p flowgrad-cli --features tch
  ldd "$CARGO_TARGET_DIR/debug/flowgrad" | grep -q 'libtorch_cpu' || { echo "the tch build does not link libtorch"; exit 1; }
  for set in ncsnpp flowgrad clip; do "$CARGO_TARGET_DIR/debug/flowgrad" parity "$set" "$FLOWGRAD_FIXTURES/$set"; done
)

log "the job schema, the catalog and the coordinator link no tensor library"
for crate in flowgrad-params flowgrad-jobs flowgrad-catalog flowgrad-coordinator; do
  if cargo tree --locked -e normal -p "$crate" | grep -Eq 'burn|cubecl'; then
    echo "$crate depends on burn: it must stay tensor-free (see ARCHITECTURE.md)"; exit 1
  fi
done

log "tests"
cargo build --locked --workspace --bins
# the container tests need the image: scripts/images.sh builds it and runs them
cargo nextest run --locked --workspace --no-fail-fast -E 'not binary(containers)' "$@"

log "container image: build docker/Dockerfile.cpu, smoke tests, a fleet of containers"
bash scripts/images.sh
