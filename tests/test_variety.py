"""benchmarks/variety.py: the five-class control and the per-class grouping of recall and
coverage."""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks import variety  # noqa: E402


class Labelled:
    """A dataset of 1×4×4 images: the first pixel is the label's grey level, the second the
    image's index."""

    def __init__(self, labels):
        self._labels = torch.as_tensor(labels)

    def __len__(self):
        return len(self._labels)

    def labels(self):
        return self._labels

    def __getitem__(self, i):
        image = torch.zeros(1, 4, 4, dtype=torch.uint8)
        image[0, 0, 0], image[0, 0, 1] = int(self._labels[i]) * 20, i
        return image, int(self._labels[i])


def test_five_classes_draws_only_the_first_five_classes_and_each_image_once():
    labels = torch.arange(200) % 10
    data = Labelled(labels)
    picked = variety.five_classes(data, 60)
    grey, index = ((picked[:, 0, 0, :2] + 1) * 127.5).round().long().unbind(1)  # back to uint8
    assert picked.shape == (60, 1, 4, 4)
    assert set((grey // 20).tolist()) == set(range(variety.KEPT))  # all five, nothing else
    assert len(set(index.tolist())) == 60  # no image twice
    assert all(labels[i] < variety.KEPT for i in index.tolist())
    assert torch.equal(variety.five_classes(data, 60), picked)  # a fixed subset


def test_score_groups_each_real_by_its_own_label(monkeypatch):
    """Fakes that are exact copies of the reals of classes 0 and 1, the classes far apart: those
    classes are recalled and covered in full, the others not at all, and the overall figure is
    their share of the reals."""
    gen = torch.Generator().manual_seed(0)
    labels = torch.arange(100) % 10
    centres = torch.eye(10) * 100  # class k around 100·e_k
    reals = centres[labels] + torch.randn(100, 10, generator=gen)
    monkeypatch.setattr(variety, "features",
                        lambda images: {space: images for space in variety.SPACES})
    fakes = reals[labels < 2].clone()
    real = {space: reals for space in variety.SPACES}
    result = variety.score("copies of two classes", fakes, real, labels)
    for space in variety.SPACES:
        for measure in ("recall", "coverage"):
            value = result["values"][f"{space}_{measure}"]
            assert list(value["per_class"].values()) == [1.0, 1.0] + [0.0] * 8
            assert value["all"] == 0.2
