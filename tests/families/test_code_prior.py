"""Two-stage generation (genjax.families.autoregressive.code_prior): a GPT prior over the codes of a
VQ-VAE run read from its workdir. Against independent computations: the bound is the VQ-VAE's own
reconstruction plus the code NLL that numpy computes from the GPT's logits over the raster-ordered
codes behind the start token; training moves the GPT and leaves the VQ-VAE bit-identical; the
start token is never drawn; samples are the VQ-VAE's decoding of the drawn codes; bad settings are
one paragraph before anything compiles."""

import dataclasses
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax import config as config_lib
from genjax import families
from genjax.config import ConfigError, Data, Experiment, Optim, Train
from genjax.core.checkpoint import Checkpoints
from genjax.data.info import DataInfo
from genjax.errors import MissingError
from genjax.families import vqvae
from genjax.families.autoregressive import code_prior
from genjax.families.autoregressive.code_prior import CodePriorConfig
from genjax.trainer import workdir as workdir_lib
from tests.families.test_vqvae import grey_batch, tiny_exp

GREY = DataInfo("grey", "image", (8, 8, 1))  # 8x8 images -> a 2x2 grid of K = 16 codes
K = 16


@pytest.fixture(scope="module")
def vq_run(tmp_path_factory):
  """A VQ-VAE run's workdir (config.json, one checkpoint) trained 40 steps on the grey prototypes,
  and the variables it saved."""
  exp = dataclasses.replace(tiny_exp(), data=Data(name="grey"), name="tiny_vqvae")
  fam = families.build(exp, GREY)
  state = fam.init(jax.random.key(0))
  step = jax.jit(fam.train_step)
  for i in range(40):
    state, _ = step(state, grey_batch(16, seed=i), jax.random.key(i))
  path = str(tmp_path_factory.mktemp("vq_run"))
  workdir_lib.write_config(path, exp)
  checkpoints = Checkpoints(path, async_save=False)
  checkpoints.save(40, state, {"step": 40})
  checkpoints.close()
  return path, jax.device_get(state.variables())


def prior_exp(path, **model):
  cfg = dict(num_layers=2, num_heads=2, width=32, vqvae=path, **model)
  return Experiment(
    name="tiny_prior",
    family="autoregressive",
    model=CodePriorConfig(**cfg),
    data=Data(name="grey"),
    optim=Optim(name="adamw", learning_rate=3e-3),
    train=Train(steps=30, batch_size=16),
  )


def test_the_bound_is_the_vqvaes_reconstruction_plus_the_code_nll_numpy_computes(vq_run):
  path, saved = vq_run
  exp = prior_exp(path)
  assert config_lib.from_dict(config_lib.to_dict(exp), families.model_classes()) == exp  # config.json round trip
  assert families.module_of(exp) is code_prior
  fam = families.build(exp, GREY)
  state = fam.init(jax.random.key(3))
  for a, b in zip(jax.tree.leaves(state.extra["vqvae"]), jax.tree.leaves(saved)):  # the run's weights, as saved
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert state.ema_params is None or "vqvae" not in (state.ema_extra or {})

  x = grey_batch(6, seed=123)["image"]
  out = fam.evaluate(state, [{"image": x, "mask": np.ones(6, np.float32)}], None)

  # Independently: each image's nearest codes (numpy, from the VQ-VAE's encoder outputs) in raster
  # order behind the start token K, the GPT's logits on all but the last token, numpy's log-softmax.
  vq_model = vqvae.make_model(tiny_exp().model, GREY)
  z = np.asarray(vqvae.encode(saved["params"], jnp.asarray(x), vq_model), np.float64)  # [6,2,2,4]
  book = np.asarray(saved["vq"]["codebook"], np.float64)
  codes = np.argmin(((z[..., None, :] - book) ** 2).sum(-1), axis=-1).reshape(6, 4)
  tokens = np.concatenate([np.full((6, 1), K), codes], axis=1)
  model = code_prior.make_model(exp.model, GREY)
  logits, _ = model.gpt.apply({"params": state.params}, jnp.asarray(tokens[:, :-1], jnp.int32))
  logits = np.asarray(logits, np.float64)
  log_p = logits - logits.max(-1, keepdims=True)
  log_p -= np.log(np.exp(log_p).sum(-1, keepdims=True))
  prior_nats = -np.take_along_axis(log_p, codes[..., None], -1)[..., 0].sum(1)  # [6]
  recon = np.asarray(vqvae.bound_terms(saved, jnp.asarray(x), vq_model)["recon_nats"], np.float64)

  np.testing.assert_allclose(out["prior_nats"], prior_nats.mean(), rtol=1e-5)
  np.testing.assert_allclose(out["recon_nats"], recon.mean(), rtol=1e-5)
  np.testing.assert_allclose(out["nll_bound"], prior_nats.mean() + recon.mean(), rtol=1e-5)
  np.testing.assert_allclose(out["loss"], prior_nats.mean() / 4, rtol=1e-5)
  per_dim = 64 * np.log(2)
  np.testing.assert_allclose(out["bits_per_dim_bound"], (prior_nats + recon).mean() / per_dim, rtol=1e-5)
  np.testing.assert_allclose(out["uniform_prior_bits_per_dim"], (recon.mean() + 4 * np.log(K)) / per_dim, rtol=1e-5)


def test_training_moves_the_gpt_alone_and_samples_are_decoded_codes_never_the_start_token(vq_run):
  path, saved = vq_run
  fam = families.build(prior_exp(path), GREY)
  model = code_prior.make_model(prior_exp(path).model, GREY)
  state = fam.init(jax.random.key(0))

  # An untrained prior spreads its mass about evenly over the K + 1 rows: 256 draws that could
  # take the start token would take it (probability ~1 - (16/17)^256).
  codes = np.asarray(code_prior.sample_codes(state.variables(), jax.random.key(5), 64, model))
  assert codes.shape == (64, 2, 2) and codes.min() >= 0 and codes.max() < K, np.unique(codes)
  assert len(np.unique(codes)) > K // 2

  start = jax.tree.map(np.asarray, state.params)
  step = jax.jit(fam.train_step)
  losses = []
  for i in range(30):
    state, metrics = step(state, grey_batch(16, seed=100 + i), jax.random.key(i))
    losses.append(float(metrics["loss"]))
  assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 0.3, losses  # three prototypes: few code grids
  np.testing.assert_allclose(metrics["bits_per_code"], metrics["loss"] / np.log(2), rtol=1e-6)
  moved = [not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(start), jax.tree.leaves(state.params))]
  assert all(moved)
  for a, b in zip(jax.tree.leaves(state.extra["vqvae"]), jax.tree.leaves(saved)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))  # the VQ-VAE is frozen

  images = fam.sample(state.variables(), jax.random.key(9), 5)
  drawn = code_prior.sample_codes(state.variables(), jax.random.key(9), 5, model)
  vq_model = vqvae.make_model(tiny_exp().model, GREY)
  np.testing.assert_allclose(images, vqvae.decode_codes(saved, drawn, vq_model), atol=1e-6)
  assert images.shape == (5, 8, 8, 1)


def test_bad_prior_settings_are_one_paragraph_before_compiling(vq_run, tmp_path):
  path, _ = vq_run
  with pytest.raises(ConfigError, match="names no VQ-VAE run"):
    families.build(prior_exp(""), GREY)
  with pytest.raises(MissingError, match="is not a folder"):
    families.build(prior_exp(str(tmp_path / "nothing")), GREY)
  other = tmp_path / "gpt_run"
  os.makedirs(other)
  gpt_exp = Experiment(name="a_gpt", family="autoregressive", model=families.get("autoregressive").GPTConfig())
  with open(other / "config.json", "w") as f:
    json.dump(config_lib.to_dict(gpt_exp), f)
  with pytest.raises(ConfigError, match="'autoregressive' family .* not a VQ-VAE run"):
    families.build(prior_exp(str(other)), GREY)
  with pytest.raises(ConfigError, match="codebook of K = 16 codes.*17"):
    families.build(prior_exp(path, vocab_size=32), GREY)
  with pytest.raises(ConfigError, match="was trained on 'grey'"):
    families.build(prior_exp(path), DataInfo("other", "image", (8, 8, 1)))
