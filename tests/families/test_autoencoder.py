"""The autoencoder family (genjax/families/autoencoder.py): LDM's first-stage loss against numpy,
training that reconstructs, the evaluation's numbers, and load_frozen on each kind of path it
reads (a weights file, a diffusers folder, a genjax run, read-only) and the paragraphs it raises
for the others."""

import dataclasses
import json
import logging
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import traverse_util

from genjax import config as config_lib
from genjax import errors
from genjax.config import Data, Eval, Experiment, Optim, Train
from genjax.data.info import DataInfo
from genjax.families import autoencoder, vae
from genjax.nn import autoencoder_kl
from genjax.nn.autoencoder_kl import AutoencoderKL

pytest.importorskip("safetensors", reason="autoencoder weights are .safetensors files (requirements.txt)")

GREY_8x8 = DataInfo("digits", "image", (8, 8, 1))
TINY = dict(block_out_channels=(8, 16), layers_per_block=1, latent_channels=2, norm_num_groups=4)


def make(info=GREY_8x8, **cfg):
  return autoencoder.make_model(autoencoder.Config(**{**TINY, **cfg}), info)


def perturbed(variables, seed, scale=0.1):
  """Every parameter plus N(0, scale^2) noise, so biases are not zero and the moments vary."""
  leaves, tree = jax.tree.flatten(variables)
  keys = jax.random.split(jax.random.key(seed), len(leaves))
  return jax.tree.unflatten(tree, [p + scale * jax.random.normal(k, p.shape) for p, k in zip(leaves, keys)])


def images(seed, n=6, shape=(8, 8, 1)):
  return jnp.asarray(np.random.default_rng(seed).uniform(-1, 1, (n, *shape)), jnp.float32)


def listing(root):
  """{relative path: (size, mtime_ns)} of every file and folder under root."""
  out = {}
  for folder, dirs, files in os.walk(root):
    for name in dirs + files:
      path = os.path.join(folder, name)
      stat = os.stat(path)
      out[os.path.relpath(path, root)] = (stat.st_size if name in files else None, stat.st_mtime_ns)
  return out


def one_paragraph(error) -> str:
  text = str(error)
  assert "\n" not in text and len(text) > 40, text
  return text


# ----------------------------------------------------------------------------------------------
# The loss and the evaluation, against numpy
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
  "cfg",
  [
    dict(reconstruction="l1", kl_weight=0.1, logvar=0.0),
    dict(reconstruction="l2", kl_weight=0.01, logvar=0.7),
    dict(reconstruction="l1", kl_weight=1e-6, sample_posterior=False),
  ],
)
def test_loss_is_the_summed_reconstruction_term_plus_kl_weight_times_kl(cfg):
  model = make(**cfg)
  params = perturbed(autoencoder.init(jax.random.key(0), model), 1)["params"]
  x, rng = images(2), jax.random.key(3)
  value, metrics = jax.jit(autoencoder.loss, static_argnums=3)(params, {"image": x}, rng, model)

  net, v = model.net, {"params": params}
  mean, logvar = (np.asarray(a, np.float64) for a in net.apply(v, x, method=AutoencoderKL.encode))
  eps = np.asarray(autoencoder.posterior_noise(rng, x.shape[0], mean.shape[1:]), np.float64)
  z = mean + np.exp(0.5 * logvar) * eps if model.config.sample_posterior else mean
  recon = np.asarray(net.apply(v, jnp.asarray(z, jnp.float32), method=AutoencoderKL.decode), np.float64)
  diff = recon - np.asarray(x, np.float64)
  rec = np.abs(diff) if model.config.reconstruction == "l1" else diff**2
  lv = model.config.logvar
  nll = np.sum(rec / np.exp(lv) + lv) / x.shape[0]  # LDM: summed over pixels, over the batch / B
  kl = np.sum(0.5 * (mean**2 + np.exp(logvar) - 1.0 - logvar)) / x.shape[0]
  expected = nll + model.config.kl_weight * kl

  if model.config.kl_weight >= 0.01:  # the KL term moves the loss by more than the tolerance
    assert model.config.kl_weight * kl > 1e-3 * expected, (kl, nll)
  np.testing.assert_allclose(float(value), expected, rtol=2e-5)
  np.testing.assert_allclose(float(metrics["nll"]), nll, rtol=2e-5)
  np.testing.assert_allclose(float(metrics["kl"]), kl, rtol=2e-5)
  name = "l1" if model.config.reconstruction == "l1" else "mse"
  np.testing.assert_allclose(float(metrics[name]), rec.mean(), rtol=2e-5)


def test_the_posterior_sample_is_drawn_per_example_and_changes_the_loss():
  model = make(kl_weight=0.0)
  params = perturbed(autoencoder.init(jax.random.key(0), model), 1, scale=0.3)["params"]
  x = images(4)
  loss = jax.jit(autoencoder.loss, static_argnums=3)
  first, _ = loss(params, {"image": x}, jax.random.key(1), model)
  again, _ = loss(params, {"image": x}, jax.random.key(1), model)
  other, _ = loss(params, {"image": x}, jax.random.key(2), model)
  assert float(first) == float(again) and float(first) != float(other)
  # example i's noise depends on (rng, i) only: the first rows of a bigger batch draw the same
  eps4 = autoencoder.posterior_noise(jax.random.key(1), 4, (2, 2, 3))
  eps6 = autoencoder.posterior_noise(jax.random.key(1), 6, (2, 2, 3))
  np.testing.assert_array_equal(eps4, eps6[:4])


def test_eval_sums_are_the_clipped_reconstructions_errors_psnr_and_kl_over_real_examples():
  model = make()
  variables = perturbed(autoencoder.init(jax.random.key(0), model), 1)
  x = images(5, n=4)
  mask = jnp.asarray([1.0, 1.0, 1.0, 0.0])
  sums, count = autoencoder.eval_sums(variables, {"image": x, "mask": mask}, None, model)

  mean, logvar = model.net.apply(variables, x, method=AutoencoderKL.encode)
  recon = np.clip(np.asarray(model.net.apply(variables, mean, method=AutoencoderKL.decode)), -1, 1)
  mse = np.mean((recon - np.asarray(x)) ** 2, axis=(1, 2, 3))[:3]
  l1 = np.mean(np.abs(recon - np.asarray(x)), axis=(1, 2, 3))[:3]
  kl = np.asarray(autoencoder_kl.kl(mean, logvar))[:3]
  assert float(count) == 3.0
  np.testing.assert_allclose(float(sums["mse"]), mse.sum(), rtol=1e-5)
  np.testing.assert_allclose(float(sums["l1"]), l1.sum(), rtol=1e-5)
  np.testing.assert_allclose(float(sums["psnr"]), np.sum(10 * np.log10(4.0 / mse)), rtol=1e-5)
  np.testing.assert_allclose(float(sums["kl"]), kl.sum(), rtol=1e-5)
  # the full evaluation: exact means over every real example of the batches
  out = autoencoder.evaluate(variables, [{"image": x, "mask": mask}] * 2, None, model)
  assert out["num_examples"] == 6.0
  np.testing.assert_allclose(out["psnr"], np.mean(10 * np.log10(4.0 / mse)), rtol=1e-5)


def test_a_few_steps_reduce_the_reconstruction_error_of_a_batch():
  model = make(kl_weight=1e-6)
  variables = autoencoder.init(jax.random.key(0), model)
  # smooth images: a bright square at a different place in each
  x = -np.ones((8, 8, 8, 1), np.float32)
  for i in range(8):
    x[i, i % 4 : i % 4 + 4, (3 * i) % 5 : (3 * i) % 5 + 3] = 1.0
  batch = {"image": jnp.asarray(x)}
  tx = optax.adam(3e-3)

  @jax.jit
  def step(params, opt_state, rng):
    grads, _ = jax.grad(autoencoder.loss, has_aux=True)(params, batch, rng, model)
    updates, opt_state = tx.update(grads, opt_state)
    return optax.apply_updates(params, updates), opt_state

  def mse(params):
    sums, count = autoencoder.eval_sums({"params": params}, batch, None, model)
    return float(sums["mse"] / count)

  params = variables["params"]
  opt_state = tx.init(params)
  before = mse(params)
  for i in range(40):
    params, opt_state = step(params, opt_state, jax.random.key(i))
  assert mse(params) < 0.5 * before, (before, mse(params))


def test_samples_and_the_reconstruction_grid():
  model = make()
  variables = autoencoder.init(jax.random.key(0), model)
  samples = autoencoder.sample(variables, jax.random.key(1), 5, model)
  assert samples.shape == (5, 8, 8, 1) and float(jnp.max(jnp.abs(samples))) <= 1.0
  x = images(6, n=32)
  grid = autoencoder.pictures(variables, {"image": x}, None, model, 32)["reconstructions"]
  layout = autoencoder.layouts(model, 32)["reconstructions"]
  rows = len(layout.rows)
  assert grid.shape == (rows * layout.ncols, 8, 8, 1) and layout.rows[:2] == ("input", "recon")
  np.testing.assert_array_equal(grid[: layout.ncols], x[: layout.ncols])  # the first row: inputs
  recon, _, _ = autoencoder.reconstruct(variables, x[: layout.ncols], model)
  np.testing.assert_allclose(grid[layout.ncols : 2 * layout.ncols], recon, atol=1e-5)  # then theirs


def test_bad_configs_are_one_paragraph_before_anything_compiles():
  mnist = DataInfo("mnist", "image", (28, 28, 1))
  with pytest.raises(errors.ConfigError, match="at most 3 levels") as e:
    make(mnist, block_out_channels=(32, 32, 32, 32), norm_num_groups=32)
  one_paragraph(e.value)
  with pytest.raises(errors.ConfigError, match="divisible by norm_num_groups"):
    make(block_out_channels=(8, 10))
  with pytest.raises(errors.ConfigError, match="kl_weight"):
    make(kl_weight=-1.0)
  assert make(mnist, block_out_channels=(32, 64, 64), norm_num_groups=32).latent_shape == (7, 7, 2)


# ----------------------------------------------------------------------------------------------
# load_frozen: files, diffusers folders, runs
# ----------------------------------------------------------------------------------------------


def tiny_weights(seed=0):
  module = AutoencoderKL(in_channels=1, out_channels=1, **TINY)
  variables = module.init(jax.random.key(seed), jnp.zeros((1, 8, 8, 1)), sample_posterior=False)
  return module, perturbed(variables, seed + 1)


def assert_same_tree(a, b):
  flat_a, flat_b = traverse_util.flatten_dict(a), traverse_util.flatten_dict(b)
  assert flat_a.keys() == flat_b.keys()
  for key in flat_a:
    np.testing.assert_array_equal(np.asarray(flat_a[key]), np.asarray(flat_b[key]), err_msg=str(key))


def test_load_frozen_reads_a_save_weights_file_in_a_diffusers_folder(tmp_path):
  module, variables = tiny_weights()
  folder = tmp_path / "vae"
  folder.mkdir()
  autoencoder_kl.save_weights(variables, str(folder / "diffusion_pytorch_model.safetensors"))
  config = {"_class_name": "AutoencoderKL", "in_channels": 1, "out_channels": 1, "scaling_factor": 0.5}
  config.update({k: list(v) if isinstance(v, tuple) else v for k, v in TINY.items()})
  (folder / "config.json").write_text(json.dumps(config))
  for path in (folder, folder / "diffusion_pytorch_model.safetensors"):
    loaded_module, loaded = autoencoder.load_frozen(path)
    assert loaded_module == module
    assert_same_tree(loaded, variables)
    assert autoencoder.scaling_factor(path) == 0.5
  # a pipeline folder: its vae/
  (tmp_path / "model_index.json").write_text("{}")
  assert autoencoder.load_frozen(tmp_path)[0] == module
  # the same file alone is read as SD's KL-f8, which it is not: load_weights' paragraph
  alone = tmp_path / "alone.safetensors"
  shutil.copy(folder / "diffusion_pytorch_model.safetensors", alone)
  with pytest.raises(errors.ConfigError, match="does not hold the weights of AutoencoderKL"):
    autoencoder.load_frozen(alone)
  assert autoencoder.scaling_factor(alone) == autoencoder_kl.SCALING_FACTOR


def tiny_experiment(ema_decay):
  return Experiment(
    name="ae-test",
    family="autoencoder",
    model=autoencoder.Config(**TINY),
    data=Data(name="digits"),
    optim=Optim(learning_rate=1e-3, ema_decay=ema_decay),
    train=Train(
      steps=3, batch_size=16, log_every=1, eval_every=3, checkpoint_every=2, progress=False, async_checkpoints=False
    ),
    eval=Eval(num_batches=1, num_samples=16),
  )


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  """A tiny autoencoder run of 3 steps through the real loop, with an EMA: checkpoints 2 and 3."""
  from genjax.trainer import loop

  workdir = str(tmp_path_factory.mktemp("runs") / "ae")
  loop.train(tiny_experiment(ema_decay=0.5), workdir)
  return workdir


def test_load_frozen_reads_a_run_read_only_and_prefers_its_ema(run):
  from genjax.trainer import workdir as workdir_lib

  before = listing(run)
  module, variables = autoencoder.load_frozen(run)
  assert listing(run) == before  # nothing moved, written or deleted
  assert module == AutoencoderKL(in_channels=1, out_channels=1, **TINY)
  _, state = workdir_lib.load(run)
  assert int(state.step) == 3
  assert_same_tree(variables["params"], jax.device_get(state.ema_params))
  raw = traverse_util.flatten_dict(jax.device_get(state.params))
  ema = traverse_util.flatten_dict(variables["params"])
  assert any(not np.array_equal(raw[k], ema[k]) for k in raw)  # the EMA is not the raw weights
  assert autoencoder.scaling_factor(run) == 1.0
  x = next(iter(_digits_batches()))
  std = autoencoder.latent_std(module, variables, x)
  mean, _ = module.apply(variables, x, method=AutoencoderKL.encode)
  np.testing.assert_allclose(std, float(jnp.std(mean)), rtol=1e-5)


def _digits_batches():
  from genjax import data

  yield jnp.asarray(next(data.load(Data(name="digits"), "test").eval_batches(16))["image"])


def test_load_frozen_falls_back_past_an_unreadable_checkpoint_and_says_so(run, tmp_path, caplog):
  import orbax.checkpoint as ocp

  copy = str(tmp_path / "copy")
  shutil.copytree(run, copy)
  state_dir = os.path.join(copy, "checkpoints", "3", "state")
  for folder, _, files in os.walk(state_dir):  # truncate every file of the newest state
    for name in files:
      open(os.path.join(folder, name), "w").close()
  before = listing(copy)
  with caplog.at_level(logging.WARNING, logger="genjax"):
    _, variables = autoencoder.load_frozen(copy)
  assert listing(copy) == before  # the broken checkpoint stays where it is
  assert "using checkpoint 2" in caplog.text
  with ocp.StandardCheckpointer() as checkpointer:
    step2 = checkpointer.restore(os.path.join(run, "checkpoints", "2", "state"))
  assert_same_tree(variables["params"], step2["ema_params"])
  # every checkpoint unreadable: CheckpointError naming them
  shutil.rmtree(os.path.join(copy, "checkpoints", "2"))
  with pytest.raises(errors.CheckpointError, match="No checkpoint of the autoencoder run") as e:
    autoencoder.load_frozen(copy)
  assert "3 (" in one_paragraph(e.value)
  # no checkpoint at all
  shutil.rmtree(os.path.join(copy, "checkpoints"))
  with pytest.raises(errors.MissingError, match="without a checkpoint") as e:
    autoencoder.load_frozen(copy)
  one_paragraph(e.value)


def test_load_frozen_paths_it_cannot_read_are_one_paragraph_each(tmp_path):
  with pytest.raises(errors.MissingError, match="nothing is there") as e:
    autoencoder.load_frozen(tmp_path / "nowhere")
  assert str(tmp_path / "nowhere") in one_paragraph(e.value)
  (tmp_path / "pictures").mkdir()
  (tmp_path / "pictures" / "cat.png").write_bytes(b"")
  with pytest.raises(errors.ConfigError, match="neither a diffusers model folder nor a genjax run") as e:
    autoencoder.load_frozen(tmp_path / "pictures")
  assert "cat.png" in one_paragraph(e.value)
  (tmp_path / "unet").mkdir()
  (tmp_path / "unet" / "config.json").write_text(json.dumps({"_class_name": "UNet2DModel", "block_out_channels": [8]}))
  with pytest.raises(errors.ConfigError, match="a diffusers UNet2DModel config") as e:
    autoencoder.load_frozen(tmp_path / "unet")
  one_paragraph(e.value)
  # a genjax run of another family: its family is named
  vae_run = tmp_path / "vae_run"
  vae_run.mkdir()
  exp = Experiment(name="a-vae", family="vae", model=vae.Config())
  (vae_run / "config.json").write_text(config_lib.to_json(exp))
  for fn in (autoencoder.load_frozen, autoencoder.scaling_factor):
    with pytest.raises(errors.ConfigError, match="run of the 'vae' family") as e:
      fn(vae_run)
    one_paragraph(e.value)
  # a diffusers autoencoder genjax does not build
  odd = tmp_path / "odd"
  odd.mkdir()
  (odd / "config.json").write_text(json.dumps({"block_out_channels": [8, 16], "act_fn": "gelu"}))
  with pytest.raises(errors.ConfigError, match="act_fn='gelu'"):
    autoencoder.load_frozen(odd)


def test_a_run_without_ema_gives_its_raw_weights(run, tmp_path):
  """The same reading without an EMA in the checkpoint: the raw parameters."""
  import orbax.checkpoint as ocp

  with ocp.StandardCheckpointer() as checkpointer:
    tree = checkpointer.restore(os.path.join(run, "checkpoints", "3", "state"))
  copy = tmp_path / "no_ema"
  (copy / "checkpoints" / "3").mkdir(parents=True)
  shutil.copy(os.path.join(run, "config.json"), copy / "config.json")
  with ocp.StandardCheckpointer() as checkpointer:
    checkpointer.save(str(copy / "checkpoints" / "3" / "state"), {**tree, "ema_params": None})
  _, variables = autoencoder.load_frozen(copy)
  assert_same_tree(variables["params"], tree["params"])


def test_the_family_is_found_by_its_config_class():
  from genjax import families

  exp = dataclasses.replace(tiny_experiment(None), family="autoencoder")
  assert families.module_of(exp) is autoencoder
  assert "autoencoder" in families.names()
