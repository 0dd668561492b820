"""Conditional batch normalization (BigGAN §3, Fig. 15b) against a float64 hand-written BatchNorm
and torch's F.batch_norm."""

import functools
import os

import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from hypothesis import given
from hypothesis import strategies as st
from strategies import generator, seeds

from nanogan.conditional_bn import (ConditionalBatchNorm2d, CrossReplicaBatchNorm2d,
                                    scale_and_shift, sync_batchnorm)
from nanogan.spectral_norm import SNLinear

shapes = st.tuples(st.integers(2, 4), st.integers(1, 5), st.integers(1, 3), st.integers(1, 3))
eps_values = st.sampled_from([1e-5, 1e-4])


def reference(x, cond, W_gain, W_bias, eps):
    """x̂ = (x − μ_B)/√(σ²_B + ε) per channel over (b, h, w), biased variance; y = x̂(1 + W_γc) + W_βc."""
    x, cond = x.double(), cond.double()
    y = torch.empty_like(x)
    for ch in range(x.shape[1]):
        values = x[:, ch]
        mean = values.sum() / values.numel()
        var = ((values - mean) ** 2).sum() / values.numel()
        x_hat = (values - mean) / torch.sqrt(var + eps)
        for n in range(x.shape[0]):
            gain = 1 + sum(W_gain.double()[ch, k] * cond[n, k] for k in range(cond.shape[1]))
            bias = sum(W_bias.double()[ch, k] * cond[n, k] for k in range(cond.shape[1]))
            y[n, ch] = x_hat[n] * gain + bias
    return y


def layer_and_inputs(seed, shape, k, eps, dtype=torch.float64):
    with torch.random.fork_rng(devices=[]):
        layer = ConditionalBatchNorm2d(shape[1], k, eps=eps).to(dtype)
    g = generator(seed)
    with torch.no_grad():  # the projections from the generator too
        for linear in (layer.to_gain, layer.to_bias):
            linear.weight.copy_(torch.randn(linear.weight.shape, generator=g, dtype=dtype))
    x = torch.randn(shape, generator=g, dtype=dtype) * 3 + 1
    cond = torch.randn(shape[0], k, generator=g, dtype=dtype)
    return layer, x, cond


@given(seed=seeds, shape=shapes, k=st.integers(1, 4), eps=eps_values)
def test_matches_reference(seed, shape, k, eps):
    layer, x, cond = layer_and_inputs(seed, shape, k, eps)
    expected = reference(x, cond, layer.to_gain.weight, layer.to_bias.weight, eps)
    torch.testing.assert_close(layer(x, cond), expected)


@given(seed=seeds, shape=shapes, k=st.integers(1, 4), eps=eps_values)
def test_matches_torch_batch_norm(seed, shape, k, eps):
    """Training mode is F.batch_norm's normalization with per-sample gains and biases, and the running statistics follow nn.BatchNorm2d's."""
    layer, x, cond = layer_and_inputs(seed, shape, k, eps, torch.float32)
    x_hat = F.batch_norm(x, None, None, training=True, eps=eps)
    expected = x_hat * (1 + cond @ layer.to_gain.weight.T)[:, :, None, None] \
        + (cond @ layer.to_bias.weight.T)[:, :, None, None]
    torch.testing.assert_close(layer(x, cond), expected)
    plain = torch.nn.BatchNorm2d(shape[1], eps=eps, affine=False)
    plain(x)
    torch.testing.assert_close(layer.bn.running_mean, plain.running_mean)
    torch.testing.assert_close(layer.bn.running_var, plain.running_var)


@given(seed=seeds, shape=shapes, k=st.integers(1, 4), train=st.booleans())
def test_zero_projections_are_plain_batch_norm(seed, shape, k, train):
    """With both projections zero the layer is exactly nn.BatchNorm2d(affine=False), in training and in eval mode."""
    layer, x, cond = layer_and_inputs(seed, shape, k, 1e-4, torch.float32)
    with torch.no_grad():
        layer.to_gain.weight.zero_()
        layer.to_bias.weight.zero_()
    plain = torch.nn.BatchNorm2d(shape[1], eps=1e-4, affine=False)
    layer(x, cond), plain(x)  # one training step of running statistics each
    layer.train(train), plain.train(train)
    assert torch.equal(layer(x * 2, cond), plain(x * 2))


@given(seed=seeds, shape=shapes, k=st.integers(1, 4))
def test_gain_is_one_centred_and_bias_zero_centred(seed, shape, k):
    """A zero condition vector leaves the normalized features unchanged: gain 1 + W·0 = 1, bias W·0 = 0."""
    layer, x, _ = layer_and_inputs(seed, shape, k, 1e-4)
    torch.testing.assert_close(layer(x, torch.zeros(shape[0], k, dtype=x.dtype)),
                               F.batch_norm(x, None, None, training=True, eps=1e-4))


@given(seed=seeds, shape=shapes, k=st.integers(1, 4))
def test_eval_output_of_a_sample_depends_only_on_that_sample(seed, shape, k):
    """In eval mode the running statistics replace the batch's, so each sample is normalized on its own."""
    layer, x, cond = layer_and_inputs(seed, shape, k, 1e-4)
    layer(x, cond)
    layer.eval()
    whole = layer(x, cond)
    torch.testing.assert_close(layer(x[:1], cond[:1]), whole[:1])


def small_model():
    torch.manual_seed(0)
    sn_linear = functools.partial(SNLinear, eps=1e-4)
    return torch.nn.ModuleList([ConditionalBatchNorm2d(3, 2, eps=1e-4, linear=sn_linear),
                                torch.nn.BatchNorm2d(3, eps=1e-4)])


def test_sync_batchnorm_swaps_only_the_inner_batchnorm():
    """sync_batchnorm replaces each BatchNorm2d (the conditional layer's inner one too) and keeps
    names, state and single-process outputs."""
    model, reference_model = small_model(), small_model()
    g = generator(1)
    x, cond = torch.randn(4, 3, 2, 2, generator=g), torch.randn(4, 2, generator=g)
    reference_model[0](x, cond)  # one step of running statistics
    model.load_state_dict(reference_model.state_dict())
    synced = sync_batchnorm(model)
    assert isinstance(synced[0], ConditionalBatchNorm2d)
    assert type(synced[0].bn) is CrossReplicaBatchNorm2d
    assert type(synced[1]) is CrossReplicaBatchNorm2d
    assert list(synced.state_dict()) == list(reference_model.state_dict())
    for a, b in zip(synced.state_dict().values(), reference_model.state_dict().values()):
        assert torch.equal(a, b)
    # without a process group it is BatchNorm2d
    torch.testing.assert_close(synced[0](x, cond), reference_model[0](x, cond))
    synced.eval(), reference_model.eval()
    torch.testing.assert_close(synced[0](x, cond), reference_model[0](x, cond))


def _halves_worker(rank: int, folder: str, device: str = "cpu") -> None:
    """One of two gloo processes: sync_batchnorm's CrossReplicaBatchNorm2d on its half of the
    batch, on `device` (gloo accepts CUDA tensors; results saved on the CPU)."""
    torch.set_num_threads(1)
    if device != "cpu":  # full fp32 products, as the CPU reference computes them
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    dist.init_process_group("gloo", init_method=f"file://{folder}/rendezvous", rank=rank,
                            world_size=2)
    inputs = load_file(os.path.join(folder, "inputs.safetensors"), device=device)
    model = with_momentum(sync_batchnorm(small_model()), inputs["momentum"].item())
    assert type(model[1]) is CrossReplicaBatchNorm2d
    model.load_state_dict(load_file(os.path.join(folder, "state.safetensors")))
    model.to(device)
    x = inputs["x"].chunk(2)[rank].clone().requires_grad_()
    cond, weights = inputs["cond"].chunk(2)[rank], inputs["weights"].chunk(2)[rank]
    y = model[1](model[0](x, cond))
    (y * weights).sum().backward()
    grads = torch.cat([p.grad.flatten() for p in model.parameters()])
    dist.all_reduce(grads)  # the whole batch's loss is the sum of the two halves'
    out = {"y": y.detach(), "x_grad": x.grad, "param_grads": grads,
           **{k: v for k, v in model.state_dict().items() if "running" in k}}
    save_file({k: v.detach().cpu().contiguous() for k, v in out.items()},
              os.path.join(folder, f"rank{rank}.safetensors"))
    dist.destroy_process_group()


def with_momentum(model: torch.nn.Module, momentum: float) -> torch.nn.Module:
    """Set every BatchNorm's momentum; a negative number stands for None (cumulative)."""
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.momentum = None if momentum < 0 else momentum
    return model


def check_halves_match_the_whole_batch(folder, momentum: float | None, device: str = "cpu",
                                       **tolerance) -> None:
    """Two gloo processes with half a batch each on `device` against one process with the whole
    batch through plain BatchNorm2d on the CPU: outputs, input and parameter gradients, running
    statistics. CUDA workers are spawned (a forked child cannot use CUDA once the parent has)."""
    g = generator(7)
    code = -1.0 if momentum is None else momentum
    inputs = {"x": torch.randn(8, 3, 2, 2, generator=g) * 2 + 1,
              "cond": torch.randn(8, 2, generator=g),
              "weights": torch.randn(8, 3, 2, 2, generator=g), "momentum": torch.tensor(code)}
    save_file(inputs, str(folder / "inputs.safetensors"))
    whole = with_momentum(small_model(), code)
    save_file(whole.state_dict(), str(folder / "state.safetensors"))
    torch.multiprocessing.start_processes(_halves_worker, args=(str(folder), device), nprocs=2,
                                          start_method="fork" if device == "cpu" else "spawn")
    ranks = [load_file(str(folder / f"rank{r}.safetensors")) for r in range(2)]
    x = inputs["x"].clone().requires_grad_()
    y = whole[1](whole[0](x, inputs["cond"]))
    (y * inputs["weights"]).sum().backward()
    torch.testing.assert_close(torch.cat([r["y"] for r in ranks]), y.detach(), **tolerance)
    torch.testing.assert_close(torch.cat([r["x_grad"] for r in ranks]), x.grad, **tolerance)
    expected = torch.cat([p.grad.flatten() for p in whole.parameters()])
    for r in ranks:
        torch.testing.assert_close(r["param_grads"], expected, **tolerance)
        for k, v in whole.state_dict().items():
            if "running" in k:
                torch.testing.assert_close(r[k], v, msg=k, **tolerance)


@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                    reason="torch.distributed with gloo is not available")
@pytest.mark.parametrize("momentum", [0.1, None])
def test_two_processes_normalize_with_the_whole_batch(tmp_path, momentum):
    """Two processes with half a batch each get the outputs, gradients and running statistics of one process with the whole batch (momentum None: BigGAN's cumulative standing statistics)."""
    check_halves_match_the_whole_batch(tmp_path, momentum)


def test_gradcheck():
    layer, x, cond = layer_and_inputs(3, (3, 2, 2, 2), 2, 1e-4)
    x.requires_grad_(), cond.requires_grad_()
    assert torch.autograd.gradcheck(layer, (x, cond))
    g = generator(4)
    gain, bias = (torch.rand(3, 2, generator=g, dtype=torch.float64).requires_grad_()
                  for _ in range(2))
    assert torch.autograd.gradcheck(scale_and_shift, (x, gain, bias))


def test_rejects_bad_condition():
    layer = ConditionalBatchNorm2d(3, 4)
    with pytest.raises(ValueError, match=r"cond of shape \(2, 4\)"):
        layer(torch.zeros(2, 3, 2, 2), torch.zeros(2, 5))
    with pytest.raises(ValueError, match="gain and bias of shape"):
        scale_and_shift(torch.zeros(2, 3, 1, 1), torch.zeros(2, 4), torch.zeros(2, 3))
