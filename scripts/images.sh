#!/usr/bin/env bash
# Builds the CPU image from docker/Dockerfile.cpu and runs the container tests on it
# (tests/containers.rs: smoke tests, and a fleet of containers that edits a job through a
# `docker stop`). scripts/test.sh runs it after the other tests, with RabbitMQ and the S3 server
# already up and the workspace's binaries built.
#
# Offline by design: no registry is reachable here, so
#   - the Docker engine is Debian's docker.io (installed when missing, started when not running);
#   - the base image debian:bookworm-slim is made locally with debootstrap (Debian's mirror) and
#     kept for later runs (the tag only exists on this machine's engine);
#   - the binaries are the workspace's, built on the host (debug info stripped) and handed to the
#     Dockerfile's `BINARIES` build argument, so its Rust builder stage (rust:1.95-bookworm) is
#     not needed. Users build the same Dockerfile unchanged, with the public base images.
# When the engine cannot start (no privileges for it), the image checks are SKIPPED with a
# message saying so; every other failure fails the run.
#
# Environment:
#   CARGO_TARGET_DIR          where the host binaries are (default /var/tmp/flowgrad-target)
#   FLOWGRAD_IMAGES_HOME      engine log, base rootfs, staging (default /var/tmp/flowgrad-images)
#   FLOWGRAD_IMAGE            tag of the image built (default flowgrad:ci)
set -euo pipefail
cd "$(dirname "$0")/.."

HOME_DIR=${FLOWGRAD_IMAGES_HOME:-/var/tmp/flowgrad-images}
TARGET=${CARGO_TARGET_DIR:-/var/tmp/flowgrad-target}
IMAGE=${FLOWGRAD_IMAGE:-flowgrad:ci}
# Debian's client: it drives BuildKit (RUN --mount) on Debian's engine
DOCKER=/usr/bin/docker
mkdir -p "$HOME_DIR"

log() { printf '\n== images: %s\n' "$*"; }

log "Docker engine"
if [ ! -x /usr/sbin/dockerd ] || [ ! -x $DOCKER ] || ! command -v debootstrap >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io debootstrap >/dev/null
fi
if ! $DOCKER info >/dev/null 2>&1; then
  nohup /usr/sbin/dockerd >"$HOME_DIR/dockerd.log" 2>&1 &
  for _ in $(seq 60); do $DOCKER info >/dev/null 2>&1 && break; sleep 0.5; done
fi
if ! $DOCKER info >/dev/null 2>&1; then
  echo "SKIPPED: the Docker engine cannot start on this machine (log: $HOME_DIR/dockerd.log):"
  tail -5 "$HOME_DIR/dockerd.log" || true
  echo "the image build and the container tests did not run"
  exit 0
fi

log "base image debian:bookworm-slim (made locally with debootstrap)"
if ! $DOCKER image inspect debian:bookworm-slim >/dev/null 2>&1; then
  if [ ! -f "$HOME_DIR/bookworm-minbase.tar" ]; then
    rm -rf "$HOME_DIR/rootfs"
    debootstrap --variant=minbase --include=ca-certificates bookworm "$HOME_DIR/rootfs" http://deb.debian.org/debian >"$HOME_DIR/debootstrap.log"
    tar --numeric-owner -C "$HOME_DIR/rootfs" -cf "$HOME_DIR/bookworm-minbase.tar" .
    rm -rf "$HOME_DIR/rootfs"
  fi
  $DOCKER import "$HOME_DIR/bookworm-minbase.tar" debian:bookworm-slim >/dev/null
fi

log "binaries from the host build ($TARGET/debug)"
staging="$HOME_DIR/binaries"
rm -rf "$staging" && mkdir -p "$staging/out/bin"
for binary in flowgrad flowgrad-worker flowgrad-coordinator; do
  strip --strip-debug -o "$staging/out/bin/$binary" "$TARGET/debug/$binary"
done
tar --numeric-owner -C "$staging" -c out | $DOCKER import - local/flowgrad-binaries:ci >/dev/null

log "build $IMAGE from docker/Dockerfile.cpu"
started=$(date +%s)
DOCKER_BUILDKIT=1 $DOCKER build --quiet -f docker/Dockerfile.cpu --build-arg BINARIES=local/flowgrad-binaries:ci -t "$IMAGE" . >/dev/null
echo "built in $(( $(date +%s) - started )) s; size $($DOCKER image inspect "$IMAGE" --format '{{.Size}}' | awk '{printf "%.0f MB", $1 / 1e6}')"
$DOCKER history --format '{{.Size}}\t{{.CreatedBy}}' "$IMAGE" | cut -c1-110

log "container tests (tests/containers.rs)"
FLOWGRAD_TEST_IMAGE=$IMAGE FLOWGRAD_TEST_DOCKER=$DOCKER cargo nextest run --locked -p flowgrad-tests --test containers --no-fail-fast
