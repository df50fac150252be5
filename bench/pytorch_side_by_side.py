#!/usr/bin/env python3
"""NCSN++ forward, forward + input VJP and one FlowGrad edit iteration: the PyTorch original vs
this port, on identical weights and inputs, in one run.

Imports the ORIGINAL code from checkouts given as arguments (nothing of theirs is committed here):
NCSN++ from gnobitab/RectifiedFlow (ImageGeneration/models), generate_traj and
flowgrad_optimization from gnobitab/FlowGrad (utils/flowgrad_utils.py), with the import-time
patches of shared/fixtures/FORMAT.md ("How they were made"). The network and inputs are either the
fixture's (`--fixtures`: ncsnpp/ weights, flowgrad/ z0, target, u_init, N, xi, lr) or generated
at the paper's size (`--generate DIR`: the CelebA-HQ 256² config, the reference init under a seed
plus FORMAT.md's perturbation and output gain, written in the fixture layout so that both sides
read the same files; xi is then calibrated on their side to give `--segments` segments and written
into DIR/flowgrad/config.json, so a later run with `--fixtures DIR` reuses set and xi).

Each round times their side in this process (median of --repeats after one warm-up) and then ours
(`flowgrad bench iteration`, a child process, likewise timed inside); rounds alternate so a
machine's drift hits both sides. At the paper's size one iteration takes minutes:
`--no-iteration-warmup` times it without a warm-up iteration on either side (the forward and VJP
timings before it have warmed both processes). The last line is

    side_by_side: ours=<s> theirs=<s> ratio_theirs_over_ours=<x> forward_ratio=<x> vjp_ratio=<x> ...

(iteration times, medians over rounds; a ratio > 1 means ours is faster). torch is imported only
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
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--fixtures", type=Path, help="shared/fixtures (ncsnpp/ and flowgrad/ sets)")
    source.add_argument("--generate", type=Path, metavar="DIR",
                        help="write a CelebA-HQ 256² set (random weights, inputs) to DIR and use it")
    p.add_argument("--flowgrad-bin", type=Path, required=True, help="our `flowgrad` binary (a release build)")
    p.add_argument("--device", default="cpu", help="torch device of their side: cpu or cuda (ours: the binary's backend)")
    p.add_argument("--threads", type=int, default=1, help="CPU threads for both sides (default 1)")
    p.add_argument("--repeats", type=int, default=5, help="timed repetitions after one warm-up (default 5)")
    p.add_argument("--rounds", type=int, default=2, help="alternating rounds of theirs, ours (default 2)")
    p.add_argument("--steps", type=int, help="Euler steps N (default: the fixture's; 100 with --generate)")
    p.add_argument("--xi", type=float, help="straightness threshold (default: the fixture's; calibrated with --generate)")
    p.add_argument("--segments", type=int, default=10,
                   help="with --generate and no --xi: calibrate xi to this many segments (default 10, the paper's M)")
    p.add_argument("--seed", type=int, default=20261206, help="seed of the generated set (default 20261206)")
    p.add_argument("--iteration-warmup", action=argparse.BooleanOptionalAction, default=True,
                   help="run one untimed iteration before timing them, on both sides (default: yes)")
    args = p.parse_args()
    if args.rounds < 1 or args.repeats < 1:
        p.error("--rounds and --repeats must be at least 1")
    return args


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


def write_safetensors(path, tensors):
    """A minimal safetensors writer (f32 only) for {name: torch tensor}."""
    header, blobs, offset = {}, [], 0
    for name, tensor in tensors.items():
        blob = tensor.detach().to("cpu", dtype=tensor.new_empty(()).float().dtype).contiguous().numpy().tobytes()
        header[name] = {"dtype": "F32", "shape": list(tensor.shape), "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(len(text).to_bytes(8, "little") + text)
        for blob in blobs:
            f.write(blob)


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
    # op/'s compiled upfirdn2d is not built (above); on a GPU their FIR resampling then takes op/'s own
    # pure-PyTorch path, as it always does on the CPU
    native = sys.modules["op.upfirdn2d"].upfirdn2d_native
    sampling = importlib.import_module("models.up_or_down_sampling")
    sampling.upfirdn2d = lambda x, k, up=1, down=1, pad=(0, 0): native(x, k, up, up, down, down, *pad, *pad)
    return mutils, fg


# The CelebA-HQ 256² model of RectifiedFlow's configs/rectified_flow/celeba_hq_pytorch_rf_gaussian.py
# (on configs/default_lsun_configs.py): the fields NCSN++ reads.
CELEBA_HQ_256 = {
    "training": {"sde": "rectified_flow", "continuous": False},
    "data": {"dataset": "CelebA-HQ-Pytorch", "image_size": 256, "num_channels": 3, "centered": True},
    "model": {"name": "ncsnpp", "scale_by_sigma": True, "ema_rate": 0.999, "normalization": "GroupNorm",
              "nonlinearity": "swish", "nf": 128, "ch_mult": [1, 1, 2, 2, 2, 2, 2], "num_res_blocks": 2,
              "attn_resolutions": [16], "resamp_with_conv": True, "conditional": True, "fir": True,
              "fir_kernel": [1, 3, 3, 1], "skip_rescale": True, "resblock_type": "biggan",
              "progressive": "output_skip", "progressive_input": "input_skip", "progressive_combine": "sum",
              "attention_type": "ddpm", "init_scale": 0.0, "fourier_scale": 16, "conv_size": 3,
              "embedding_type": "fourier", "dropout": 0.0, "sigma_max": 378, "sigma_min": 0.01,
              "num_scales": 2000, "beta_min": 0.1, "beta_max": 20.0},
}
OUTPUT_GAIN, PERTURB_STD = 30.0, 0.02  # FORMAT.md: makes the random net's velocity O(1), not O(1e-3)


def build_model(mutils, raw_config, device):
    raw_config = dict(raw_config)
    raw_config.pop("fixture", None)
    config = ConfigDict.of(raw_config)
    config.device = device
    return mutils.get_model(config.model.name)(config)


def generate_set(args, torch, mutils):
    """Writes DIR/ncsnpp/{config.json,weights.safetensors} and DIR/flowgrad/{config.json,data.safetensors}."""
    raw = json.loads(json.dumps(CELEBA_HQ_256))
    torch.manual_seed(args.seed)
    model = build_model(mutils, raw, "cpu")
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * PERTURB_STD)
        for m in model.modules():  # the output_skip projections conv3x3(C, 3): h scales by the gain
            if isinstance(m, torch.nn.Conv2d) and m.out_channels == raw["data"]["num_channels"]:
                m.weight.mul_(OUTPUT_GAIN)
                m.bias.mul_(OUTPUT_GAIN)
    (args.generate / "ncsnpp").mkdir(parents=True, exist_ok=True)
    (args.generate / "flowgrad").mkdir(parents=True, exist_ok=True)
    raw["fixture"] = {"seed": args.seed, "perturb_std": PERTURB_STD, "output_gain": OUTPUT_GAIN,
                      "num_params": sum(p.numel() for p in model.parameters()), "generated_by": Path(__file__).name}
    (args.generate / "ncsnpp/config.json").write_text(json.dumps(raw, indent=1))
    write_safetensors(args.generate / "ncsnpp/weights.safetensors", model.state_dict())
    n = args.steps or 100
    side = raw["data"]["image_size"]
    shape = (1, raw["data"]["num_channels"], side, side)
    data = {"z0": torch.randn(shape), "target": torch.randn(shape), "u_init": torch.randn((n,) + shape) * 0.01}
    write_safetensors(args.generate / "flowgrad/data.safetensors", data)
    settings = {"N": n, "lr": 10.0, "xi": args.xi, "seed": args.seed, "shape": list(shape)}
    (args.generate / "flowgrad/config.json").write_text(json.dumps(settings, indent=1))
    return args.generate


class Theirs:
    """Their side: the original NCSN++ and flowgrad_optimization on the set's weights and inputs."""

    def __init__(self, args, torch, mutils, fg, fixtures):
        self.torch, self.fg, self.device = torch, fg, torch.device(args.device)
        raw = json.loads((fixtures / "ncsnpp/config.json").read_text())
        model = build_model(mutils, raw, args.device)
        model.load_state_dict(read_safetensors(fixtures / "ncsnpp/weights.safetensors", torch), strict=True)
        model.to(self.device)
        model_fn = mutils.get_model_fn(model, train=False)
        # the original builds the VJP's time on the CPU; move it to the model's device (a no-op on CPU)
        self.dynamic = lambda x, t: model_fn(x, t.to(x.device))
        settings = json.loads((fixtures / "flowgrad/config.json").read_text())
        self.n = args.steps or int(settings["N"])
        self.xi = args.xi if args.xi is not None else settings.get("xi")
        self.lr = float(settings["lr"])
        data = read_safetensors(fixtures / "flowgrad/data.safetensors", torch)
        self.z0, self.target = data["z0"].to(self.device), data["target"].to(self.device)
        if data["u_init"].shape[0] != self.n:
            sys.exit(f"the set's u_init has {data['u_init'].shape[0]} steps, not N={self.n}")
        self.u_init = {k: data["u_init"][k].to(self.device) for k in range(self.n)}
        self.segments = None

    def sync(self):
        if self.device.type == "cuda":
            self.torch.cuda.synchronize()

    def timed(self, fn, repeats, warmup=True):
        if warmup:
            fn()
        times = []
        for _ in range(repeats):
            self.sync()
            start = time.perf_counter()
            fn()
            self.sync()
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    def count_segments(self, xi, dynamic=None):
        _, plan = self.fg.generate_traj(dynamic or self.dynamic, self.z0, u=self.u_init, N=self.n,
                                        straightness_threshold=xi)
        return len(plan["indices"])

    def calibrate(self, segments):
        """The xi (bisection in log space) whose plan has `segments` segments, as near as it gets, and
        that plan's segment count. The network's outputs are recorded once and replayed: every
        probe's trajectory is the same."""
        preds = []

        def recording(x, t):
            preds.append(self.dynamic(x, t))
            return preds[-1]

        self.count_segments(1.0, recording)
        replay = lambda xi: self.count_segments(xi, lambda x, t, it=iter(preds): next(it))
        lo, hi = 1e-6, 1e3
        for _ in range(40):
            mid = (lo * hi) ** 0.5
            if replay(mid) > segments:
                lo = mid
            else:
                hi = mid
        self.xi = hi
        return hi, replay(hi)

    def forward(self):
        t = self.torch.full((1,), 0.5 * 999, device=self.device)
        with self.torch.no_grad():
            self.dynamic(self.z0, t)

    def forward_vjp(self):
        t = self.torch.full((1,), 0.5 * 999, device=self.device)
        x = self.z0.detach().clone().requires_grad_(True)
        v = self.dynamic(x, t)
        self.torch.autograd.grad(v, x, self.target)

    def iteration(self):
        def generate_traj(*a, **k):  # the original, recording its segment count
            traj, plan = self.fg.generate_traj(*a, **k)
            self.segments = len(plan["indices"])
            return traj, plan

        target = self.target
        with contextlib.redirect_stdout(io.StringIO()):
            self.fg.flowgrad_optimization(self.z0, list(range(self.n)), self.dynamic, generate_traj, N=self.n,
                                          L_N=lambda x: ((x - target) ** 2).mean(), u_init=self.u_init,
                                          number_of_iterations=1, straightness_threshold=self.xi, lr=self.lr)

    def measure(self, repeats, iteration_warmup):
        return {"forward": self.timed(self.forward, repeats), "vjp": self.timed(self.forward_vjp, repeats),
                "iteration": self.timed(self.iteration, repeats, iteration_warmup), "segments": self.segments}


def ours(args, fixtures, n, xi):
    """Our side: `flowgrad bench iteration` on the same set, timed inside the child process."""
    # flex's kernels run on rayon, a `--features tch` build's on libtorch's OpenMP threads
    env = dict(os.environ, RAYON_NUM_THREADS=str(args.threads), OMP_NUM_THREADS=str(args.threads))
    cmd = [str(args.flowgrad_bin), "bench", "iteration", "--fixture", str(fixtures / "ncsnpp"), "--steps", str(n),
           "--xi", repr(xi), "--repeats", str(args.repeats), "--threads", str(args.threads), "--network",
           "--iteration-only"] + ([] if args.iteration_warmup else ["--no-warmup"])
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
    print(out, end="")
    m = re.search(r"^iteration: seconds=(\S+) steps=(\d+) segments=(\d+)$", out, re.M)
    net = re.search(r"^network: forward_seconds=(\S+) vjp_seconds=(\S+)$", out, re.M)
    if m is None or net is None:
        sys.exit(f"no summary lines in the output of {' '.join(cmd)}")
    return {"forward": float(net.group(1)), "vjp": float(net.group(2)), "iteration": float(m.group(1)),
            "segments": int(m.group(3))}


def main():
    args = parse_args()
    import torch  # lazily: --help works without torch
    torch.set_num_threads(args.threads)
    mutils, fg = import_originals(args.flowgrad.resolve(), args.rectified_flow.resolve())
    fixtures = generate_set(args, torch, mutils) if args.generate else args.fixtures
    theirs = Theirs(args, torch, mutils, fg, fixtures)
    if theirs.xi is None:
        xi, segments = theirs.calibrate(args.segments)
        print(f"calibrated xi={xi:.6g} for {segments} segments (asked {args.segments})", flush=True)
        settings_path = fixtures / "flowgrad/config.json"
        settings = json.loads(settings_path.read_text())
        settings["xi"] = xi
        settings_path.write_text(json.dumps(settings, indent=1))
    name = torch.cuda.get_device_name() if theirs.device.type == "cuda" else f"cpu, {torch.get_num_threads()} threads"
    print(f"theirs: torch {torch.__version__} on {name}, N={theirs.n}, xi={theirs.xi}, z0 {list(theirs.z0.shape)}")
    rounds = []
    for r in range(args.rounds):
        t = theirs.measure(args.repeats, args.iteration_warmup)
        print(f"round {r} theirs: forward {t['forward']:.6f} s, forward+VJP {t['vjp']:.6f} s, "
              f"iteration {t['iteration']:.6f} s, segments {t['segments']}", flush=True)
        o = ours(args, fixtures, theirs.n, theirs.xi)
        print(f"round {r} ours: forward {o['forward']:.6f} s, forward+VJP {o['vjp']:.6f} s, "
              f"iteration {o['iteration']:.6f} s, segments {o['segments']}", flush=True)
        rounds.append((t, o))
    med = lambda side, key: statistics.median(r[side][key] for r in rounds)
    ratio = {key: med(0, key) / med(1, key) for key in ("forward", "vjp", "iteration")}
    differ = rounds[-1][0]["segments"] != rounds[-1][1]["segments"]
    if differ:
        print(f"warning: segments differ (ours {rounds[-1][1]['segments']}, theirs {rounds[-1][0]['segments']})",
              file=sys.stderr)
    print(f"side_by_side: ours={med(1, 'iteration'):.6f} theirs={med(0, 'iteration'):.6f} "
          f"ratio_theirs_over_ours={ratio['iteration']:.3f} forward_ratio={ratio['forward']:.3f} "
          f"vjp_ratio={ratio['vjp']:.3f} threads={args.threads} device={args.device} steps={theirs.n} "
          f"segments={rounds[-1][1]['segments']}{' segments_differ' if differ else ''}")


if __name__ == "__main__":
    main()
