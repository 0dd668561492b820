"""The contract between the training loop and a model: networks, optimizers, one step, state.

A model file (`progan.py`, `stylegan2.py`, `biggan.py`) subclasses `Recipe`: `build()` creates
`G`, `D`, the EMA generator `G_ema` and the optimizers `opt_G`, `opt_D`; `train_step(reals,
labels)` runs one iteration of the paper's schedule and returns its losses. The loop
(`trainer.build_recipe`) hands G, D and the optimizers to `accelerate.prepare` and assigns the
prepared objects back; a recipe calls `unwrap(self.D)` where the distributed wrapper must be
bypassed (the G phase reads D without training it) and passes every loss to `self.backward`
(Accelerate's, for mixed precision).

Everything a run needs to continue exactly is in `state_dict()`: weights, optimizer moments,
counters and the model's own progress (fade stage, path-length mean, …). Randomness needs no
state: `self.draws()` is a pure function of (seed, step), see `randomness.py`.

Augmentation (`cfg.augment`, one of AUGMENTS): every image D sees in training goes through
`self.aug(x, draws, tag, i)` — ADA's `bgc` pipeline with the probability `self.ada.p` that the
controller adapts (Karras et al. 2020, arXiv:2006.06676, §2.3 and §3), or DiffAugment's fixed
policy (Zhao et al. 2020, arXiv:2006.10738) — and with "none" the image itself. The controller
is part of the state (`state_dict()["extra"]["ada"]`), so resume stays exact.

Lesson: lessons/00_reading_this_repo.md
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, ContextManager

import torch
import torch.distributed as dist
from torch import nn

from nanogan.ada import AdaController
from nanogan.augment import augment
from nanogan.config import ConfigError
from nanogan.diffaugment import diff_augment
from nanogan.randomness import Draws

AUGMENTS = ("none", "ada", "diffaugment")


def check_augment(cfg: Any) -> None:
    """Refuse an unknown `augment` or ADA settings outside the controller's range (ADA §3)."""
    kind = getattr(cfg, "augment", "none")
    if kind not in AUGMENTS:
        raise ConfigError(f"augment must be one of {', '.join(AUGMENTS)}, got {kind!r}")
    if kind != "ada":
        return
    if not 0 <= cfg.ada_target < 1:
        raise ConfigError(f"ada_target must be in [0, 1) (ADA §3: 0.6), got {cfg.ada_target}")
    if not cfg.ada_kimg > 0:
        raise ConfigError(f"ada_kimg must be > 0 (ADA §3: 500, p from 0 to 1 in 500k images), "
                          f"got {cfg.ada_kimg}")
    if cfg.ada_interval < 1:
        raise ConfigError(f"ada_interval must be >= 1 (ADA §3: 4), got {cfg.ada_interval}")


def unwrap(module: nn.Module) -> nn.Module:
    """The plain module inside DistributedDataParallel and/or torch.compile wrappers."""
    while True:
        if hasattr(module, "_orig_mod"):
            module = module._orig_mod
        elif isinstance(module, nn.parallel.DistributedDataParallel):
            module = module.module
        else:
            return module


class Recipe:
    """How a GAN trains. Subclasses set `name`, `Config`, and implement build and train_step."""

    name: str = ""
    accumulates: bool = False  # its phases go through `optimize`, so grad_accum > 1 works

    def __init__(self, cfg: Any, *, seed: int = 0, rank: int = 0, world: int = 1,
                 device: torch.device | str = "cpu",
                 backward: Callable[[torch.Tensor], None] | None = None,
                 autocast: Callable[[], ContextManager] | None = None, accumulate: int = 1):
        self.cfg, self.seed, self.rank, self.world = cfg, seed, rank, world
        self.device = torch.device(device)
        self.backward = backward or (lambda loss: loss.backward())
        self.autocast = autocast or contextlib.nullcontext  # mixed precision for main phases
        if accumulate < 1 or cfg.batch_size % (world * accumulate):
            raise ConfigError(f"batch_size {cfg.batch_size} must split into {world} processes × "
                              f"{accumulate} micro-batches")
        if accumulate > 1 and not self.accumulates:
            raise ConfigError(f"{self.name} does not support gradient accumulation yet")
        self.accumulate = accumulate
        check_augment(cfg)
        self.augment = getattr(cfg, "augment", "none")
        self.ada: AdaController | None = None
        if self.augment == "ada":  # float64 p and sums, except where the device has no float64
            self.ada = AdaController(cfg.ada_target, cfg.ada_kimg, cfg.ada_interval,
                                     device=self.device, dtype=torch.float32
                                     if self.device.type == "mps" else torch.float64)
        self.step = 0  # training iterations done
        self.images_seen = 0  # real images shown to D, summed over processes
        self.G: nn.Module
        self.D: nn.Module
        self.G_ema: nn.Module
        self.opt_G: torch.optim.Optimizer
        self.opt_D: torch.optim.Optimizer
        self.build()

    # -- to implement -------------------------------------------------------------------------
    def build(self) -> None:
        raise NotImplementedError

    def train_step(self, reals: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """One iteration on this process's share of the batch; returns detached scalars."""
        raise NotImplementedError

    def extra_state(self) -> dict[str, Any]:
        """Model-specific progress that is not in a module or optimizer (JSON scalars/tensors)."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        pass

    def diagnostics(self) -> dict[str, float]:
        """The model's state now, for the log (ProGAN: resolution and α; BigGAN: every layer's
        top singular value; with ADA, p and r_t). Names without a "/" are also shown on the
        progress bar. Models extend `super().diagnostics()`."""
        if self.ada is None:
            return {}
        return {"ada_p": self.ada.p.item(), "ada_rt": self.ada.rt.item()}  # log ticks only

    def before_sampling(self, final: bool = False) -> None:
        """Prepare G_ema for sampling (BigGAN: standing BatchNorm statistics; `final` for the
        files a run ends with, which may take more work than a grid on the way)."""

    def sampling_view(self) -> dict[str, Any]:
        """Keyword arguments for `generate` that show the model as it trains now."""
        return {}

    # -- shared -------------------------------------------------------------------------------
    @property
    def batch_per_step(self) -> int:
        """Real images one `train_step` consumes, over all processes."""
        return self.cfg.batch_size

    def draws(self) -> Draws:
        return Draws(self.seed, self.step, rank=self.rank, world=self.world, device=self.device)

    def optimize(self, opt: torch.optim.Optimizer, net: nn.Module,
                 loss_of: Callable[[int], torch.Tensor]) -> torch.Tensor:
        """One optimizer step on the mean of `loss_of(i)` over the micro-batches i.

        Gradients accumulate over `self.accumulate` micro-batches (each loss scaled by 1/n, so
        the step equals one on the whole batch when the losses are batch means); DDP averages
        them over processes once, on the last micro-batch. Returns the mean loss, detached.
        """
        opt.zero_grad(set_to_none=True)
        total = torch.zeros((), device=self.device)
        for i in range(self.accumulate):
            last = i == self.accumulate - 1
            quiet = net.no_sync() if hasattr(net, "no_sync") and not last else contextlib.nullcontext()
            with quiet:
                loss = loss_of(i)
                self.backward(loss / self.accumulate)
            total += loss.detach().float()
        opt.step()
        return total / self.accumulate

    def tally(self, stats: dict, name: str, value: torch.Tensor, steps: int = 1) -> None:
        """Add a micro-batch's `value` to stats[name] so that it ends as the mean over the
        micro-batches (and over `steps` repeats of the phase in one train_step)."""
        stats[name] = stats.get(name, 0) + value.detach().float() / (self.accumulate * steps)

    def check_minibatch_groups(self, group: int) -> None:
        """Refuse a micro-batch that is not whole minibatch-std groups (ProGAN §3, StyleGAN2).

        Each process's D sees batch_size / (world · accumulate) images at a time; if that is not
        a multiple of the group, `minibatch_std` would form other (or smaller) groups than one
        process with the whole batch, and training would depend on the number of processes.
        """
        parts = self.world * self.accumulate
        micro = self.cfg.batch_size // parts
        if micro % group == 0:
            return
        step = group * parts
        works = ", ".join(str(step * k) for k in range(1, 4))
        raise ConfigError(
            f"the per-process batch {micro} (batch_size {self.cfg.batch_size} / ({self.world} "
            f"processes × {self.accumulate} accumulated micro-batches)) is not a multiple of the "
            f"minibatch-std group size {group}, so D would see other groups than in a "
            f"one-process run; use a batch_size that is a multiple of {step} ({works}, …), "
            f"fewer processes or micro-batches, or mbstd_group=N with N dividing {micro}")

    def aug(self, x: torch.Tensor, draws: Draws, tag: str, i: int = 0) -> torch.Tensor:
        """Micro-batch i of this process's images x as D sees them: augmented by `cfg.augment`.

        The draws are named by `tag` (one name per place D looks: "D_real", "D_fake", "G", "R1",
        …) and made for the global batch, so N processes × n micro-batches augment exactly as
        one process with the whole batch. "none" returns x itself.
        """
        if self.augment == "none":
            return x
        g = draws.generator(f"augment_{tag}")
        part, parts = self.rank * self.accumulate + i, self.world * self.accumulate
        if self.augment == "ada":
            return augment(x, self.ada.p, g, rank=part, world=parts)
        return diff_augment(x, g, rank=part, world=parts)

    def observe_reals(self, real_logits: torch.Tensor) -> None:
        """ADA: count the signs of D's logits on the (augmented) training reals (r_t, §3)."""
        if self.ada is not None:
            self.ada.observe(real_logits)

    def adapt(self, batch: int) -> None:
        """ADA: one D minibatch of `batch` reals (global) is done; every interval, p moves."""
        if self.ada is not None:
            self.ada.update(batch, reduce=self.mean_over_processes)

    def micro(self, x: torch.Tensor | None, i: int) -> torch.Tensor | None:
        """Micro-batch i of this process's share of a batch (None stays None)."""
        return None if x is None else x.chunk(self.accumulate)[i]

    def mean_over_processes(self, x: torch.Tensor) -> torch.Tensor:
        """The mean of a (detached) tensor over all processes: running statistics stay equal."""
        if self.world > 1 and dist.is_available() and dist.is_initialized():
            x = x.clone()
            dist.all_reduce(x)
            x /= self.world
        return x

    def state_dict(self) -> dict[str, Any]:
        extra = self.extra_state()
        if self.ada is not None:
            extra = extra | {"ada": self.ada.state_dict()}
        return {
            "G": unwrap(self.G).state_dict(),
            "D": unwrap(self.D).state_dict(),
            "G_ema": self.G_ema.state_dict(),
            "opt_G": self.opt_G.state_dict(),
            "opt_D": self.opt_D.state_dict(),
            "progress": {"step": self.step, "images_seen": self.images_seen, "seed": self.seed},
            "extra": extra,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        unwrap(self.G).load_state_dict(state["G"])
        unwrap(self.D).load_state_dict(state["D"])
        self.G_ema.load_state_dict(state["G_ema"])
        self.opt_G.load_state_dict(state["opt_G"])
        self.opt_D.load_state_dict(state["opt_D"])
        progress = state["progress"]
        self.step, self.images_seen = progress["step"], progress["images_seen"]
        self.seed = progress["seed"]
        extra = state.get("extra", {})
        self.load_extra_state(extra)
        if self.ada is not None and "ada" in extra:  # else (a run without ADA before): p = 0
            self.ada.load_state_dict(extra["ada"])


def step_counts_on_host(opt: torch.optim.Optimizer) -> None:
    """Adam's step counts back on the CPU where Accelerate moved a loaded state to the device.

    torch's Adam (neither `capturable` nor `fused`) keeps each parameter's step count as a CPU
    tensor and reads it as a number in every update; a count on the GPU makes that read a device
    sync per parameter, every step. A fresh optimizer has its counts on the CPU, and
    `load_state_dict` leaves them where the checkpoint has them (on the CPU), but a resumed run
    loads the state before Accelerate's `prepare`, which moves the optimizer's whole state to
    the device. Called after it (trainer.build_recipe); tested in test_trainer.py on train.py's
    path."""
    for group in opt.param_groups:
        if group.get("capturable") or group.get("fused"):
            continue  # these count on the device by design
        for p in group["params"]:
            step = opt.state.get(p, {}).get("step")
            if isinstance(step, torch.Tensor) and step.device.type != "cpu":
                opt.state[p]["step"] = step.cpu()


def reset_optimizer(opt: torch.optim.Optimizer) -> None:
    """Forget Adam's moments and step counts (ProGAN resets them at every new resolution)."""
    opt.state.clear()


def set_requires_grad(module: nn.Module, flag: bool) -> None:
    for p in module.parameters():
        p.requires_grad_(flag)
