#!/usr/bin/env bash
# Proves vendor/burn-autodiff is burn-autodiff 0.21.0 from crates.io plus exactly
# vendor/burn-autodiff.patch (see vendor/README.md): downloads the published crate, checks its
# checksum, applies the patch and compares the trees.
set -euo pipefail
cd "$(dirname "$0")/.."
CRATE=burn-autodiff-0.21.0
SHA256=3b93a80e43bfab909399444b29ce3894ff51f7e879720bfc75b6007ae6a01c3d
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 - "$work/$CRATE.crate" <<PY
import sys, urllib.request
data = urllib.request.urlopen("https://static.crates.io/crates/burn-autodiff/$CRATE.crate", timeout=60).read()
open(sys.argv[1], "wb").write(data)
PY
echo "$SHA256  $work/$CRATE.crate" | sha256sum --check --quiet
tar -xzf "$work/$CRATE.crate" -C "$work"
rm -f "$work/$CRATE/.cargo-ok" "$work/$CRATE/Cargo.lock"
patch --quiet -p1 -d "$work/$CRATE" < vendor/burn-autodiff.patch
diff -r "$work/$CRATE" vendor/burn-autodiff
echo "vendor/burn-autodiff = crates.io $CRATE + vendor/burn-autodiff.patch"
