"""The README's "Using the pure functions in your own code" blocks run as written."""

import os
import re

import numpy as np

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")


def test_the_pure_function_examples_run():
  text = open(README).read()
  section = text[text.index("## Using the pure functions in your own code") :]
  blocks = re.findall(r"```python\n(.*?)```", section, re.S)
  assert len(blocks) == 3
  scope = {}
  for block in blocks:
    exec(compile(block, README, "exec"), scope)  # noqa: S102 - the README's own code
  assert scope["images"].shape == (4, 8, 8, 1) and np.all(np.abs(np.asarray(scope["images"])) <= 1)
  assert np.isfinite(float(scope["loss"])) and scope["text_ids"].shape == (2, 23)
  assert np.isfinite(float(scope["d_metrics"]["d_loss"])) and np.isfinite(float(scope["g_metrics"]["g_loss"]))
