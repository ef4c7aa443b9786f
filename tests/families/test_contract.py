"""The family contract (genjax.families.base): every family module exposes the same names with the
same signatures, so that one assembler binds any of them and a new family is a module like these."""

import dataclasses
import inspect

import pytest

from genjax.families import autoencoder, base, classifier, diffusion, gan, vae
from genjax.families.autoregressive import gpt, pixelcnn

MODULES = {
  "vae": vae,
  "gan": gan,
  "diffusion": diffusion,
  "gpt": gpt,
  "pixelcnn": pixelcnn,
  "classifier": classifier,
  "autoencoder": autoencoder,
}

# name -> the leading parameters every family's function takes, in order
REQUIRED = {
  "make_model": ("cfg", "info", "dtype"),
  "init": ("rng", "model"),
  "updates": ("model",),
  "eval_sums": ("variables", "batch", "rng", "model"),
  "sample": ("variables", "rng", "n", "model", "options"),
}
OPTIONAL = {
  "evaluate": ("variables", "batches", "rng", "model"),
  "pictures": ("variables", "batch", "rng", "model", "n"),
  "optimizers": ("exp", "model"),
  "finish": ("model",),
  "check": ("exp", "info", "batch_splits"),
  "resolve_options": ("options", "model", "exp", "info"),
  "evaluates": ("exp",),
  "decode_text": ("ids", "info"),
  "notes": ("exp", "model"),
  "prepare": ("batch", "rng"),
}


def _leading(fn, n):
  return tuple(inspect.signature(fn).parameters)[:n]


@pytest.mark.parametrize("name", sorted(MODULES))
def test_every_family_module_keeps_the_contract(name):
  module = MODULES[name]
  assert isinstance(module.CONFIGS, tuple) and module.CONFIGS
  assert dataclasses.is_dataclass(module.SampleOptions) and module.SampleOptions.__dataclass_params__.frozen
  for fn, params in REQUIRED.items():
    assert _leading(getattr(module, fn), len(params)) == params, f"{name}.{fn}"
  # `sample` defaults its options, so `sample(variables, rng, n, model)` works for every family
  assert inspect.signature(module.sample).parameters["options"].default is not inspect.Parameter.empty
  for fn, params in OPTIONAL.items():
    if hasattr(module, fn):
      assert _leading(getattr(module, fn), len(params)) == params, f"{name}.{fn}"
  for constant, default in base.DEFAULTS.items():
    if constant.isupper():
      assert type(getattr(module, constant, default)) is type(default) or default is None, f"{name}.{constant}"
  assert getattr(module, "OUTPUT", "image") in ("image", "text", "none")
  assert not hasattr(module, "build"), f"{name} has its own build: the one assembler is base.assemble"


def test_the_family_dataclass_says_its_field_types():
  hints = {f.name: f.type for f in dataclasses.fields(base.Family)}
  assert all(t is not None and t != "Any" for t in hints.values()), hints
  assert "Callable" in str(hints["train_step"]) and "TrainState" in str(hints["init"])
