"""The four families of generative models (and the classifier that evaluates them, and latent
diffusion's first-stage autoencoder), by name.

The family of an experiment is the one whose model config class `Experiment.model` holds;
`Experiment.family` names it too (it is what config.json records) and must agree.
"""

import difflib
import importlib
from typing import Dict, Tuple

from genjax.config import ConfigError

_MODULES = {
  "vae": "genjax.families.vae",
  "gan": "genjax.families.gan",
  "autoregressive": "genjax.families.autoregressive",
  "diffusion": "genjax.families.diffusion",
  "classifier": "genjax.families.classifier",
  "autoencoder": "genjax.families.autoencoder",
}


def names():
  return sorted(_MODULES)


def get(name: str):
  """The family module: CONFIGS, SAMPLE_OPTIONS and the pure functions of the family contract
  (genjax.families.base)."""
  if name not in _MODULES:
    close = difflib.get_close_matches(name, _MODULES, n=2)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise ConfigError(f"Unknown family {name!r}.{hint} Known families: {', '.join(names())}.")
  return importlib.import_module(_MODULES[name])


def model_classes() -> Dict[str, Tuple[type, ...]]:
  """{family name: its model config classes}, for reading a saved config back."""
  return {name: get(name).CONFIGS for name in _MODULES}


def of(exp):
  """The family module of `exp`, checked against the type of `exp.model` (ConfigError if they
  disagree or the model is not a family's config)."""
  module = get(exp.family)
  if isinstance(exp.model, module.CONFIGS):
    return module
  owner = [name for name, classes in model_classes().items() if isinstance(exp.model, classes)]
  expected = " or ".join(f"{c.__module__}.{c.__name__}" for c in module.CONFIGS)
  if owner:
    raise ConfigError(
      f"config.family = {exp.family!r} but config.model is a {type(exp.model).__name__}, the model config "
      f"of the {owner[0]!r} family. Set --config.family={owner[0]}, or give a {expected}."
    )
  raise ConfigError(
    f"config.model must be the {exp.family} family's model config ({expected}), got {type(exp.model).__name__}."
  )


def module_of(exp):
  """The module of pure functions that serves `exp` (the family contract of
  genjax.families.base): the family's module, or the one its model config picks (the
  autoregressive family's gpt or pixelcnn)."""
  module = of(exp)
  return module.module_for(exp.model) if hasattr(module, "module_for") else module


def build(exp, info, batch_splits: int = 1):
  """The Family of `exp` on data `info` (genjax.families.base.assemble), after checking family
  and model agree. `batch_splits`: the pieces each call's batch is cut into before the step
  function sees it (genjax.core.placement.Placement.batch_splits: one per device when the step
  is mapped over devices, else 1)."""
  from genjax.families import base

  return base.assemble(module_of(exp), exp, info, batch_splits)
