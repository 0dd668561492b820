"""Inception score (Salimans et al. 2016) against a float64 loop reference."""

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from strategies import generator, seeds

from nanogan.inception_score import inception_score


def reference_score(rows):
    """exp(1/n Σ_x Σ_y p(y|x) (log p(y|x) − log p(y))), with 0·log 0 = 0."""
    n, k = len(rows), len(rows[0])
    marginal = [sum(r[y] for r in rows) / n for y in range(k)]
    kl = [sum(r[y] * (math.log(r[y]) - math.log(marginal[y])) for y in range(k) if r[y] > 0)
          for r in rows]
    return math.exp(sum(kl) / n)


def reference_inception_score(probs, splits):
    """Score each consecutive part [i·n/splits, (i+1)·n/splits); mean and population std."""
    rows, n = probs.tolist(), len(probs)
    scores = [reference_score(rows[i * n // splits : (i + 1) * n // splits]) for i in range(splits)]
    mean = sum(scores) / splits
    return mean, math.sqrt(sum((s - mean) ** 2 for s in scores) / splits)


def random_probs(seed, n, k, temperature=1.0):
    logits = torch.randn(n, k, generator=generator(seed), dtype=torch.float64) / temperature
    return logits.softmax(1)


@given(seed=seeds, n=st.integers(1, 40), k=st.integers(1, 12), data=st.data(),
       temperature=st.sampled_from([0.1, 1.0, 10.0]))
def test_matches_reference(seed, n, k, data, temperature):
    splits = data.draw(st.integers(1, n))
    probs = random_probs(seed, n, k, temperature)
    mean, std = inception_score(probs, splits=splits)
    ref_mean, ref_std = reference_inception_score(probs, splits)
    assert mean == pytest.approx(ref_mean, rel=1e-9)
    assert std == pytest.approx(ref_std, rel=1e-6, abs=1e-9)


@given(n=st.integers(1, 50), k=st.integers(1, 20))
def test_uniform_predictions_score_one(n, k):
    """When every image gets the uniform class distribution, p(y|x) = p(y) and IS = 1."""
    mean, std = inception_score(torch.full((n, k), 1.0 / k), splits=1)
    assert mean == pytest.approx(1.0) and std == 0.0


@given(k=st.integers(1, 12), per_class=st.integers(1, 4), splits=st.integers(1, 5))
def test_confident_balanced_predictions_score_the_number_of_classes(k, per_class, splits):
    """One-hot predictions that use all K classes equally often in every split score exactly K."""
    labels = torch.arange(k).repeat(per_class * splits)
    mean, std = inception_score(torch.eye(k)[labels], splits=splits)
    assert mean == pytest.approx(k) and std == pytest.approx(0.0, abs=1e-9)


@given(seed=seeds, n=st.integers(2, 30), data=st.data())
def test_splits_are_consecutive_parts(seed, n, data):
    """The score of s splits is the mean of the one-split scores of the parts cut at i·n // s."""
    splits = data.draw(st.integers(1, n))
    probs = random_probs(seed, n, 5)
    parts = [inception_score(probs[i * n // splits : (i + 1) * n // splits], splits=1)[0]
             for i in range(splits)]
    assert inception_score(probs, splits=splits)[0] == pytest.approx(sum(parts) / splits)
    perm = torch.randperm(n, generator=generator(seed))  # one split: the row order is irrelevant
    assert inception_score(probs[perm], splits=1)[0] == pytest.approx(
        inception_score(probs, splits=1)[0])


def test_more_confident_and_more_varied_scores_higher():
    """IS grows with confidence (for balanced classes) and with the number of classes used."""
    labels = torch.arange(10).repeat(20)
    soft = [inception_score((torch.eye(10)[labels] * s + (1 - s) / 10), splits=2)[0]
            for s in (0.0, 0.5, 0.9, 1.0)]
    assert all(a < b for a, b in zip(soft, soft[1:]))
    three_classes = torch.eye(10)[torch.arange(3).repeat(20)]
    assert inception_score(three_classes, splits=2)[0] == pytest.approx(3.0)


@pytest.mark.parametrize("probs, splits", [(torch.full((4, 3), 1 / 3), 5),
                                           (torch.full((4, 3), 0.5), 1),
                                           (torch.tensor([[1.5, -0.5]]), 1)])
def test_rejects_bad_input(probs, splits):
    with pytest.raises(ValueError, match="splits|probabilities"):
        inception_score(probs, splits=splits)
