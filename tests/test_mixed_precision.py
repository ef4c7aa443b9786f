"""Mixed precision: parameters and optimizer state stay float32, the matmuls and convolutions run
in bfloat16 (exp.train.compute_dtype), losses come out float32, and a short bfloat16 run
tracks the float32 run's loss curve.

Tolerance of the tracking tests: bfloat16 keeps 8 significant bits (unit round-off 2^-8 ~ 0.4%).
Each matmul rounds its inputs once (accumulation is float32), so one step's loss differs by
O(0.4%); gradients carry the same relative error and the two runs' parameters drift apart
slowly over the steps. Over 30 Adam steps we allow 4% relative difference step by step (10x the
one-step rounding) and 2% on the mean of the last 10 losses. A bfloat16 run that diverged, or a
loss or optimizer update computed in bfloat16, misses these bounds (the float32 loss falls by more
than 20% over the run, so a stalled curve fails too), while the run in float32 vs itself is exact.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax import data as data_lib
from genjax import families
from genjax.config import Data, Experiment, Optim, Train
from genjax.core import step as step_lib
from genjax.data.info import DataInfo
from genjax.families import autoregressive, diffusion, gan, vae

STEPS = 30


def float_leaves(tree):
  return [x for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.floating)]


def run(family, batches, seed=0):
  """STEPS train steps in one compiled scan; returns (losses f32[STEPS], final state)."""
  state = family.init(jax.random.key(seed))
  rngs = jax.vmap(lambda i: jax.random.fold_in(jax.random.key(seed + 1), i))(jnp.arange(STEPS))
  state, metrics = jax.jit(step_lib.scan_steps(family.train_step))(state, batches, rngs)
  return np.asarray(metrics["loss"]), state, metrics


def assert_tracks(losses_bf16, losses_f32):
  assert losses_bf16.dtype == np.float32 and losses_f32.dtype == np.float32
  assert losses_f32[-5:].mean() < 0.8 * losses_f32[:3].mean(), "the float32 run did not learn: no curve to track"
  relative = np.abs(losses_bf16 - losses_f32) / np.abs(losses_f32)
  assert relative.max() < 0.04, relative
  assert abs(losses_bf16[-10:].mean() / losses_f32[-10:].mean() - 1) < 0.02


def assert_float32_state_and_bf16_compute(family, batch):
  state = family.init(jax.random.key(0))
  new_state, metrics = jax.jit(family.train_step)(state, batch, jax.random.key(1))
  for tree in (new_state.params, new_state.opt_state, new_state.ema_params):
    assert all(x.dtype == jnp.float32 for x in float_leaves(tree)), jax.tree.map(lambda x: x.dtype, tree)
  assert all(jnp.asarray(v).dtype == jnp.float32 for v in metrics.values()), metrics
  # The compute really is bfloat16: the heavy ops of the step take bfloat16 operands.
  jaxpr = str(jax.make_jaxpr(family.train_step)(state, batch, jax.random.key(1)))
  heavy = [line for line in jaxpr.splitlines() if "dot_general" in line or "conv_general_dilated" in line]
  assert heavy and sum("bf16[" in line for line in heavy) >= len(heavy) // 2, heavy[:5]


def gpt_experiment(dtype):
  return Experiment(
    name="mp-gpt",
    family="autoregressive",
    model=autoregressive.GPTConfig(num_layers=2, num_heads=2, width=64, dropout=0.0),
    data=Data(name="tiny_shakespeare", block_size=32),
    optim=Optim(name="adamw", learning_rate=3e-3, weight_decay=0.1, grad_clip_norm=1.0, ema_decay=0.99),
    train=Train(steps=STEPS, batch_size=16, compute_dtype=dtype),
  )


def periodic_tokens(vocab=16, batch=16, length=33):
  """A learnable text: rows of 0, 1, ..., vocab-1, 0, 1, ... starting at random offsets, so the
  next token is a function of the current one; the loss falls from log(vocab) towards 0."""
  r = np.random.default_rng(0)
  offsets = r.integers(0, vocab, (STEPS, batch, 1))
  return {"tokens": jnp.asarray((offsets + np.arange(length)) % vocab, jnp.int32)}


def test_gpt_bfloat16_tracks_float32():
  info = DataInfo(name="tiny_shakespeare", kind="text", shape=(32,), vocab_size=16)
  batches = periodic_tokens()
  losses = {}
  for dtype in ("float32", "bfloat16"):
    family = families.build(gpt_experiment(dtype), info)
    losses[dtype], state, _ = run(family, batches)
    assert all(x.dtype == jnp.float32 for x in float_leaves((state.params, state.opt_state, state.ema_params)))
  assert_tracks(losses["bfloat16"], losses["float32"])
  # The same run twice in float32 is identical, so the difference above is bfloat16's.
  again, _, _ = run(families.build(gpt_experiment("float32"), info), batches)
  np.testing.assert_array_equal(again, losses["float32"])


def test_gpt_logits_and_loss_are_float32_under_bfloat16():
  from genjax.families.autoregressive import gpt

  model = gpt.GPT(vocab_size=16, block_size=8, num_layers=1, num_heads=2, width=32, dtype=jnp.bfloat16)
  tokens = jnp.zeros((2, 8), jnp.int32)
  params = model.init(jax.random.key(0), tokens)["params"]
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(params))
  logits, _ = model.apply({"params": params}, tokens)
  assert logits.dtype == jnp.float32
  info = DataInfo(name="tiny_shakespeare", kind="text", shape=(32,), vocab_size=16)
  family = families.build(gpt_experiment("bfloat16"), info)
  assert_float32_state_and_bf16_compute(family, jax.tree.map(lambda x: x[0], periodic_tokens()))


def test_vae_bfloat16_tracks_float32_on_digits():
  dataset = data_lib.load(Data(name="digits"), "train")
  parts = [dataset.batch(s, 32, 0) for s in range(STEPS)]
  batches = {k: jnp.stack([p[k] for p in parts]) for k in parts[0]}
  info = dataset.info
  losses = {}
  for dtype in ("float32", "bfloat16"):
    exp = Experiment(
      name="mp-vae",
      family="vae",
      model=vae.Config(
        architecture="mlp",
        hidden=(128, 128),
        latents=(16,),
        likelihood="logistic",
        num_bins=17,
        eval_samples=10,
        eval_chunk=10,
      ),
      data=Data(name="digits"),
      optim=Optim(learning_rate=3e-3, ema_decay=0.99),
      train=Train(steps=STEPS, batch_size=32, compute_dtype=dtype),
    )
    family = families.build(exp, info)
    losses[dtype], state, _ = run(family, batches)
    if dtype == "bfloat16":
      assert_float32_state_and_bf16_compute(family, parts[0])
  assert_tracks(losses["bfloat16"], losses["float32"])


@pytest.mark.parametrize("name", [pytest.param("diffusion", marks=pytest.mark.slow), "gan"])
def test_conv_families_keep_float32_state_under_bfloat16(name):
  info = DataInfo(name="mnist", kind="image", shape=(8, 8, 1), num_classes=10)
  if name == "diffusion":
    model = diffusion.Config(ch=32, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(4,), dropout=0.1, timesteps=100)
    build = families.build
  else:
    model = gan.Config(arch="dcgan", latent_dim=8, g_widths=(32, 16), d_widths=(16, 32))
    build = families.build
  exp = Experiment(
    name=f"mp-{name}",
    family=name,
    model=model,
    data=Data(name="mnist"),
    optim=Optim(learning_rate=1e-3, ema_decay=0.99),
    train=Train(steps=10, batch_size=8, compute_dtype="bfloat16"),
  )
  family = build(exp, info)
  r = np.random.default_rng(0)
  batch = {
    "image": jnp.asarray(r.uniform(-1, 1, (8, 8, 8, 1)), jnp.float32),
    "label": jnp.asarray(r.integers(0, 10, (8,)), jnp.int32),
  }
  assert_float32_state_and_bf16_compute(family, batch)
  # Normalisation statistics (GroupNorm / BatchNorm running averages) are float32 too.
  assert all(x.dtype == jnp.float32 for x in float_leaves(family.init(jax.random.key(0)).extra))
  assert dataclasses.is_dataclass(exp.model)
