"""Inception score: how confident the classifier is on each image and how spread its classes are.

Paper: Salimans, Goodfellow, Zaremba, Cheung, Radford, Chen (2016), "Improved Techniques for
Training GANs", arXiv:1606.03498, §4 ("Inception score"; 50,000 images, and the authors' code
scores 10 splits and reports their mean and standard deviation).

    IS = exp(E_x KL(p(y|x) ‖ p(y))),   p(y) = E_x p(y|x)

Both expectations run over one split: the n rows are cut into `splits` consecutive parts at
i·n // splits (sizes differ by at most one), each part gets its own marginal p(y) and score, and
the result is the mean and the population standard deviation of the part scores. IS lies in
[1, K] for K classes: 1 when every p(y|x) is the marginal, K when each image is one class with
certainty and the classes are balanced.

Shapes: probs (n, k) -> (mean, std).
Lesson: lessons/30_evaluation.md
"""

from __future__ import annotations

import torch


def inception_score(probs: torch.Tensor, *, splits: int = 10) -> tuple[float, float]:
    """Mean and std over `splits` consecutive parts of exp(mean KL(p(y|x) ‖ p(y)))."""
    if probs.dim() != 2 or probs.shape[1] < 1 or not 1 <= splits <= probs.shape[0]:
        raise ValueError(f"need probs (n, k) with k >= 1 and 1 <= splits <= n, got "
                         f"{tuple(probs.shape)} and splits = {splits}")
    p = probs.double()
    if (p < 0).any() or not torch.allclose(p.sum(1), torch.ones_like(p[:, 0]), atol=1e-4):
        raise ValueError("probs must be class probabilities: non-negative rows that sum to 1")
    n = p.shape[0]
    scores = []
    for i in range(splits):
        part = p[i * n // splits : (i + 1) * n // splits]
        marginal = part.mean(0)
        # xlogy: 0·log 0 = 0, so classes an image never predicts add nothing (not NaN)
        kl = (torch.xlogy(part, part) - torch.xlogy(part, marginal)).sum(1)
        scores.append(kl.mean().exp())
    scores = torch.stack(scores)
    return scores.mean().item(), scores.std(unbiased=False).item()
