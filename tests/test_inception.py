"""The FID Inception port: architecture and key names against the reference, pooling and resizing
against slow references, and loading that refuses anything but the real state dict.

No test needs the real weights (this machine has no internet): files with random values under
the real key names and shapes stand in for pt_inception-2015-12-05-6726825d.pth.
"""

import itertools
import math
import pickle

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from strategies import generator, seeds

from nanogan import inception
from nanogan.inception import (BlockA, BlockB, BlockC, BlockD, BlockE, FIDInceptionV3,
                               load_inception, resize_for_inception, tf_avg_pool)

# The network as pytorch-fid builds it (torchvision's Inception3 with num_classes=1008,
# aux_logits=False and the FID blocks): name -> (in, out, kernel h, kernel w) of every conv.
STEM = {"Conv2d_1a_3x3": (3, 32, 3, 3), "Conv2d_2a_3x3": (32, 32, 3, 3),
        "Conv2d_2b_3x3": (32, 64, 3, 3), "Conv2d_3b_1x1": (64, 80, 1, 1),
        "Conv2d_4a_3x3": (80, 192, 3, 3)}


def block_a(i, pool):
    return {"branch1x1": (i, 64, 1, 1), "branch5x5_1": (i, 48, 1, 1), "branch5x5_2": (48, 64, 5, 5),
            "branch3x3dbl_1": (i, 64, 1, 1), "branch3x3dbl_2": (64, 96, 3, 3),
            "branch3x3dbl_3": (96, 96, 3, 3), "branch_pool": (i, pool, 1, 1)}


def block_b(i):
    return {"branch3x3": (i, 384, 3, 3), "branch3x3dbl_1": (i, 64, 1, 1),
            "branch3x3dbl_2": (64, 96, 3, 3), "branch3x3dbl_3": (96, 96, 3, 3)}


def block_c(i, c):
    return {"branch1x1": (i, 192, 1, 1), "branch7x7_1": (i, c, 1, 1), "branch7x7_2": (c, c, 1, 7),
            "branch7x7_3": (c, 192, 7, 1), "branch7x7dbl_1": (i, c, 1, 1),
            "branch7x7dbl_2": (c, c, 7, 1), "branch7x7dbl_3": (c, c, 1, 7),
            "branch7x7dbl_4": (c, c, 7, 1), "branch7x7dbl_5": (c, 192, 1, 7),
            "branch_pool": (i, 192, 1, 1)}


def block_d(i):
    return {"branch3x3_1": (i, 192, 1, 1), "branch3x3_2": (192, 320, 3, 3),
            "branch7x7x3_1": (i, 192, 1, 1), "branch7x7x3_2": (192, 192, 1, 7),
            "branch7x7x3_3": (192, 192, 7, 1), "branch7x7x3_4": (192, 192, 3, 3)}


def block_e(i):
    return {"branch1x1": (i, 320, 1, 1), "branch3x3_1": (i, 384, 1, 1),
            "branch3x3_2a": (384, 384, 1, 3), "branch3x3_2b": (384, 384, 3, 1),
            "branch3x3dbl_1": (i, 448, 1, 1), "branch3x3dbl_2": (448, 384, 3, 3),
            "branch3x3dbl_3a": (384, 384, 1, 3), "branch3x3dbl_3b": (384, 384, 3, 1),
            "branch_pool": (i, 192, 1, 1)}


BLOCKS = {"Mixed_5b": block_a(192, 32), "Mixed_5c": block_a(256, 64), "Mixed_5d": block_a(288, 64),
          "Mixed_6a": block_b(288), "Mixed_6b": block_c(768, 128), "Mixed_6c": block_c(768, 160),
          "Mixed_6d": block_c(768, 160), "Mixed_6e": block_c(768, 192), "Mixed_7a": block_d(768),
          "Mixed_7b": block_e(1280), "Mixed_7c": block_e(2048)}


def expected_shapes() -> dict[str, tuple[int, ...]]:
    convs = dict(STEM)
    convs.update({f"{block}.{name}": spec for block, specs in BLOCKS.items()
                  for name, spec in specs.items()})
    shapes = {}
    for name, (i, o, kh, kw) in convs.items():
        shapes[f"{name}.conv.weight"] = (o, i, kh, kw)
        for buffer in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{name}.bn.{buffer}"] = (o,)
        shapes[f"{name}.bn.num_batches_tracked"] = ()
    shapes["fc.weight"], shapes["fc.bias"] = (1008, 2048), (1008,)
    return shapes


def random_state(model: torch.nn.Module, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random values under the model's own names: He-scaled convs, plausible BN statistics."""
    g = generator(seed)
    state = {}
    for key, value in model.state_dict().items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(0)
        elif key.endswith("running_var") or key.endswith("bn.weight"):
            state[key] = 0.5 + torch.rand(value.shape, generator=g)
        elif value.ndim >= 2:
            fan_in = value[0].numel()
            state[key] = torch.randn(value.shape, generator=g) * math.sqrt(2 / fan_in)
        else:
            state[key] = 0.1 * torch.randn(value.shape, generator=g)
    return state


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """A .pth with random values, the real key names and shapes, and no BN step counters."""
    state = random_state(FIDInceptionV3())
    path = tmp_path_factory.mktemp("inception") / inception.FILENAME
    torch.save({k: v for k, v in state.items() if "num_batches" not in k}, path)
    return path, state


@pytest.fixture(scope="module")
def model(weights):
    return load_inception(weights[0])


# ---- references written from the definitions -----------------------------------------------

def reference_pool(x, kind):
    """3×3 stride-1 pool over the in-image neighbours only (TensorFlow SAME), float64 loops."""
    b, c, h, w = x.shape
    out = torch.empty(b, c, h, w, dtype=torch.float64)
    for y, z in itertools.product(range(h), range(w)):
        window = x[:, :, max(y - 1, 0): y + 2, max(z - 1, 0): z + 2].double().flatten(2)
        out[:, :, y, z] = window.mean(2) if kind == "avg" else window.amax(2)
    return out


def reference_bilinear(x, size):
    """Half-pixel bilinear resampling: source = (target + ½)·in/out − ½, clamped, then lerp."""
    def taps(n_in):
        src = ((torch.arange(size, dtype=torch.float64) + 0.5) * n_in / size - 0.5).clamp(min=0)
        lo = src.floor().long().clamp(max=n_in - 1)
        return lo, (lo + 1).clamp(max=n_in - 1), src - lo
    (y0, y1, fy), (x0, x1, fx) = taps(x.shape[2]), taps(x.shape[3])
    x = x.double()
    rows = x[:, :, y0] * (1 - fy)[:, None] + x[:, :, y1] * fy[:, None]
    return rows[..., x0] * (1 - fx) + rows[..., x1] * fx


def reference_conv_bn(x, layer):
    """ReLU(γ · (conv(x) − μ) / √(σ² + 0.001) + β) with the running statistics (eval mode)."""
    conv, bn = layer.conv, layer.bn
    y = F.conv2d(x, conv.weight.double(), stride=conv.stride, padding=conv.padding)
    shape = (1, -1, 1, 1)
    std = (bn.running_var.double().view(shape) + 0.001).sqrt()
    y = (y - bn.running_mean.double().view(shape)) / std
    return (y * bn.weight.double().view(shape) + bn.bias.double().view(shape)).relu()


def _randomize(module, seed):
    state = random_state(module, seed)
    module.load_state_dict(state)
    return module.eval()


# ---- tests ------------------------------------------------------------------------------------

def test_keys_and_shapes_match_the_reference_architecture():
    """The state dict has exactly the reference's 566 keys, with the reference's shapes."""
    shapes = {k: tuple(v.shape) for k, v in FIDInceptionV3().state_dict().items()}
    assert shapes == expected_shapes()
    assert len(shapes) == 94 * 6 + 2  # 94 conv+BN layers, then the 1008-way fc
    assert shapes["Mixed_6e.branch7x7dbl_5.conv.weight"] == (192, 192, 1, 7)
    assert shapes["Mixed_7c.branch_pool.conv.weight"] == (192, 2048, 1, 1)


@given(seed=seeds, h=st.integers(1, 5), w=st.integers(1, 5))
def test_tf_avg_pool_matches_reference(seed, h, w):
    x = torch.randn(2, 3, h, w, generator=generator(seed))
    torch.testing.assert_close(tf_avg_pool(x).double(), reference_pool(x, "avg"))


@given(seed=seeds, size=st.sampled_from([(4, 4), (7, 5), (32, 32), (299, 299)]))
def test_resize_matches_reference(seed, size):
    x = torch.rand(2, 1, *size, generator=generator(seed)) * 2 - 1
    out = resize_for_inception(x)
    assert out.shape == (2, 3, 299, 299)
    torch.testing.assert_close(out.double(), reference_bilinear(x, 299).expand(-1, 3, -1, -1),
                               rtol=1e-5, atol=1e-5)


def reference_block(block, x, kind):
    """The reference's wiring of each block type, with reference layers and pools (float64)."""
    f = lambda name, t: reference_conv_bn(t, getattr(block, name))  # noqa: E731
    chain = lambda t, *names: t if not names else chain(f(names[0], t), *names[1:])  # noqa: E731
    x64 = x.double()
    if kind == "A":
        return torch.cat([f("branch1x1", x64), chain(x64, "branch5x5_1", "branch5x5_2"),
                          chain(x64, "branch3x3dbl_1", "branch3x3dbl_2", "branch3x3dbl_3"),
                          f("branch_pool", reference_pool(x, "avg"))], 1)
    if kind == "B":
        return torch.cat([f("branch3x3", x64),
                          chain(x64, "branch3x3dbl_1", "branch3x3dbl_2", "branch3x3dbl_3"),
                          F.max_pool2d(x64, 3, stride=2)], 1)
    if kind == "C":
        return torch.cat([f("branch1x1", x64), chain(x64, *(f"branch7x7_{k}" for k in (1, 2, 3))),
                          chain(x64, *(f"branch7x7dbl_{k}" for k in range(1, 6))),
                          f("branch_pool", reference_pool(x, "avg"))], 1)
    if kind == "D":
        return torch.cat([chain(x64, "branch3x3_1", "branch3x3_2"),
                          chain(x64, *(f"branch7x7x3_{k}" for k in range(1, 5))),
                          F.max_pool2d(x64, 3, stride=2)], 1)
    a = f("branch3x3_1", x64)
    b = chain(x64, "branch3x3dbl_1", "branch3x3dbl_2")
    return torch.cat([f("branch1x1", x64), f("branch3x3_2a", a), f("branch3x3_2b", a),
                      f("branch3x3dbl_3a", b), f("branch3x3dbl_3b", b),
                      f("branch_pool", reference_pool(x, "max" if kind == "E max" else "avg"))], 1)


@pytest.mark.parametrize("kind, make", [
    ("A", lambda: BlockA(6, pool_features=5)), ("B", lambda: BlockB(6)),
    ("C", lambda: BlockC(6, c7=4)), ("D", lambda: BlockD(6)),
    ("E avg", lambda: BlockE(6, pool="avg")), ("E max", lambda: BlockE(6, pool="max"))])
def test_blocks_match_reference(kind, make):
    block = _randomize(make(), seed=3)
    x = torch.randn(2, 6, 5, 5, generator=generator(4))
    with torch.no_grad():
        torch.testing.assert_close(block(x).double(), reference_block(block, x, kind),
                                   rtol=1e-4, atol=1e-4)


def test_pooled_branches_are_the_fid_variants():
    """Mixed_5b–6e and 7b average over valid pixels only; Mixed_7c's pool branch takes the max."""
    model = FIDInceptionV3()
    assert [model.Mixed_7b.pool, model.Mixed_7c.pool] == ["avg", "max"]
    x = torch.ones(1, 2, 4, 4)
    torch.testing.assert_close(tf_avg_pool(x), x)  # zero padding would darken the border


def test_loads_random_weights_and_gives_features_and_logits(model, weights):
    """A file with the real names loads strictly; logits are the pool features times W, no bias."""
    _, state = weights
    for key, value in model.state_dict().items():
        if "num_batches" not in key:
            torch.testing.assert_close(value, state[key])
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    x = torch.rand(1, 1, 32, 32, generator=generator(7)) * 2 - 1
    with torch.no_grad():
        features, logits = model(x)
    assert features.shape == (1, 2048) and logits.shape == (1, 1008)
    assert features.min() >= 0  # an average of ReLU outputs
    torch.testing.assert_close(logits, features @ state["fc.weight"].T)


def test_safetensors_file_loads_the_same(tmp_path, weights):
    from safetensors.torch import save_file

    _, state = weights
    path = tmp_path / "inception.safetensors"
    save_file(state, str(path))
    loaded = load_inception(path).state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in state.items())


def test_features_do_not_depend_on_the_batch(model):
    """In eval mode an image's features are the same alone, in a batch, and on a second call."""
    x = torch.rand(2, 3, 32, 32, generator=generator(8)) * 2 - 1
    with torch.no_grad():
        together, _ = model(x)
        alone = torch.cat([model(x[:1])[0], model(x[1:])[0]])
        again, _ = model(x)
    torch.testing.assert_close(alone, together, rtol=1e-4, atol=1e-5)
    assert torch.equal(again, together)


class Payload:
    def __reduce__(self):  # unpickling this would call print: the restricted loader must refuse
        return (print, ("payload ran",))


@pytest.mark.parametrize("change, message", [
    (lambda s: s.pop("Mixed_6c.branch7x7_2.conv.weight"),
     r"missing keys \(1\): Mixed_6c.branch7x7_2"),
    (lambda s: s.update({"fc.weight": torch.zeros(1000, 2048)}), r"wrong shapes \(1\): fc.weight"),
    (lambda s: s.update({"AuxLogits.fc.weight": torch.zeros(1008, 768)}), r"unexpected keys"),
])
def test_rejects_a_wrong_state_dict(tmp_path, weights, change, message):
    state = dict(weights[1])
    change(state)
    path = tmp_path / "wrong.pth"
    torch.save(state, path)
    with pytest.raises(ValueError, match=message) as err:
        load_inception(path)
    assert "wrong.pth is not the FID Inception weights" in str(err.value)


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("content", ["payload", "list", "garbage", "raw pickle"])
def test_rejects_files_that_are_not_a_state_dict(tmp_path, capsys, content):
    path = tmp_path / "bad.pth"
    if content == "payload":
        torch.save({"fc.weight": Payload()}, path)
    elif content == "list":
        torch.save([torch.zeros(3)], path)
    elif content == "garbage":
        path.write_bytes(b"not a checkpoint at all")
    else:
        path.write_bytes(pickle.dumps(Payload()))
    with pytest.raises(ValueError, match="bad.pth is not the FID Inception weights"):
        load_inception(path)
    assert "payload ran" not in capsys.readouterr().out


def test_missing_file_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv("NANOGAN_INCEPTION", str(tmp_path / "absent.pth"))
    with pytest.raises(FileNotFoundError, match="absent.pth.*releases/download/fid_weights"):
        load_inception()


def test_download_fetches_the_pytorch_fid_release(tmp_path, monkeypatch, weights):
    monkeypatch.delenv("NANOGAN_INCEPTION", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    calls = []

    def fake_fetch(url, dest):
        calls.append((url, dest))
        dest.parent.mkdir(parents=True)
        dest.write_bytes(weights[0].read_bytes())

    monkeypatch.setattr(inception, "fetch", fake_fetch)
    load_inception(download=True)
    load_inception(download=True)  # the second call finds the cached file
    assert calls == [("https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
                      "pt_inception-2015-12-05-6726825d.pth",
                      tmp_path / "nanogan" / "pt_inception-2015-12-05-6726825d.pth")]
