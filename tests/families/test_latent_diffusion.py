"""Latent diffusion: a diffusion experiment that names a frozen autoencoder trains on its latents,
keeps its weights unchanged in the state (and out of the EMA), samples images through its decoder
and reports no pixel likelihood."""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax import config as C
from genjax import errors, families
from genjax.data.info import DataInfo
from genjax.families import diffusion
from genjax.families.diffusion import SampleOptions, latent
from tests.families.autoencoders import save_tiny_autoencoder

pytest.importorskip("safetensors", reason="autoencoder weights are .safetensors files (requirements.txt)")
INFO = DataInfo(name="digits", kind="image", shape=(16, 16, 1), num_classes=10)


@pytest.fixture(scope="module")
def ae_folder(tmp_path_factory):
  """A diffusers-style folder of a tiny random AutoencoderKL for 16x16 grey images (f = 2)."""
  folder = tmp_path_factory.mktemp("ae")
  module, variables = save_tiny_autoencoder(folder, channels=1)
  return str(folder), module, variables


def experiment(folder, **model):
  base = dict(backbone="dit", patch_size=2, hidden_size=32, depth=1, num_heads=4, formulation="flow")
  base.update(sampler="euler", sample_steps=2, class_conditional=True, autoencoder=folder, latent_scale=0.5)
  cfg = diffusion.Config(**{**base, **model})
  return C.Experiment(
    family="diffusion",
    model=cfg,
    optim=C.Optim(learning_rate=1e-3, ema_decay=0.9),
    train=C.Train(steps=4, batch_size=4),
  )


def batch(n=4, seed=0):
  rng = np.random.default_rng(seed)
  return {
    "image": jnp.asarray(rng.uniform(-1, 1, (n, 16, 16, 1)), jnp.float32),
    "label": jnp.asarray(rng.integers(0, 10, n), jnp.int32),
  }


def test_latent_model_trains_on_latents_and_keeps_the_autoencoder_frozen(ae_folder):
  folder, module, variables = ae_folder
  exp = experiment(folder)
  model = diffusion.make_model(exp.model, INFO)
  assert model.image_shape == (8, 8, 4)  # f = 2, 4 latent channels
  family = families.build(exp, INFO)
  state = jax.jit(family.init)(jax.random.key(0))
  saved = jax.tree.leaves(variables)
  assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(state.extra[latent.COLLECTION]), saved))
  assert state.ema_extra is None or latent.COLLECTION not in state.ema_extra  # no EMA copy of frozen weights
  # the loss of the step is the flow loss of the encoded batch: scale * a posterior draw
  b, rng = batch(), jax.random.key(3)
  mean, logvar = module.apply(variables, b["image"], method=module.encode)
  z = latent.encode(variables, b["image"], rng, model.autoencoder)
  assert z.shape == (4, 8, 8, 4)
  np.testing.assert_allclose(np.std(np.asarray(z / 0.5 - mean) / np.exp(0.5 * np.asarray(logvar))), 1.0, atol=0.1)
  want, _ = jax.jit(diffusion.loss, static_argnames="model")(state.params, {**b, "image": z}, rng, model)
  (update,) = diffusion.updates(model)
  got, _ = jax.jit(update.loss)(state.params, state, b, rng, 0)
  np.testing.assert_allclose(float(got), float(want), rtol=1e-6)
  step = jax.jit(family.train_step)
  new = state
  for i in range(2):
    new, metrics = step(new, batch(seed=i), jax.random.key(i))
  assert np.isfinite(float(metrics["loss"]))
  assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(new.extra[latent.COLLECTION]), saved))
  moved = jax.tree.leaves(jax.tree.map(lambda a, c: float(jnp.abs(a - c).max()), new.params, state.params))
  assert max(moved) > 0


def test_latent_samples_are_decoded_images_and_no_bits_per_dim(ae_folder):
  folder, module, variables = ae_folder
  exp = experiment(folder)
  family, model = families.build(exp, INFO), diffusion.make_model(exp.model, INFO)
  state = jax.jit(family.init)(jax.random.key(0))
  v = state.variables()
  x = family.sample(v, jax.random.key(1), 3, SampleOptions(label=2))
  assert x.shape == (3, 16, 16, 1) and float(jnp.abs(x).max()) <= 1.0
  # the same latents decoded by hand
  z = diffusion._sample(
    {"params": v["params"]},
    jax.random.key(1),
    jnp.full((3,), 2, jnp.int32),
    n=3,
    model=model,
    sampler="euler",
    num_steps=2,
    eta=0.0,
    guidance_scale=1.0,
    s_churn=0.0,
  )
  by_hand = jnp.clip(module.apply(variables, z / 0.5, method=module.decode), -1, 1)
  np.testing.assert_allclose(np.asarray(x), np.asarray(by_hand), atol=1e-5)
  sums, count = diffusion.eval_sums(v, batch(), jax.random.key(2), model)
  assert "bpd_estimate" not in sums and int(count) == 4
  with pytest.raises(errors.ConfigError, match="latent diffusion model"):
    diffusion.evaluate(v, [batch()], jax.random.key(2), model)
  assert not diffusion.evaluates(exp)  # genjax.evaluate computes FD on decoded samples instead


def test_bad_autoencoders_are_one_paragraph_before_anything_compiles(ae_folder, tmp_path):
  folder, _, _ = ae_folder
  with pytest.raises(errors.MissingError, match="does not exist"):
    diffusion.make_model(experiment(str(tmp_path / "nowhere")).model, INFO)
  rgb = dataclasses.replace(INFO, shape=(16, 16, 3))
  with pytest.raises(errors.ConfigError, match="encodes images of 1 channels"):
    diffusion.make_model(experiment(folder).model, rgb)
  with pytest.raises(errors.ConfigError, match="downsamples by 2"):
    diffusion.make_model(experiment(folder).model, dataclasses.replace(INFO, shape=(15, 15, 1)))
  with pytest.raises(errors.ConfigError, match="latent_scale"):
    diffusion.make_model(experiment(folder, latent_scale=0.0).model, INFO)
  # a DiT patch that does not divide the latents (8x8), though it divides the images (16x16)
  with pytest.raises(errors.ConfigError, match="patch_size = 16 does not divide the 8x8"):
    diffusion.make_model(experiment(folder, patch_size=16).model, INFO)


def digits_experiment(folder, latent_cache: bool, steps: int = 3):
  """experiment() on the 8x8 digits (flipped at random, as CIFAR-10's recipes do), through the loop."""
  exp = experiment(folder, latent_cache=latent_cache)
  return dataclasses.replace(
    exp,
    data=C.Data(name="digits", flip=True),
    train=C.Train(steps=steps, batch_size=8, log_every=1, eval_every=steps, checkpoint_every=steps, progress=False),
    parallel=C.Parallel(num_devices=1),
    eval=dataclasses.replace(exp.eval, num_samples=4, num_batches=1),
  )


def test_the_latent_cache_holds_each_images_and_its_mirrors_moments_and_is_written_once(
  ae_folder, tmp_path, monkeypatch
):
  from genjax import data as data_lib

  folder, module, variables = ae_folder
  monkeypatch.setenv("GENJAX_HOME", str(tmp_path / "home"))
  exp = digits_experiment(folder, latent_cache=True)
  ds = data_lib.load(exp.data, "train")
  model = diffusion.make_model(exp.model, ds.info)
  cached = diffusion.train_data(ds, exp, model)
  (path,) = (tmp_path / "home" / "latent_cache").glob("*.moments.npy")
  assert cached.cache.shape == (2, ds.num_examples, 4, 4, 8)  # flips, examples, 4x4 latents, mean + logvar
  images, _ = ds.images_in_order(0, 20)
  mean, logvar = module.apply(variables, images, method=module.encode)
  np.testing.assert_allclose(cached.cache[0, :20], np.concatenate([mean, logvar], -1), atol=2e-5)
  mean, logvar = module.apply(variables, images[:, :, ::-1], method=module.encode)
  np.testing.assert_allclose(cached.cache[1, :20], np.concatenate([mean, logvar], -1), atol=2e-5)
  # A cached batch draws the latents that the image batch of the same step encodes to: the same
  # examples, the same mirror images (some of each at this step), the same per-example keys.
  rows, mirror = ds.batch_rows(5, 8, 0)
  assert 0 < mirror.sum() < 8
  rng = jax.random.key(9)
  from_images = latent.encoded(variables, ds.batch(5, 8, 0), rng, model.autoencoder)
  from_cache = latent.encoded(variables, cached.batch(5, 8, 0), rng, model.autoencoder)
  np.testing.assert_array_equal(from_cache["label"], from_images["label"])
  np.testing.assert_allclose(from_cache["image"], from_images["image"], atol=2e-5)
  # written once: a second run reads the same file; other weights get another file
  stamp = path.stat().st_mtime_ns
  diffusion.train_data(ds, exp, model)
  assert path.stat().st_mtime_ns == stamp and len(list(path.parent.glob("*.moments.npy"))) == 1
  other = tmp_path / "other_ae"
  other.mkdir()
  save_tiny_autoencoder(other, channels=1, seed=11)
  exp2 = digits_experiment(str(other), latent_cache=True)
  diffusion.train_data(ds, exp2, diffusion.make_model(exp2.model, ds.info))
  assert len(list(path.parent.glob("*.moments.npy"))) == 2
  assert len(list(path.parent.glob("*.labels.npy"))) == 2 and not list(path.parent.glob("*.tmp*"))
  # a cache needs an autoencoder, and images that stay the same from one read to the next
  with pytest.raises(errors.ConfigError, match="latent_cache=True caches an autoencoder"):
    diffusion.make_model(dataclasses.replace(exp.model, autoencoder=None), ds.info)
  dynamic = dataclasses.replace(exp.data, binarize="dynamic")
  with pytest.raises(errors.ConfigError, match="binarize='dynamic'"):
    diffusion.train_data(data_lib.load(dynamic, "train"), dataclasses.replace(exp, data=dynamic), model)


def test_training_from_the_cache_logs_the_losses_of_encoding_in_the_step(ae_folder, tmp_path, monkeypatch):
  from genjax.trainer import loop

  folder, _, _ = ae_folder
  monkeypatch.setenv("GENJAX_HOME", str(tmp_path / "home"))
  losses = {}
  for cache in (False, True):
    workdir = tmp_path / f"cache_{cache}"
    loop.train(digits_experiment(folder, latent_cache=cache), str(workdir))
    lines = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    losses[cache] = [m["loss"] for m in lines if "loss" in m and "step" in m and "eval_loss" not in m]
    written = list((tmp_path / "home" / "latent_cache").glob("*.moments.npy"))
    assert len(written) == int(cache)  # the loop read the cache it wrote, and only when asked
  assert len(losses[True]) == 3 and len(set(losses[True])) == 3
  np.testing.assert_allclose(losses[True], losses[False], rtol=1e-5)


def test_the_latent_cache_is_local_when_genjax_home_is_a_bucket(ae_folder, tmp_path, monkeypatch):
  """The cache is memory-mapped, so with GENJAX_HOME in a bucket it lives in ~/.cache/genjax (as
  the compilation cache does), never in a local folder named gs:."""
  from genjax import compile_cache

  folder, _, _ = ae_folder
  monkeypatch.setenv("GENJAX_HOME", "gs://some-bucket/genjax")
  monkeypatch.setenv("HOME", str(tmp_path))
  exp = digits_experiment(folder, latent_cache=True)
  path = latent.cache_path(exp.data, "train", diffusion.make_model(exp.model, INFO).autoencoder)
  assert path.startswith(str(tmp_path / ".cache" / "genjax" / "latent_cache") + "/"), path
  assert compile_cache.default_dir() == str(tmp_path / ".cache" / "genjax" / "compilation_cache")
