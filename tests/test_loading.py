"""nanogan/loading.py: reading a generator for sampling, and the checks of a request against
the model's spec, whose errors name the library's parameters (a caller renames them)."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
import torch
from hypothesis import example, given
from hypothesis import strategies as st

from nanogan import checkpoint, config, loading, models

NAMES = st.from_regex(r"[a-z][a-z_]{0,8}", fullmatch=True)


def loaded(name: str, **changes) -> loading.Loaded:
    """A Loaded for the checks, which read the spec and config only (no weights, no file)."""
    spec = models.SPECS[name]
    cfg = dataclasses.replace(spec.PRESETS["tiny"], **changes)
    return loading.Loaded(Path(f"/runs/{name}.safetensors"), spec, cfg, None,
                          Path("/runs"))


@given(NAMES, NAMES, st.text(max_size=20))
@example("noise_mode", "class", "applies to {braces} kept as written")
def test_worded_renames_each_parameter_and_nothing_else(first, second, problem):
    """A subject's braced names become name(p) and the problem is kept verbatim; without a
    subject the message is "parameter: problem"."""
    def flag(p):
        return "--" + p.replace("_", "-")

    err = loading.SamplingError(first, problem, f"{{{first}}} 0.5 with {{{second}}} walk")
    assert str(err) == f"{first} 0.5 with {second} walk {problem}"
    assert err.worded(flag) == f"{flag(first)} 0.5 with {flag(second)} walk {problem}"
    plain = loading.SamplingError(first, problem)
    assert (str(plain), plain.worded(flag)) == (f"{first}: {problem}", f"{flag(first)}: {problem}")
    assert isinstance(plain, ValueError)


def test_a_folder_reads_its_newest_snapshot_and_keeps_outputs_in_the_folder(tmp_path):
    """load(run folder) reads the file the folder holds (here its only snapshot) and sends
    outputs to the folder; load(file) sends them beside the file. The weights are the saved
    ones, in eval mode."""
    spec = models.SPECS["progan"]
    cfg = dataclasses.replace(spec.PRESETS["tiny"], resolution=8, fmap_base=32, fmap_max=8)
    torch.manual_seed(0)
    G = spec.Generator(cfg)
    run = tmp_path / "run"
    file = run / "snapshots" / "snapshot-000001.safetensors"
    checkpoint.save(file, {"G_ema": G.state_dict()}, kind="model", model="progan",
                    config=config.to_dict(cfg))
    folder, direct = loading.load(run, torch.device("cpu")), loading.load(file)
    assert (folder.path, folder.home, direct.path, direct.home) == (file, run, file, file.parent)
    assert folder.name == "progan" and not folder.G.training
    for name, tensor in G.state_dict().items():
        assert torch.equal(folder.G.state_dict()[name], tensor), name


def test_labels_follow_the_models_classes():
    """A conditional model gets n copies of the label (0 by default); a label outside its
    classes, or any label for an unconditional model, is refused naming "label"."""
    biggan = loaded("biggan", num_classes=3)
    assert torch.equal(loading.labels_for(biggan, None, 2), torch.tensor([0, 0]))
    assert torch.equal(loading.labels_for(biggan, 2, 3), torch.tensor([2, 2, 2]))
    with pytest.raises(loading.SamplingError, match=re.escape("label must be in [0, 3), got 3")):
        loading.labels_for(biggan, 3, 1)
    assert loading.labels_for(loaded("progan"), None, 4) is None
    with pytest.raises(loading.SamplingError, match="^label applies to class-conditional models; "
                       "/runs/progan.safetensors holds an unconditional progan model$") as err:
        loading.labels_for(loaded("progan"), 1, 4)
    assert err.value.parameter == "label"


def test_truncation_follows_the_models_rule():
    """ProGAN has no truncation; BigGAN's threshold must be positive; StyleGAN2's ψ finite. The
    error names the parameter the value came in (e.g. a list of values)."""
    with pytest.raises(loading.SamplingError, match=r"^truncation applies to models with a "
                       r"truncation trick \(biggan, stylegan2\); /runs/progan"):
        loading.check_truncation(loaded("progan"), 0.5)
    loading.check_truncation(loaded("progan"), None)
    loading.check_truncation(loaded("biggan"), 0.04)
    with pytest.raises(loading.SamplingError, match=r"^values 0: biggan's threshold must be > 0"
                       ) as err:
        loading.check_truncation(loaded("biggan"), 0.0, "values")
    assert err.value.worded(str.upper) == str(err.value).replace("values", "VALUES", 1)
    loading.check_truncation(loaded("stylegan2"), -0.5)
    with pytest.raises(loading.SamplingError, match="^truncation nan: stylegan2's ψ must be a "
                       "finite number"):
        loading.check_truncation(loaded("stylegan2"), float("nan"))


def test_noise_options_only_where_the_model_has_noise_inputs():
    assert loading.generate_options(loaded("stylegan2"), None) == {"noise_mode": "const"}
    assert loading.generate_options(loaded("stylegan2"), "none") == {"noise_mode": "none"}
    assert loading.generate_options(loaded("progan"), None) == {}
    with pytest.raises(loading.SamplingError, match=r"^noise_mode applies to models with noise "
                       r"inputs \(stylegan2\)"):
        loading.generate_options(loaded("progan"), "random")


def test_requirements_name_the_models_that_meet_them():
    """A caller's word (a command's name) is kept as written; the message lists the models that
    have what is required."""
    with pytest.raises(loading.SamplingError, match=r"^mix applies to style-based generators "
                       r"with a mapping network \(stylegan2\); /runs/biggan"):
        loading.require_styled(loaded("biggan"), "mix")
    loading.require_styled(loaded("stylegan2"), "mix")
    with pytest.raises(loading.SamplingError, match=re.escape(
            "classes applies to class-conditional models (stylegan2 (trained with labels), "
            "biggan); /runs/stylegan2.safetensors holds a stylegan2 model")) as err:
        loading.require_conditional(loaded("stylegan2"), "classes")
    assert err.value.worded(lambda p: "--" + p) == str(err.value)  # no parameter to rename
    loading.require_conditional(loaded("stylegan2", num_classes=2), "classes")
    assert loading.truncation_rule(loaded("stylegan2")).symbol == "ψ"


def test_a_request_is_checked_as_a_whole():
    """request(): the labels and generate()'s keyword arguments, or the first error."""
    labels, options = loading.request(loaded("stylegan2", num_classes=2), 3, label=1,
                                      truncation=0.7)
    assert torch.equal(labels, torch.ones(3, dtype=torch.long))
    assert options == {"truncation": 0.7, "noise_mode": "const"}
    assert loading.request(loaded("progan"), 2) == (None, {"truncation": None})
    with pytest.raises(loading.SamplingError, match="^truncation applies"):
        loading.request(loaded("progan"), 2, truncation=1.0)
