"""Improved precision and recall (Kynkäänniemi et al. 2019) and density and coverage (Naeem et al.
2020) against explicit references written from the papers' equations."""

import math

import pytest
import torch
from hypothesis import example, given
from hypothesis import strategies as st
from strategies import generator, seeds

from nanogan.precision_recall import density_coverage, manifold_radii, per_real, precision_recall


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


# --- density and coverage (Naeem et al. 2020, §3) --------------------------------------------

def reference_density_coverage(real, fake, k):
    """density = 1/(kM) Σ_j Σ_i 1[Y_j ∈ B(X_i, NND_k(X_i))],
    coverage = 1/N Σ_i 1[∃ j: Y_j ∈ B(X_i, NND_k(X_i))],
    every squared distance an explicit broadcast difference in float64."""
    real, fake = real.double(), fake.double()
    within_real = (real[:, None] - real[None]).square().sum(-1)  # (N, N), exact 0 on the diagonal
    nnd = [sorted(row[j].item() for j in range(len(real)) if j != i)[k - 1]
           for i, row in enumerate(within_real)]  # squared NND_k(X_i), X_i itself left out
    to_fake = (real[:, None] - fake[None]).square().sum(-1)  # (N, M)
    inside = [[to_fake[i, j].item() <= nnd[i] for j in range(len(fake))] for i in range(len(real))]
    density = sum(sum(row) for row in inside) / (k * len(fake))
    coverage = sum(any(row) for row in inside) / len(real)
    return {"density": density, "coverage": coverage}


def grid_cloud(seed, n, d, shift=0):
    """Points on a small integer grid: many equal distances (ties at the ball boundaries) and
    duplicates, all computed exactly in float64."""
    return torch.randint(-2, 3, (n, d), generator=generator(seed)).double() + shift


@given(seed=seeds, n=st.integers(6, 14), m=st.integers(1, 12), d=st.integers(1, 4),
       k=st.integers(1, 5), shift=st.integers(0, 2), grid=st.booleans())
@example(seed=0, n=8, m=5, d=1, k=5, shift=0, grid=True)  # 1-D grid: ties everywhere
@example(seed=3, n=6, m=1, d=2, k=5, shift=1, grid=True)  # n = k + 1 reals, a single fake
@example(seed=1, n=10, m=10, d=3, k=2, shift=0, grid=False)
def test_density_coverage_matches_reference(seed, n, m, d, k, shift, grid):
    make = grid_cloud if grid else cloud
    real, fake = make(seed, n, d), make(seed + 1, m, d, shift)
    assert (density_coverage(real, fake, k=k, batch_size=4)
            == reference_density_coverage(real, fake, k))


@given(seed=seeds, d=st.integers(1, 16), k=st.integers(1, 8))
def test_a_set_covers_itself(seed, d, k):
    """Against itself a set has coverage 1: every real ball holds its own centre."""
    x = cloud(seed, 50, d).float()
    assert density_coverage(x, x.clone(), k=k)["coverage"] == 1.0


@given(seed=seeds)
@example(seed=0)
def test_a_fake_outlier_raises_recall_but_not_coverage(seed):
    """One far fake outlier leaves coverage unchanged, because coverage uses only the real k-NN
    balls, while its own huge k-NN ball takes in a whole missed cluster and raises recall."""
    cluster_a, cluster_b = cloud(seed, 40, 2), cloud(seed + 1, 40, 2, shift=10.0)
    real = torch.cat([cluster_a, cluster_b])
    fake = cloud(seed + 2, 40, 2)  # like cluster a only: cluster b is missed
    with_outlier = torch.cat([fake, torch.full((1, 2), 40.0)])  # nearer b than a, far from both
    before, after = density_coverage(real, fake), density_coverage(real, with_outlier)
    assert before["coverage"] == after["coverage"] <= 0.55
    # the outlier lies in no real ball: the same count of held fakes, over one more fake
    assert after["density"] * 41 == pytest.approx(before["density"] * 40)
    recall_before = precision_recall(real, fake)["recall"]
    recall_after = precision_recall(real, with_outlier)["recall"]
    assert recall_before <= 0.55 and recall_after - recall_before >= 0.5 - 1e-9  # all of b


@given(seed=seeds)
@example(seed=0)
def test_a_contracted_copy_keeps_coverage_but_loses_recall(seed):
    """Fakes pulled halfway to their mean (x → μ + ½(x − μ)), in 32 dimensions, lie inside the
    reals' large k-NN balls (coverage near 1) while their own balls shrink and hold almost no
    real (recall near 0)."""
    real, other = cloud(seed, 100, 32), cloud(seed + 1, 100, 32)
    contracted = other.mean(0) + 0.5 * (other - other.mean(0))
    assert precision_recall(real, other)["recall"] >= 0.4  # uncontracted: not a sampling effect
    assert precision_recall(real, contracted)["recall"] <= 0.05
    assert density_coverage(real, contracted)["coverage"] >= 0.9


@given(seed=seeds)
def test_density_coverage_ignore_batch_size_and_order(seed):
    """Any batch size, and any order of the rows, gives the same density and coverage."""
    real, fake = cloud(seed, 37, 5), cloud(seed + 1, 29, 5, shift=0.7)
    expected = density_coverage(real, fake)
    for batch_size in (1, 4, 29):
        assert density_coverage(real, fake, batch_size=batch_size) == expected
    perm = torch.randperm(37, generator=generator(seed))
    assert density_coverage(real[perm], fake.flip(0), batch_size=5) == expected


@pytest.mark.parametrize("real, fake, k, match", [
    ((5, 2), (10, 2), 5, "n > k"), ((10, 2), (0, 2), 5, "m >= 1"),
    ((10, 2), (10, 3), 5, "feature size"), ((10, 2), (10, 2), 0, "n > k"),
    ((10,), (10, 2), 5, "n > k")])
def test_density_coverage_rejects_bad_features(real, fake, k, match):
    with pytest.raises(ValueError, match=match):
        density_coverage(torch.zeros(real), torch.zeros(fake), k=k)


# --- per real: which reals are recalled and which covered -------------------------------------

@given(seed=seeds, n=st.integers(6, 12), m=st.integers(4, 12), d=st.integers(1, 4),
       k=st.integers(1, 3), shift=st.integers(0, 2), grid=st.booleans())
@example(seed=0, n=8, m=5, d=1, k=3, shift=0, grid=True)  # ties at the balls' edges
@example(seed=2, n=10, m=4, d=3, k=3, shift=1, grid=False)  # m = recall_k + 1 fakes
def test_per_real_matches_reference(seed, n, m, d, k, shift, grid):
    """Real i is recalled iff it lies in some fake's k-NN ball (f(φ_r, Φ_g) of the recall sum),
    covered iff its own (k+1)-NN ball among the reals holds a fake (the coverage sum's term); the
    means are precision_recall's recall and density_coverage's coverage."""
    make = grid_cloud if grid else cloud
    real, fake = make(seed, n, d), make(seed + 1, m, d, shift)
    hits = per_real(real, fake, recall_k=k, coverage_k=k + 1, batch_size=3)
    reals, fakes = real.tolist(), fake.tolist()
    fake_radii, real_radii = reference_radii(fakes, k), reference_radii(reals, k + 1)
    assert hits["recall"].tolist() == [any(math.dist(r, f) <= rf for f, rf in zip(fakes, fake_radii))
                                       for r in reals]
    assert hits["coverage"].tolist() == [any(math.dist(r, f) <= rr for f in fakes)
                                         for r, rr in zip(reals, real_radii)]
    assert hits["recall"].double().mean().item() == precision_recall(real, fake, k=k)["recall"]
    assert (hits["coverage"].double().mean().item()
            == density_coverage(real, fake, k=k + 1)["coverage"])


@pytest.mark.parametrize("real, fake, match", [
    ((5, 2), (10, 2), r"real features \(k: coverage_k\).*n > k"),
    ((10, 2), (3, 2), r"fake features \(k: recall_k\).*n > k"),
    ((10, 2), (10, 3), "feature size")])
def test_per_real_rejects_bad_features(real, fake, match):
    """Recall needs more fakes than recall_k (3), coverage more reals than coverage_k (5); the
    message says which set fell short."""
    with pytest.raises(ValueError, match=match):
        per_real(torch.zeros(real), torch.zeros(fake))


def test_per_real_checks_each_set_against_its_own_k():
    """The reals need only outnumber coverage_k, the fakes only recall_k: 8 reals and 20 fakes
    with recall_k = 10 are a valid pair."""
    real, fake = cloud(0, 8, 2), cloud(1, 20, 2)
    hits = per_real(real, fake, recall_k=10, coverage_k=5)
    assert hits["recall"].shape == hits["coverage"].shape == (8,)
