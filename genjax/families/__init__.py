"""The four families of generative models (and the classifier that evaluates them), by name."""

import importlib

_MODULES = {
    "vae": "genjax.families.vae",
    "gan": "genjax.families.gan",
    "autoregressive": "genjax.families.autoregressive",
    "diffusion": "genjax.families.diffusion",
    "classifier": "genjax.families.classifier",
}


def names():
  return sorted(_MODULES)


def get(name: str):
  """The family module: it has `Config` and `build(exp, info) -> Family`."""
  if name not in _MODULES:
    import difflib
    close = difflib.get_close_matches(name, _MODULES, n=2)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise ValueError(f"Unknown family {name!r}.{hint} Known families: {', '.join(names())}.")
  return importlib.import_module(_MODULES[name])
