"""The README's "Using the pure functions in your own code" blocks run as written, each on its own
(in a fresh namespace, as a reader pastes one), and give what they say."""

import os
import re

import numpy as np

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")


def _blocks():
  text = open(README).read()
  section = text[text.index("## Using the pure functions in your own code") :]
  end = section.find("\n## ", 10)
  section = section if end < 0 else section[:end]
  return re.findall(r"```python\n(.*?)```", section, re.S)


def test_the_pure_function_examples_run_each_on_its_own():
  blocks = _blocks()
  assert len(blocks) == 5
  scopes = []
  for block in blocks:
    scope = {}
    exec(compile(block, README, "exec"), scope)  # noqa: S102 - the README's own code
    scopes.append(scope)
  vae, gan, gpt, diffusion, nnx = scopes
  assert vae["images"].shape == (16, 8, 8, 1) and np.all(np.abs(np.asarray(vae["images"])) <= 1)
  assert np.isfinite(float(vae["metrics"]["loss"])) and float(vae["count"]) == 32
  assert np.isfinite(float(gan["train_metrics"]["d_loss"])) and np.isfinite(float(gan["train_metrics"]["g_loss"]))
  assert gan["images"].shape == (16, 8, 8, 1) and int(gan["state"].step) == 1
  assert gpt["text_ids"].shape == (2, 23) and np.isfinite(float(gpt["loss"]))
  np.testing.assert_array_equal(np.asarray(gpt["text_ids"])[:, :3], [[0, 1, 2], [0, 1, 2]])
  # eval_sums is the loss summed: its mean over the tokens equals the loss of the same batch (no dropout)
  np.testing.assert_allclose(float(gpt["sums"]["loss"]) / float(gpt["count"]), float(gpt["loss"]), rtol=1e-5)
  assert diffusion["samples"].shape == (4, 8, 8, 1) and np.isfinite(float(diffusion["loss"]))
  assert nnx["scores"].shape == (4, 3)
  # genjax's loss on the NNX module's weights is the cross-entropy of the NNX module's own logits
  import optax

  logits, _ = nnx["tagger"].gpt(nnx["tokens"][:, :-1])
  want = optax.softmax_cross_entropy_with_integer_labels(logits, nnx["tokens"][:, 1:]).mean()
  np.testing.assert_allclose(float(nnx["lm_loss"]), float(want), rtol=1e-6)
