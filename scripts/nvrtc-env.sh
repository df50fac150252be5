# Source this (`. scripts/nvrtc-env.sh`) before running a `--features cuda` build of flowgrad on a
# machine without the CUDA toolkit on the loader's path: burn-cuda compiles its kernels at run time
# with NVRTC, which cudarc loads by name. Looks in the loader's cache, CUDA installs and pip's
# nvidia-cuda-nvrtc wheels (`pip install nvidia-cuda-nvrtc-cu12` provides it without a toolkit) and
# puts the first folder holding libnvrtc on LD_LIBRARY_PATH; returns 1 when there is none.
if ! ldconfig -p 2>/dev/null | grep -q 'libnvrtc\.so'; then
  NVRTC_DIR=$( (ls -d /usr/local/cuda*/lib64 /usr/local/cuda*/targets/x86_64-linux/lib 2>/dev/null
                python3 -c 'import nvidia, os; [print(os.path.join(p, d, "lib")) for p in nvidia.__path__ for d in os.listdir(p)]' 2>/dev/null) |
    while read -r dir; do ls "$dir"/libnvrtc.so* >/dev/null 2>&1 && echo "$dir"; done | head -1)
  if [ -z "$NVRTC_DIR" ]; then
    echo "nvrtc-env: libnvrtc not found: install the CUDA toolkit's NVRTC or 'pip install nvidia-cuda-nvrtc-cu12'" >&2
    return 1 2>/dev/null || exit 1
  fi
  # cudarc also tries the plain name, which a wheel's folder may lack
  if ! ls "$NVRTC_DIR"/libnvrtc.so >/dev/null 2>&1; then
    NVRTC_LINKS=$(mktemp -d)
    ln -s "$(ls "$NVRTC_DIR"/libnvrtc.so.* | grep -v builtins | head -1)" "$NVRTC_LINKS/libnvrtc.so"
    NVRTC_DIR="$NVRTC_LINKS:$NVRTC_DIR"
  fi
  export LD_LIBRARY_PATH="$NVRTC_DIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
echo "nvrtc-env: LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-} ($(ldconfig -p 2>/dev/null | grep -c libnvrtc) cached libnvrtc entries)"
