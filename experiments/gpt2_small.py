"""GPT-2 small (124M parameters) on Tiny Shakespeare bytes: experiments/gpt2.py with no argument
(see its docstring for the command, hardware, runtime and result).

Command:   python -m genjax.train --config experiments/gpt2_small.py --workdir runs/gpt2_small
"""

import importlib.util
import os

_spec = importlib.util.spec_from_file_location(
  "gpt2_config", os.path.join(os.path.dirname(os.path.abspath(__file__)), "gpt2.py")
)
_gpt2 = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_gpt2)


def get_config(arg=None):
  if arg is not None:
    raise _gpt2.C.ConfigError(
      f"experiments/gpt2_small.py takes no argument (experiments/gpt2.py:SIZE does), got {arg!r}."
    )
  return _gpt2.get_config("small")
