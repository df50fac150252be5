#!/usr/bin/env python3
"""One FlowGrad edit iteration, the PyTorch original vs this port, on identical weights and inputs.

Imports the ORIGINAL code from checkouts given as arguments (nothing of theirs is committed here):
NCSN++ from gnobitab/RectifiedFlow (ImageGeneration/models), generate_traj and
flowgrad_optimization from gnobitab/FlowGrad (utils/flowgrad_utils.py), with the import-time
patches of shared/fixtures/FORMAT.md ("How they were made"). Builds the model from the fixture's
ncsnpp/config.json and weights, times flowgrad_optimization(number_of_iterations=1) with an MSE
loss on the fixture's z0/target/u_init (N, xi, lr from flowgrad/config.json), then runs
`flowgrad bench iteration` on the same fixture with the same thread count and prints

    side_by_side: ours=<s> theirs=<s> ratio_theirs_over_ours=<x>

(medians of --repeats after one warm-up; ratio > 1 means ours is faster). torch is imported only
after the arguments are parsed, so --help works without it.
"""

import argparse
import contextlib
import importlib
import importlib.machinery
import importlib.util
import io
import json
import os
import re
import statistics
import subprocess
import sys
import time
import types
from pathlib import Path


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--flowgrad", type=Path, required=True, help="checkout of gnobitab/FlowGrad")
    p.add_argument("--rectified-flow", type=Path, required=True, help="checkout of gnobitab/RectifiedFlow")
    p.add_argument("--fixtures", type=Path, required=True, help="shared/fixtures (ncsnpp/ and flowgrad/ sets)")
    p.add_argument("--flowgrad-bin", type=Path, required=True, help="our `flowgrad` binary (a release build)")
    p.add_argument("--threads", type=int, default=1, help="CPU threads for both sides (default 1)")
    p.add_argument("--repeats", type=int, default=5, help="timed iterations after one warm-up (default 5)")
    return p.parse_args()


def read_safetensors(path, torch):
    """A minimal safetensors reader (f32/i64 only): {name: torch tensor}."""
    import numpy as np
    raw = Path(path).read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n])
    dtypes = {"F32": np.float32, "I64": np.int64, "I32": np.int32, "F64": np.float64}
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        array = np.frombuffer(raw[8 + n + start:8 + n + end], dtype=dtypes[info["dtype"]]).reshape(info["shape"])
        out[name] = torch.from_numpy(array.copy())
    return out


class ConfigDict(dict):
    """The minimal ml_collections.ConfigDict stand-in: nested attribute access."""

    def __getattr__(self, key):
        try:
            return self[key]
        except KeyError as e:
            raise AttributeError(key) from e

    def __setattr__(self, key, value):
        self[key] = value

    @classmethod
    def of(cls, value):
        if isinstance(value, dict):
            return cls({k: cls.of(v) for k, v in value.items()})
        return value


def stub(name, **attrs):
    module = types.ModuleType(name)
    module.__spec__ = importlib.machinery.ModuleSpec(name, None)  # torch._dynamo calls find_spec
    module.__dict__.update(attrs)
    sys.modules[name] = module
    return module


def import_originals(flowgrad_dir, rf_dir):
    """NCSN++ from RectifiedFlow and flowgrad_utils from FlowGrad, with FORMAT.md's patches."""
    import torch.utils.cpp_extension as cpp_extension
    stub("ml_collections", ConfigDict=ConfigDict)
    for name in ["torchvision", "imageio", "lpips", "clip", "PIL", "tqdm"]:
        if importlib.util.find_spec(name) is None or name in ("lpips", "clip"):
            stub(name)
    if importlib.util.find_spec("scipy") is None:
        stub("scipy", integrate=stub("scipy.integrate"))
    sys.path[:0] = [str(rf_dir / "ImageGeneration"), str(flowgrad_dir)]
    real_load, cpp_extension.load = cpp_extension.load, lambda *a, **k: None  # skip the CUDA JIT build of op/
    try:
        mutils = importlib.import_module("models.utils")
        importlib.import_module("models.ncsnpp")
        package = stub("fg_utils", __path__=[str(flowgrad_dir / "utils")])
        fg = importlib.import_module("fg_utils.flowgrad_utils")
        package.flowgrad_utils = fg
    finally:
        cpp_extension.load = real_load
    return mutils, fg


def their_iteration_times(args, torch):
    ncsnpp_dir, set_dir = args.fixtures / "ncsnpp", args.fixtures / "flowgrad"
    mutils, fg = import_originals(args.flowgrad.resolve(), args.rectified_flow.resolve())
    raw_config = json.loads((ncsnpp_dir / "config.json").read_text())
    raw_config.pop("fixture", None)
    config = ConfigDict.of(raw_config)
    model = mutils.get_model(config.model.name)(config)
    model.load_state_dict(read_safetensors(ncsnpp_dir / "weights.safetensors", torch), strict=True)
    model_fn = mutils.get_model_fn(model, train=False)

    settings = json.loads((set_dir / "config.json").read_text())
    n, xi, lr = int(settings["N"]), float(settings["xi"]), float(settings["lr"])
    data = read_safetensors(set_dir / "data.safetensors", torch)
    z0, target, u_init = data["z0"], data["target"], data["u_init"]
    segments = []

    def generate_traj(*a, **k):  # the original, recording its segment count
        traj, non_uniform_set = fg.generate_traj(*a, **k)
        segments.append(len(non_uniform_set["indices"]))
        return traj, non_uniform_set

    def iteration():
        start = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            fg.flowgrad_optimization(z0, list(range(n)), model_fn, generate_traj, N=n,
                                     L_N=lambda x: ((x - target) ** 2).mean(),
                                     u_init={k: u_init[k] for k in range(n)}, number_of_iterations=1,
                                     straightness_threshold=xi, lr=lr)
        return time.perf_counter() - start

    iteration()
    times = [iteration() for _ in range(args.repeats)]
    return statistics.median(times), n, xi, segments[-1]


def our_iteration_time(args, n, xi):
    env = dict(os.environ, RAYON_NUM_THREADS=str(args.threads))
    cmd = [str(args.flowgrad_bin), "bench", "iteration", "--fixture", str(args.fixtures / "ncsnpp"),
           "--steps", str(n), "--xi", repr(xi), "--repeats", str(args.repeats), "--threads", str(args.threads)]
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
    print(out, end="")
    m = re.search(r"^iteration: seconds=(\S+) steps=(\d+) segments=(\d+)$", out, re.M)
    if m is None:
        sys.exit(f"no summary line in the output of {' '.join(cmd)}")
    return float(m.group(1)), int(m.group(3))


def main():
    args = parse_args()
    import torch  # lazily: --help works without torch
    torch.set_num_threads(args.threads)
    theirs, n, xi, their_segments = their_iteration_times(args, torch)
    print(f"theirs: torch {torch.__version__}, threads {torch.get_num_threads()}, N={n}, xi={xi}, "
          f"segments={their_segments}, median of {args.repeats}: {theirs:.6f} s")
    ours, our_segments = our_iteration_time(args, n, xi)
    if ours_segments_differ := our_segments != their_segments:
        print(f"warning: segments differ (ours {our_segments}, theirs {their_segments})", file=sys.stderr)
    print(f"side_by_side: ours={ours:.6f} theirs={theirs:.6f} ratio_theirs_over_ours={theirs / ours:.3f}"
          f" threads={args.threads}{' segments_differ' if ours_segments_differ else ''}")


if __name__ == "__main__":
    main()
