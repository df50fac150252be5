# Source this (`. scripts/tch-env.sh`) before building or running a `--features tch` build of
# flowgrad (burn's LibTorch backend on the CPU). tch 0.22 links the libtorch of a Python torch
# 2.9.0, which this installs from PyPI into a virtual environment (FLOWGRAD_TORCH_ENV, default
# /var/tmp/flowgrad-torch-2.9.0; about 3 GB with the CUDA wheels PyPI's Linux torch depends on; the
# CPU kernels are what this build uses). Nothing is downloaded at build time: torch-sys reads the
# library and headers from that environment (LIBTORCH_USE_PYTORCH), and the binary finds them at
# run time through LD_LIBRARY_PATH.
FLOWGRAD_TORCH_VERSION=2.9.0 # torch-sys 0.22's TORCH_VERSION
FLOWGRAD_TORCH_ENV=${FLOWGRAD_TORCH_ENV:-/var/tmp/flowgrad-torch-$FLOWGRAD_TORCH_VERSION}
if [ "$("$FLOWGRAD_TORCH_ENV/bin/python" -c 'import torch; print(torch.__version__.split("+")[0])' 2>/dev/null)" != "$FLOWGRAD_TORCH_VERSION" ]; then
  python3 -m venv "$FLOWGRAD_TORCH_ENV"
  "$FLOWGRAD_TORCH_ENV/bin/pip" install --quiet "torch==$FLOWGRAD_TORCH_VERSION" numpy
fi
export VIRTUAL_ENV="$FLOWGRAD_TORCH_ENV"
export PATH="$FLOWGRAD_TORCH_ENV/bin:$PATH"
export LIBTORCH_USE_PYTORCH=1
LD_LIBRARY_PATH="$("$FLOWGRAD_TORCH_ENV/bin/python" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export LD_LIBRARY_PATH
