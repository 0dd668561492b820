"""benchmarks/recognisability.py: the classifier-confidence summary of a set of images."""

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks import recognisability as rec  # noqa: E402


def test_confidence_counts_top_probabilities_against_the_thresholds():
    """Rows with top probabilities 0.95, 0.9, 0.6, 0.5 and 0.4: the mean of those, one row above
    0.9 (0.9 itself is not above) and one below 0.5 (0.5 itself is not below)."""
    probs = torch.tensor([[0.95, 0.05, 0.0], [0.9, 0.1, 0.0], [0.2, 0.6, 0.2],
                          [0.5, 0.25, 0.25], [0.3, 0.3, 0.4]])
    result = rec.confidence(probs)
    assert result["mean_top"] == pytest.approx((0.95 + 0.9 + 0.6 + 0.5 + 0.4) / 5)
    assert result["above_0.9"] == pytest.approx(1 / 5)
    assert result["below_0.5"] == pytest.approx(1 / 5)


def test_confidence_of_uniform_and_one_hot_rows():
    """No information: mean 1/k, nothing above 0.9, everything below 0.5; certainty: the reverse."""
    k = 10
    assert rec.confidence(torch.full((4, k), 1 / k)) == pytest.approx(
        {"mean_top": 1 / k, "above_0.9": 0.0, "below_0.5": 1.0})
    assert rec.confidence(torch.eye(k)) == {"mean_top": 1.0, "above_0.9": 1.0, "below_0.5": 0.0}
