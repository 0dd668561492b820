"""Improved precision and recall (Kynkäänniemi et al. 2019) against an explicit-loop reference."""

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from strategies import generator, seeds

from nanogan.precision_recall import manifold_radii, precision_recall


def reference_radii(points, k):
    """For each point, the k-th smallest distance to the *other* points, one pair at a time."""
    return [sorted(math.dist(p, q) for j, q in enumerate(points) if j != i)[k - 1]
            for i, p in enumerate(points)]


def reference_fraction_inside(points, centres, k):
    """f(φ, Φ) averaged over φ: is φ within some centre's k-NN radius?"""
    radii = reference_radii(centres, k)
    inside = [any(math.dist(p, c) <= r for c, r in zip(centres, radii)) for p in points]
    return sum(inside) / len(points)


def cloud(seed, n, d, shift=0.0):
    return torch.randn(n, d, generator=generator(seed), dtype=torch.float64) + shift


@given(seed=seeds, n=st.integers(5, 12), m=st.integers(5, 12), d=st.integers(1, 4),
       k=st.integers(1, 4), shift=st.floats(0, 2))
def test_matches_reference(seed, n, m, d, k, shift):
    real, fake = cloud(seed, n, d), cloud(seed + 1, m, d, shift)
    result = precision_recall(real, fake, k=k, batch_size=3)
    assert result["precision"] == reference_fraction_inside(fake.tolist(), real.tolist(), k)
    assert result["recall"] == reference_fraction_inside(real.tolist(), fake.tolist(), k)


@given(seed=seeds, n=st.integers(5, 40), k=st.integers(1, 4))
def test_radii_match_reference_and_cdist(seed, n, k):
    x = cloud(seed, n, 3)
    radii = manifold_radii(x, k, batch_size=7)
    torch.testing.assert_close(radii, torch.tensor(reference_radii(x.tolist(), k),
                                                   dtype=torch.float64))
    second = torch.cdist(x, x).topk(k + 1, largest=False).values[:, k]
    torch.testing.assert_close(radii, second)


@given(seed=seeds, d=st.integers(1, 16))
def test_identical_sets_have_full_precision_and_recall(seed, d):
    """A set compared with itself lies entirely on its own manifold: precision = recall = 1."""
    x = cloud(seed, 50, d).float()
    assert precision_recall(x, x.clone()) == {"precision": 1.0, "recall": 1.0}


@given(seed=seeds)
def test_far_away_fakes_have_zero_precision(seed):
    """Fakes far outside every real k-NN ball give precision 0 (and recall 0)."""
    real, fake = cloud(seed, 60, 8), cloud(seed + 1, 60, 8, shift=100.0)
    assert precision_recall(real, fake) == {"precision": 0.0, "recall": 0.0}


@given(seed=seeds)
def test_a_fake_set_covering_part_of_the_reals_loses_recall_only(seed):
    """Fakes copied from one of two real clusters have precision 1 but recall below 1."""
    cluster_a, cluster_b = cloud(seed, 40, 4), cloud(seed + 1, 40, 4, shift=50.0)
    real = torch.cat([cluster_a, cluster_b])
    result = precision_recall(real, cluster_a[:30].clone())
    assert result["precision"] == 1.0
    assert result["recall"] <= 0.5


@given(seed=seeds)
def test_batch_size_and_order_do_not_matter(seed):
    """Any batch size, and any order of the rows, gives the same precision and recall."""
    real, fake = cloud(seed, 37, 5), cloud(seed + 1, 29, 5, shift=0.7)
    expected = precision_recall(real, fake, batch_size=1024)
    for batch_size in (1, 4, 29):
        assert precision_recall(real, fake, batch_size=batch_size) == expected
    perm = torch.randperm(37, generator=generator(seed))
    assert precision_recall(real[perm], fake.flip(0), batch_size=5) == expected


def test_the_ball_boundary_counts_as_inside():
    """A fake exactly at distance NN_k from a real point is on the manifold (the paper's ≤)."""
    real = torch.arange(5.0).view(5, 1)  # k = 1: every radius is exactly 1
    fake = torch.tensor([[5.0], [5.5], [-1.0], [-1.25]])
    assert precision_recall(real, fake, k=1)["precision"] == 0.5


@pytest.mark.parametrize("real, fake, k", [((3, 2), (10, 2), 3), ((10, 2), (10, 3), 3),
                                           ((10, 2), (10, 2), 0)])
def test_rejects_bad_features(real, fake, k):
    with pytest.raises(ValueError, match="n > k|feature size"):
        precision_recall(torch.zeros(real), torch.zeros(fake), k=k)
