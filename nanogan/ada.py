"""ADA's adaptive controller: raise the augmentation probability p while D overfits, lower it
when it does not, steering the overfitting heuristic r_t toward a target.

Paper: Karras, Aittala, Hellsten, Laine, Lehtinen, Aila (2020), "Training Generative Adversarial
Networks with Limited Data", arXiv:2006.06676, §3. The heuristic is the mean sign of D's outputs
on the training reals (its logits, as D sees them in training: augmented),

    r_t = E[sign(D_train)]        (0: no overfitting, 1: complete overfitting)

accumulated over `interval` = 4 minibatches; then p moves a fixed step toward the target 0.6:

    p ← clamp(p + sign(r_t − 0.6) · N_images / (500 · 1000), 0, 1)

where N_images is the number of reals D saw in those minibatches (batch · interval), so p can go
from 0 to 1 in 500k images (§3 chooses this speed). p starts at 0.
The clamp at 1 is ours: p is a probability (the paper's range for p is [0, 1)).

Every quantity stays a tensor on the training device: `observe` and `update` never read a value
on the host, so the step has no host sync; `update` takes a `reduce` callable for the sums of all
processes. Everything needed to continue exactly — p, r_t, the accumulators and the position in
the interval — is in `state_dict()`.

Shapes: real_logits (b,) or (b, 1); p, rt 0-d.
Lesson: lessons/18_ada_and_diffaugment.md
"""

from __future__ import annotations

from typing import Any, Callable

import torch


class AdaController:
    """ADA's p as a state machine: `observe` D's real logits each D phase, `update` each step."""

    def __init__(self, target: float = 0.6, speed_kimg: float = 500.0, interval: int = 4, *,
                 p: float = 0.0, device: torch.device | str = "cpu",
                 dtype: torch.dtype = torch.float64):
        if not 0 <= target < 1:
            raise ValueError(f"ADA target must be in [0, 1) (the paper's r_t target: 0.6), "
                             f"got {target}")
        if not speed_kimg > 0:
            raise ValueError(f"ADA speed_kimg must be > 0 (the paper: 500, p from 0 to 1 in 500k "
                             f"images), got {speed_kimg}")
        if not (isinstance(interval, int) and interval >= 1):
            raise ValueError(f"ADA interval must be an integer >= 1 (the paper: 4), got {interval}")
        if not 0 <= p <= 1:
            raise ValueError(f"initial p must be in [0, 1], got {p}")
        self.target, self.speed_kimg, self.interval = target, speed_kimg, interval
        # float64 by default: p takes thousands of steps of ~1e-3 and the sign sums stay exact
        # (use float32 on devices without float64, e.g. MPS).
        self.p = torch.full((), p, dtype=dtype, device=device)
        self.rt = torch.zeros((), dtype=dtype, device=device)  # 0 until the first update
        self.signs = torch.zeros((), dtype=dtype, device=device)  # Σ sign(D(x_real)) so far
        self.count = torch.zeros((), dtype=dtype, device=device)  # how many logits so far
        self.steps = 0  # update() calls since the last adjustment
        self.images = 0  # reals seen (all processes) since the last adjustment
        self.observed = False  # whether any logits arrived since the last adjustment

    def observe(self, real_logits: torch.Tensor) -> None:
        """Accumulate the signs of D's logits on this process's (augmented) training reals."""
        self.signs += real_logits.detach().sign().sum().to(self.signs.dtype)
        self.count += real_logits.numel()
        self.observed = True

    def update(self, batch_size: int,
               reduce: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        """Count a training step of `batch_size` reals (global); every `interval` steps, adjust p.

        reduce: sums (or averages) a tensor over processes, e.g. `accelerator.reduce`; it is
        called on every process at the same steps with the 2-vector [Σ sign, count].
        """
        self.steps += 1
        self.images += batch_size
        if self.steps < self.interval:
            return
        if self.observed:
            sums = torch.stack([self.signs, self.count])
            if reduce is not None:
                sums = reduce(sums)
            self.rt = sums[0] / sums[1]
            step = torch.sign(self.rt - self.target) * (self.images / (self.speed_kimg * 1000))
            self.p = (self.p + step).clamp(0, 1)
        self.signs, self.count = torch.zeros_like(self.signs), torch.zeros_like(self.count)
        self.steps, self.images, self.observed = 0, 0, False

    def state_dict(self) -> dict[str, Any]:
        return {"p": self.p.clone(), "rt": self.rt.clone(), "signs": self.signs.clone(),
                "count": self.count.clone(), "steps": self.steps, "images": self.images,
                "observed": self.observed}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name in ("p", "rt", "signs", "count"):
            setattr(self, name, torch.as_tensor(state[name]).to(self.p))
        self.steps, self.images = int(state["steps"]), int(state["images"])
        self.observed = bool(state["observed"])
