"""Training and sampling throughput of every model, on synthetic data held in RAM.

    python benchmarks/bench.py                       # the CPU table (about 10 minutes)
    python benchmarks/bench.py --only stylegan2-64   # one configuration
    python benchmarks/bench.py --device cuda --suite gpu --precision bf16
    python benchmarks/bench.py --suite modconv       # both modulated-conv paths, per layer
    python benchmarks/bench.py --suite paper         # the papers' widths on a CPU, a few steps
    python benchmarks/bench.py --memory-steps 2000   # RSS over a long run (leak check)

Protocol (issue 8): each configuration runs in a fresh subprocess; after warm-up, training is
timed over windows of `--steps` iterations (a multiple of 16, so that R1 every 16 and path
length every 4 or 8 fall into every window in proportion), and the median of `--windows`
windows is reported, with the spread. The StyleGAN2 rows reproduce the reference port's schedule:
a D step, R1 every 16, a G step, path length every 4 on half the batch, style mixing 0.9, EMA.
On CUDA, fp32 means fp32 with TF32 matmuls/convolutions and cuDNN autotuning; bf16 and fp16
autocast the main phases (fp16 with a GradScaler), R1 and path length stay fp32; MFU = counted
FLOP/s over the card's dense bf16 peak (`PEAK_BF16`). When --warmup ≥ --steps the FLOPs are
counted over the last warm-up window instead of an extra one (R1 and path length fall into any
16 consecutive steps in proportion); every configuration's subprocess has a --timeout.
FLOPs are counted analytically, per aten op (torch.utils.flop_counter's formulas: convolutions
and matrix products, forward, backward and double backward), over one window; effective GFLOP/s
= those FLOPs / the median window time. Peak memory is the subprocess's max RSS (CPU) or
torch.cuda.max_memory_allocated (GPU). Results go to JSON (with threads, torch build, CPU/GPU
name) and, with --markdown, to a table for the README.

Not used yet: torch.compile. The speed comes from eager PyTorch (modulated activations instead of
per-sample weights where that is cheaper, FIR filters as one depthwise convolution, lazy
regularization). Compiling the first-order phases (the D and G main losses) while R1 and path
length stay eager on the same parameters is the next lever. One measurement on the 2-core CPU
(stylegan2-64's D, forward + backward at batch 32, inductor): 95 ms eager, 88 ms compiled
(−8%) after 25 s of compilation, so it was not built; on a GPU the fusion gain should be larger.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import conv_flop_count, flop_registry

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from nanogan import models  # noqa: E402
from nanogan.fade import images_until_final  # noqa: E402

# The tiny StyleGAN2 preset turns off path length and style mixing, widens the minibatch-std
# groups (StyleGAN2-ADA's `cifar` settings) and clamps G's image; rows that time every
# regularizer (and the reference port's protocol) put config F's back.
SG2_REGULARIZED = {k: getattr(models.MODELS["stylegan2"].PRESETS["paper256"], k)
                   for k in ("pl_weight", "mixing_prob", "mbstd_group", "output")}
# name -> (model, config overrides, notes). Widths are per resolution, as in the protocol.
SG2_REF = SG2_REGULARIZED | dict(resolution=32, channels=3, z_dim=512, w_dim=512, mapping_layers=8,
                                 batch_size=32, r1_interval=16, pl_interval=4, pl_batch_shrink=2)
CPU_SUITE = {
    "stylegan2-64": ("stylegan2", SG2_REF | dict(channel_base=2048, channel_max=64),
                     "32², 64 ch, PL every 4 (reference: ~10.6 img/s)"),
    "stylegan2-64-noPL": ("stylegan2", SG2_REF | dict(channel_base=2048, channel_max=64,
                                                       pl_weight=0.0), "as above, no path length"),
    "stylegan2-128": ("stylegan2", SG2_REF | dict(channel_base=4096, channel_max=128),
                      "32², 128 ch, PL every 4 (reference: ~4.8 img/s)"),
    "stylegan2-128-noPL": ("stylegan2", SG2_REF | dict(channel_base=4096, channel_max=128,
                                                        pl_weight=0.0), "as above, no path length"),
    "stylegan2-tiny": ("stylegan2", {}, "the tiny preset (Fashion-MNIST 32², grey)"),
    "progan-tiny": ("progan", {"final_phase": True}, "tiny preset, 32² stable phase"),
    "biggan-tiny": ("biggan", {}, "tiny preset, 2 D steps per G step"),
}
GPU_SUITE = {  # batch 32: config F's, and NVlabs' 1-GPU figures (12.53 s/kimg at 256² on an A100)
    "stylegan2-128px": ("stylegan2", dict(resolution=128, channels=3, batch_size=32), "config F widths"),
    "stylegan2-256px": ("stylegan2", dict(resolution=256, channels=3, batch_size=32), "config F widths"),
    "biggan-128px": ("biggan", dict(resolution=128, channels=3, batch_size=256, num_classes=1000),
                     "ch 96, batch 256 per GPU"),
}
# The papers' channel widths on a CPU, "a few steps" each: batch 4, R1 and path length off (a
# window of 2 steps cannot hold them in proportion), so these rows time the main phases only.
PAPER_SUITE = {
    "stylegan2-64px-F": ("stylegan2", dict(preset="paper256", resolution=64, channels=3,
                                           batch_size=4, r1_gamma=0.0, pl_weight=0.0,
                                           sample_batch=8),
                         "config F widths at 64², batch 4, main phases only"),
    "stylegan2-256px-F": ("stylegan2", dict(preset="paper256", channels=3, batch_size=4,
                                            r1_gamma=0.0, pl_weight=0.0, sample_batch=8),
                          "config F at 256², batch 4, main phases only"),
    "biggan-128px": ("biggan", dict(preset="paper128", batch_size=4, standing_batches=1,
                                    standing_batch_size=8, sample_batch=8),
                     "ch 96, 1000 classes, batch 4, 2 D steps per G step, ortho reg"),
}
# Seconds on any machine: the device check's dry run of every row kind (gpu_check.sh without CUDA).
SMOKE_SUITE = {
    "stylegan2-smoke": ("stylegan2", SG2_REGULARIZED | dict(
        resolution=16, channels=1, channel_base=128, channel_max=16, z_dim=16, w_dim=16,
        mapping_layers=2, batch_size=8, sample_batch=8), "narrow 16², every regularizer"),
    "biggan-smoke": ("biggan", dict(resolution=32, channels=1, num_classes=10, ch=4, z_dim=16,
                                    shared_dim=4, attention=16, d_attention=16, batch_size=8,
                                    standing_batches=1, standing_batch_size=8, sample_batch=8),
                     "narrow 32²"),
}
SUITES = {"cpu": CPU_SUITE, "gpu": GPU_SUITE, "paper": PAPER_SUITE, "smoke": SMOKE_SUITE}
# --steps, --windows, --warmup of each suite unless given
SUITE_STEPS = {"cpu": (16, 3, 8), "gpu": (16, 3, 16), "paper": (2, 3, 1), "smoke": (16, 1, 16)}
# Dense bf16 tensor-core peaks, TFLOP/s, from the vendors' data sheets (first match in the name).
PEAK_BF16 = (("H100 PCIe", 756.0), ("H100 NVL", 835.0), ("H100", 989.4), ("H200", 989.4),
             ("GH200", 989.4), ("A100", 312.0), ("L40S", 362.0), ("L4", 121.0))


def peak_bf16_tflops(name: str) -> float | None:
    """The card's dense bf16 peak in TFLOP/s, or None for a card not in the table."""
    return next((peak for key, peak in PEAK_BF16 if key in name), None)
PRESET_OF = {"stylegan2": "tiny", "progan": "tiny", "biggan": "tiny"}
GPU_PRESET = {"stylegan2": "paper256", "biggan": "paper128", "progan": "paper"}


def conv_backward_flops(grad_out, x, w, *args) -> int:
    """Each gradient a convolution's backward computes (input, weight) costs its forward's FLOPs.

    torch.utils.flop_counter's formula ignores `groups` for the weight gradient and so counts a
    grouped convolution (StyleGAN2's per-sample weights, batch folded into the groups) `groups`
    times over; the forward formula is right for any groups, and the two backward products
    multiply the same pairs of numbers as the forward.
    """
    transposed, output_mask = args[4], args[7]
    forward = conv_flop_count(list(x.shape), list(w.shape), list(grad_out.shape), transposed)
    return forward * (int(output_mask[0]) + int(output_mask[1]))


class CountFlops(TorchDispatchMode):
    """Sum torch.utils.flop_counter's per-op formulas over everything dispatched (no hooks)."""

    def __init__(self):
        super().__init__()
        self.total = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func._overloadpacket is torch.ops.aten.convolution_backward:
            self.total += conv_backward_flops(*args)
        elif (formula := flop_registry.get(func._overloadpacket)) is not None:
            self.total += formula(*args, **(kwargs or {}), out_val=out)
        return out


PRECISIONS = {"no": None, "bf16": torch.bfloat16, "fp16": torch.float16}


class ScaledOptimizer:
    """An optimizer stepped through a GradScaler (fp16): unscale, skip the step on inf/NaN, update
    the scale — what Accelerate's prepared optimizer does. Everything else is the optimizer's."""

    def __init__(self, optimizer: torch.optim.Optimizer, scaler: "torch.amp.GradScaler"):
        self.optimizer, self.scaler = optimizer, scaler

    def step(self) -> None:
        self.scaler.step(self.optimizer)
        self.scaler.update()

    def __getattr__(self, name: str):
        return getattr(self.optimizer, name)


def precision_kwargs(precision: str, device: str) -> tuple[dict, "torch.amp.GradScaler | None"]:
    """Recipe keyword arguments for --precision: autocast in the chosen dtype for the main phases
    and, for fp16, a loss scaler (the caller wraps the optimizers in ScaledOptimizer)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    dtype, kind = PRECISIONS[precision], torch.device(device).type
    if dtype is None:
        return {}, None
    kwargs = {"autocast": lambda: torch.autocast(kind, dtype=dtype)}
    if dtype is not torch.float16:
        return kwargs, None
    scaler = torch.amp.GradScaler(kind)
    return kwargs | {"backward": lambda loss: scaler.scale(loss).backward()}, scaler


def make_recipe(module, cfg, device: str, precision: str = "no", seed: int = 0):
    """A model's recipe on `device` in `precision` (no | bf16 | fp16), without Accelerate."""
    kwargs, scaler = precision_kwargs(precision, device)
    recipe = module.Recipe(cfg, seed=seed, device=device, **kwargs)
    if scaler is not None:
        recipe.opt_G = ScaledOptimizer(recipe.opt_G, scaler)
        recipe.opt_D = ScaledOptimizer(recipe.opt_D, scaler)
    return recipe


def cuda_speed_settings(device: str) -> dict:
    """TF32 matmuls and convolutions and cuDNN autotuning on CUDA ("fp32" = fp32 + TF32 there)."""
    if torch.device(device).type != "cuda":
        return {}
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    torch.backends.cudnn.benchmark = True
    return {"tf32": True, "cudnn_benchmark": True}


def build(name: str, suite: dict, device: str, precision: str = "no"):
    model, overrides, _ = suite[name]
    module = models.MODELS[model]
    overrides = dict(overrides)
    final_phase = overrides.pop("final_phase", False)
    overrides.pop("sample_batch", None)
    preset = overrides.pop("preset", None) or (GPU_PRESET if device == "cuda" else PRESET_OF)[model]
    base = module.PRESETS[preset]
    cfg = dataclasses.replace(base, **overrides)
    torch.manual_seed(0)
    recipe = make_recipe(module, cfg, device, precision)
    if final_phase:  # ProGAN: measure the last resolution after its fade, alpha = 1
        recipe.images_seen = images_until_final(
            final_resolution=cfg.resolution, stabilize_images=round(cfg.stabilize_kimg * 1000),
            fade_images=round(cfg.fade_kimg * 1000))
    return module, cfg, recipe


def sync(device: str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def to_channels_last(recipe) -> None:
    """G, D and G_ema with their 4-d weights in NHWC order (convolutions then run NHWC: cuDNN's
    tensor-core kernels prefer it); the numbers stay the same, only the layout changes."""
    for net in (recipe.G, recipe.D, recipe.G_ema):
        net.to(memory_format=torch.channels_last)


def measure(name: str, suite: dict, device: str, steps: int, windows: int, warmup: int,
            precision: str = "no", channels_last: bool = False) -> dict:
    speed_settings = cuda_speed_settings(device)
    module, cfg, recipe = build(name, suite, device, precision)
    if channels_last:
        to_channels_last(recipe)
    g = torch.Generator().manual_seed(0)
    per_step = recipe.batch_per_step
    reals = (torch.rand(per_step, cfg.channels, cfg.resolution, cfg.resolution, generator=g) * 2
             - 1).to(device)
    if channels_last:
        reals = reals.contiguous(memory_format=torch.channels_last)
    labels = torch.randint(max(getattr(cfg, "num_classes", 0), 1), (per_step,),
                           generator=g).to(device)
    images_seen = recipe.images_seen
    counter = CountFlops()
    counted_in_warmup = warmup >= steps
    for i in range(warmup):
        if counted_in_warmup and i == warmup - steps:
            counter.__enter__()
        recipe.train_step(reals, labels)
    if counted_in_warmup:
        counter.__exit__(None, None, None)
    times = []
    for _ in range(windows):
        sync(device)
        start = time.perf_counter()
        for _ in range(steps):
            recipe.train_step(reals, labels)
        sync(device)
        times.append(time.perf_counter() - start)
    if not counted_in_warmup:
        with counter:
            for _ in range(steps):
                recipe.train_step(reals, labels)
    median = statistics.median(times)
    recipe.images_seen = images_seen  # keep ProGAN in its measured phase for sampling
    sample = sampling_speed(module, recipe, cfg, device, suite[name][1].get("sample_batch", 64))
    on_cuda = torch.device(device).type == "cuda"
    peak = (torch.cuda.max_memory_allocated() / 2**20 if on_cuda
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    peak_tflops = peak_bf16_tflops(torch.cuda.get_device_name()) if on_cuda else None
    flops_per_s = counter.total / median
    return {"name": name, "model": suite[name][0], "notes": suite[name][2],
            "precision": precision, "settings": speed_settings,
            "modconv": os.environ.get("NANOGAN_MODCONV", "auto"),
            "layout": "channels_last" if channels_last else "nchw",
            "mfu_bf16": flops_per_s / (peak_tflops * 1e12) if peak_tflops else None,
            "config": {k: v for k, v in dataclasses.asdict(cfg).items()},
            "steps_per_window": steps, "windows": windows, "window_s": times,
            "train_img_per_s": steps * per_step / median,
            "train_img_per_s_spread": [steps * per_step / max(times), steps * per_step / min(times)],
            "s_per_kimg": median / (steps * per_step) * 1000,
            "gflop_per_window": counter.total / 1e9,
            "effective_gflop_per_s": counter.total / 1e9 / median,
            "sample_img_per_s": sample, "peak_memory_mib": peak}


@torch.no_grad()
def sampling_speed(module, recipe, cfg, device: str, batch: int = 64, repeats: int = 3) -> float:
    recipe.before_sampling()
    G = recipe.G_ema
    seeds = list(range(batch))
    labels = torch.arange(batch) % cfg.num_classes if models.conditional(cfg) else None
    models.sample(module, G, cfg, seeds, labels, batch_size=batch)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        models.sample(module, G, cfg, seeds, labels, batch_size=batch)
        sync(device)
        best = min(best, time.perf_counter() - start)
    return batch / best


def memory_run(steps: int, every: int = 100) -> dict:
    """RSS every `every` steps of a narrow StyleGAN2 with every regularizer on (leak check)."""
    suite = {"memory": ("stylegan2", SG2_REGULARIZED | dict(
        channel_base=256, channel_max=16, z_dim=64, w_dim=64, batch_size=8, r1_interval=4,
        pl_interval=2), "")}
    _, cfg, recipe = build("memory", suite, "cpu")
    g = torch.Generator().manual_seed(0)
    reals = torch.rand(8, cfg.channels, 32, 32, generator=g) * 2 - 1
    labels = torch.zeros(8, dtype=torch.long)
    rss = []
    for step in range(steps + 1):
        if step % every == 0:
            with open("/proc/self/statm") as f:
                rss.append(int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20)
        if step < steps:
            recipe.train_step(reals, labels)
    return {"name": "memory", "steps": steps, "every": every, "rss_mib": rss,
            "growth_mib_second_half": rss[-1] - rss[len(rss) // 2]}


def machine(device: str) -> dict:
    info = {"torch": torch.__version__, "threads": torch.get_num_threads(),
            "python": platform.python_version(), "device": device,
            "mkldnn": torch.backends.mkldnn.is_available(),
            "build": torch.__config__.show().splitlines()[1:3]}
    if device == "cuda":
        props = torch.cuda.get_device_properties(0)
        info |= {"gpu": torch.cuda.get_device_name(), "gpu_memory_gib": props.total_memory / 2**30,
                 "capability": f"{props.major}.{props.minor}", "cuda": torch.version.cuda,
                 "cudnn": torch.backends.cudnn.version(), "driver": nvidia_driver(),
                 "peak_bf16_tflops": peak_bf16_tflops(torch.cuda.get_device_name())}
    else:
        try:
            cpu = [line for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name")]
            info["cpu"] = cpu[0].split(":", 1)[1].strip() if cpu else platform.processor()
        except OSError:
            info["cpu"] = platform.processor()
        info["cores"] = os.cpu_count()
    return info


def nvidia_driver() -> str | None:
    """The NVIDIA driver version from nvidia-smi, or None where it is missing."""
    try:
        done = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                              capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip().splitlines()[0] if done.returncode == 0 and done.stdout.strip() else None


def modconv_timings(device: str, precision: str = "no", batch: int = 32, repeats: int = 5) -> list:
    """Forward + backward milliseconds of both modulated-conv paths at config F's 3×3 layer
    shapes (4² … 256²) and a tRGB: the figures behind `prefer_grouped`'s rule per device."""
    from nanogan.modulation import modulated_conv2d
    cuda_speed_settings(device)
    dtype, kind = PRECISIONS[precision], torch.device(device).type
    g = torch.Generator().manual_seed(0)
    shapes = [(4, 512, 512, 3), (16, 512, 512, 3), (64, 512, 512, 3), (128, 256, 256, 3),
              (256, 128, 128, 3), (256, 128, 3, 1)]
    if kind == "cpu":  # a dry run in seconds: 1/16 of the widths, 1/4 of the resolutions
        shapes = [(max(r // 4, 4), i // 16, max(o // 16, 3), k) for r, i, o, k in shapes]
    rows = []
    for r, i, o, k in shapes:
        x = torch.randn(batch, i, r, r, generator=g).to(device).requires_grad_(True)
        w = torch.randn(o, i, k, k, generator=g).to(device).requires_grad_(True)
        s = (torch.randn(batch, i, generator=g) / (i * k * k) ** 0.5).to(device).requires_grad_(True)
        row = {"resolution": r, "in": i, "out": o, "kernel": k, "batch": batch}
        for grouped in (True, False):
            def step():
                with torch.autocast(kind, dtype=dtype or torch.float32, enabled=dtype is not None):
                    y = modulated_conv2d(x, w, s, demodulate=k == 3, grouped=grouped)
                y.float().square().mean().backward()
            step()  # warm-up (cuDNN autotuning)
            sync(device)
            start = time.perf_counter()
            for _ in range(repeats):
                step()
            sync(device)
            row["grouped_ms" if grouped else "activations_ms"] = (
                (time.perf_counter() - start) / repeats * 1000)
        rows.append(row)
    return rows


def markdown(results: list[dict], info: dict) -> str:
    where = info.get("gpu") or f"{info.get('cpu')} ({info['threads']} threads)"
    lines = [f"Machine: {where}, torch {info['torch']}.", "",
             "| configuration | train img/s (median, range) | s/kimg | effective GFLOP/s | "
             "sample img/s | peak MiB | notes |", "|---|---|---|---|---|---|---|"]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['name']} | — | — | — | — | — | {r['error']} |")
            continue
        lo, hi = r["train_img_per_s_spread"]
        digits = 1 if r["train_img_per_s"] >= 10 else 2
        lines.append(f"| {r['name']} | {r['train_img_per_s']:.{digits}f} "
                     f"({lo:.{digits}f}–{hi:.{digits}f}) | "
                     f"{r['s_per_kimg']:.2f} | {r['effective_gflop_per_s']:.0f} | "
                     f"{r['sample_img_per_s']:.0f} | {r['peak_memory_mib']:.0f} | {r['notes']} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", choices=(*SUITES, "modconv"), default=None,
                        help="cpu (default on a CPU), gpu (default on a GPU), paper (the papers' "
                             "widths, a few steps, main phases only), smoke (seconds), modconv "
                             "(both modulated-conv paths per layer shape)")
    parser.add_argument("--only", default="", help="comma-separated configuration names")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--precision", choices=tuple(PRECISIONS), default="no",
                        help="no (fp32; +TF32 on CUDA), bf16 or fp16 autocast of the main phases")
    parser.add_argument("--modconv", choices=("auto", "grouped", "activations"), default=None,
                        help="force one modulated-conv path (sets $NANOGAN_MODCONV)")
    parser.add_argument("--channels-last", action="store_true",
                        help="weights and images in NHWC order (torch.channels_last)")
    parser.add_argument("--timeout", type=float, default=None,
                        help="seconds per configuration's subprocess [none]")
    parser.add_argument("--steps", type=int, default=None, help="steps per window [16; paper: 2]")
    parser.add_argument("--windows", type=int, default=None, help="timed windows [3]")
    parser.add_argument("--warmup", type=int, default=None, help="warm-up steps [8; paper: 1]")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=None, help="JSON file to write")
    parser.add_argument("--markdown", action="store_true", help="also print a Markdown table")
    parser.add_argument("--memory-steps", type=int, default=0)
    parser.add_argument("--one", default=None,
                        help="measure this one configuration in this process and print its row "
                             "as JSON (the worker of the other modes; gpu_check.py calls it)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.modconv:
        os.environ["NANOGAN_MODCONV"] = args.modconv  # the subprocesses inherit it
    if args.suite == "modconv":
        rows = modconv_timings(args.device, args.precision, batch=8 if args.device == "cpu" else 32)
        print(json.dumps(rows, indent=1))
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps({"machine": machine(args.device),
                                            "precision": args.precision, "modconv": rows},
                                           indent=2))
        return
    suite_name = args.suite or ("gpu" if args.device == "cuda" else "cpu")
    suite = SUITES[suite_name]
    defaults = SUITE_STEPS[suite_name]
    args.steps, args.windows, args.warmup = (
        default if given is None else given
        for given, default in zip((args.steps, args.windows, args.warmup), defaults))
    if args.steps % 16 and suite_name not in ("paper", "smoke"):
        parser.error("--steps must be a multiple of 16 (R1 runs every 16 steps)")
    if args.one:
        print(json.dumps(measure(args.one, suite, args.device, args.steps, args.windows,
                                 args.warmup, args.precision, args.channels_last)))
        return
    if args.memory_steps:
        result = memory_run(args.memory_steps)
        print(json.dumps(result))
        if args.out:
            args.out.write_text(json.dumps({"machine": machine("cpu"), "memory": result},
                                           indent=2))
        return
    names = [n for n in args.only.split(",") if n] or list(suite)
    results = []
    for name in names:
        if name not in suite:
            parser.error(f"unknown configuration {name!r}; choose from {', '.join(suite)}")
        if suite[name][0] not in models.MODELS:
            results.append({"name": name, "error": f"{suite[name][0]} is not available"})
            continue
        cmd = [sys.executable, __file__, "--one", name, "--device", args.device,
               "--steps", str(args.steps), "--windows", str(args.windows),
               "--warmup", str(args.warmup), "--suite", suite_name,
               "--precision", args.precision]
        if args.threads:
            cmd += ["--threads", str(args.threads)]
        if args.channels_last:
            cmd += ["--channels-last"]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
        except subprocess.TimeoutExpired:
            results.append({"name": name, "precision": args.precision,
                            "error": f"timed out after {args.timeout:g} s"})
            done = None
        if done is not None and done.returncode:
            lines = (done.stderr.strip() or f"exit status {done.returncode}").splitlines()
            results.append({"name": name, "precision": args.precision, "error": lines[-1]})
        elif done is not None:
            results.append(json.loads(done.stdout.strip().splitlines()[-1]))
        r = results[-1]
        print(f"{name}: " + (r["error"] if "error" in r else
                             f"{r['train_img_per_s']:.1f} img/s train, "
                             f"{r['sample_img_per_s']:.0f} img/s sampling, "
                             f"{r['effective_gflop_per_s']:.0f} GFLOP/s"), flush=True)
    info = machine(args.device)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"machine": info, "results": results}, indent=2))
    if args.markdown:
        print(markdown(results, info))


if __name__ == "__main__":
    main()
