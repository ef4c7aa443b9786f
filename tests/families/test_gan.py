"""Tests of the GAN family on small networks (the experiment configs are checked by shape only).

tests/conftest.py gives the process 8 simulated CPU devices before JAX starts, which the
parallel-equivalence test uses.
"""

import dataclasses
import importlib.util
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from genjax.config import ConfigError, Experiment, Optim, Parallel, Train
from genjax.core import step as step_lib
from genjax.core.optim import make_optimizer
from genjax.core.parallel import Parallelism
from genjax.data.info import DataInfo
from genjax.families import gan
from genjax.families.gan import losses, models

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
INFO = DataInfo("test", "image", (8, 8, 1), num_classes=10)


def tiny(mode="jit", batch_size=16, **model):
  """An 8x8 DCGAN small enough to compile in seconds."""
  cfg = dict(g_widths=(8, 4), d_widths=(4, 8), latent_dim=6, kernel_size=3)
  cfg.update(model)
  return Experiment(family="gan", model=gan.Config(**cfg), optim=Optim(learning_rate=1e-2, b1=0.5),
                    train=Train(steps=10, batch_size=batch_size), parallel=Parallel(mode=mode))


def batch(n, shape=(8, 8, 1), seed=0):
  rng = np.random.default_rng(seed)
  return {"image": jnp.asarray(rng.uniform(-1, 1, (n,) + shape), jnp.float32),
          "label": jnp.asarray(rng.integers(0, 10, n), jnp.int32)}


def tree_equal(a, b):
  return all(jax.tree.leaves(jax.tree.map(lambda x, y: bool(jnp.array_equal(x, y)), a, b)))


# ----------------------------------------------------------------------------------------------
# Losses and penalties
# ----------------------------------------------------------------------------------------------


def test_gradient_penalty_matches_finite_differences():
  # In float64, so that central differences are accurate to well below the tolerance.
  with jax.enable_x64(True):
    D = models.Discriminator(arch="dcgan", widths=(4, 8), kernel_size=3, norm=False, dtype=jnp.float64)
    real = batch(3)["image"].astype(jnp.float64)
    fake = batch(3, seed=1)["image"].astype(jnp.float64)
    params = D.init(jax.random.PRNGKey(0), real, train=False, update_stats=False)
    critic = lambda x_: D.apply(params, x_, train=True, update_stats=False)
    eps = jnp.array([0.2, 0.5, 0.9], jnp.float64)
    gp = np.asarray(losses.gradient_penalty(critic, real, fake, eps))

    # Central differences of each example's own critic value, pixel by pixel.
    w = np.asarray(eps)[:, None, None, None]
    x_hat = w * np.asarray(real) + (1 - w) * np.asarray(fake)
    h = 1e-6
    expected = []
    for b in range(3):
      basis = np.eye(x_hat[b].size).reshape((-1,) + x_hat[b].shape) * h
      plus = np.asarray(critic(jnp.asarray(x_hat[b][None] + basis)))
      minus = np.asarray(critic(jnp.asarray(x_hat[b][None] - basis)))
      grad = (plus - minus) / (2 * h)
      expected.append((np.linalg.norm(grad) - 1.0) ** 2)
  np.testing.assert_allclose(gp, expected, rtol=1e-6)
  assert np.all(gp > 1e-3)  # a non-trivial check: the penalty is not at its zero


def test_losses_match_their_definitions():
  real, fake = jnp.array([2.0, -0.5]), jnp.array([0.3, -3.0])
  sig = lambda t: 1 / (1 + np.exp(-np.asarray(t)))
  np.testing.assert_allclose(losses.discriminator_loss("non_saturating", real, fake),
                             -np.log(sig(real)) - np.log(1 - sig(fake)), rtol=1e-5)
  np.testing.assert_allclose(losses.generator_loss("non_saturating", fake), -np.log(sig(fake)), rtol=1e-5)
  np.testing.assert_allclose(losses.discriminator_loss("hinge", real, fake), [0.0 + 1.3, 1.5 + 0.0], rtol=1e-6)
  np.testing.assert_allclose(losses.discriminator_loss("wasserstein", real, fake), [-1.7, -2.5], rtol=1e-6)


# ----------------------------------------------------------------------------------------------
# Spectral normalisation
# ----------------------------------------------------------------------------------------------


def test_spectral_norm_power_iteration_converges_to_largest_singular_value():
  D = models.Discriminator(arch="dcgan", widths=(5, 7), kernel_size=3, norm=False, spectral_norm=True)
  x = batch(2, (8, 8, 3))["image"]
  variables = D.init(jax.random.PRNGKey(0), x, train=False, update_stats=False)
  params, stats = variables["params"], variables[models.SPECTRAL]

  @jax.jit
  def iterate(stats):
    _, new = D.apply({"params": params, models.SPECTRAL: stats}, x, train=True, update_stats=True,
                     mutable=[models.SPECTRAL])
    return new[models.SPECTRAL]

  for _ in range(60):
    stats = iterate(stats)
  flat_sigmas = {"/".join(str(getattr(k, "key", k)) for k in path): v
                 for path, v in jax.tree_util.tree_leaves_with_path(stats)}
  checked = 0
  for path, kernel in jax.tree_util.tree_leaves_with_path(params):
    kernel = np.asarray(kernel)
    if kernel.ndim < 2:
      continue
    largest = np.linalg.svd(kernel.reshape(-1, kernel.shape[-1]), compute_uv=False)[0]
    layer = str(getattr(path[0], "key", path[0]))  # Conv_0; its sigma is SpectralNorm_i/Conv_0/kernel/sigma
    (sigma,) = [v for name, v in flat_sigmas.items() if name.endswith(f"/{layer}/kernel/sigma")]
    np.testing.assert_allclose(float(sigma), largest, rtol=1e-3)
    checked += 1
  assert checked == 3  # two convolutions and the dense logit


# ----------------------------------------------------------------------------------------------
# The updates
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", [dict(), dict(spectral_norm=True, d_norm="none", loss="hinge", conditional=True)])
def test_each_update_leaves_the_other_network_untouched(model):
  exp = dataclasses.replace(tiny(**model), optim=Optim(learning_rate=1e-2, b1=0.5, ema_decay=0.9))
  state = gan.build(exp, INFO).init(jax.random.PRNGKey(0))
  net = gan.make_model(exp.model, INFO)
  tx = make_optimizer(exp.optim, 10)
  d_update, g_update = gan.updates(net)
  data = gan.with_keys(batch(16), jax.random.PRNGKey(1))
  update = lambda u, i: jax.jit(lambda s, b: step_lib.apply_update(s, b, None, u, i, tx, 0.9))

  after_d, metrics = update(d_update, 0)(state, data)
  assert np.isfinite(float(metrics["d_loss"]))
  assert not tree_equal(after_d.params["d"], state.params["d"])
  assert tree_equal(after_d.params["g"], state.params["g"])
  assert tree_equal(after_d.opt_state["g"], state.opt_state["g"])
  assert tree_equal(after_d.ema_params, state.ema_params)
  assert tree_equal(after_d.extra["batch_stats"]["g"], state.extra["batch_stats"]["g"])

  after_g, _ = update(g_update, 0)(state, data)
  assert not tree_equal(after_g.params["g"], state.params["g"])
  assert not tree_equal(after_g.ema_params["g"], state.ema_params["g"])
  assert not tree_equal(after_g.extra["batch_stats"]["g"], state.extra["batch_stats"]["g"])
  assert tree_equal(after_g.params["d"], state.params["d"])
  assert tree_equal(after_g.opt_state["d"], state.opt_state["d"])
  assert tree_equal({k: v["d"] for k, v in after_g.extra.items() if "d" in v},
                    {k: v["d"] for k, v in state.extra.items() if "d" in v})


@pytest.mark.parametrize("n_in,n_out,kernel", [(4, 7, 5), (4, 7, 4), (2, 4, 5), (7, 14, 5), (4, 7, 3)])
def test_odd_sizes_crop_where_tf_conv2d_transpose_lands(n_in, n_out, kernel):
  """TF's conv2d_transpose to an explicit (odd) size is the gradient of a SAME stride-2
  convolution of that size; the generator's crop of the 2n output must equal it."""
  dn = ("NHWC", "HWIO", "NHWC")
  rng = np.random.default_rng(0)
  w = jnp.asarray(rng.normal(size=(kernel, kernel, 3, 2)), jnp.float32)
  y = jnp.asarray(rng.normal(size=(1, n_in, n_in, 2)), jnp.float32)
  conv = lambda x: jax.lax.conv_general_dilated(x, w, (2, 2), "SAME", dimension_numbers=dn)
  want = jax.vjp(conv, jnp.zeros((1, n_out, n_out, 3)))[1](y)[0]
  full = jax.lax.conv_transpose(y, w, (2, 2), "SAME", dimension_numbers=dn, transpose_kernel=True)
  o = models.same_transpose_offset(n_in, n_out, kernel)
  np.testing.assert_allclose(full[:, o:o + n_out, o:o + n_out], want, rtol=1e-5, atol=1e-5)


def test_dcgan_weights_start_as_in_the_paper():
  """DCGAN: every weight ~ N(0, 0.02) (Radford et al. 2016); SNGAN keeps the LeCun default,
  whose scale depends on the fan-in."""
  z = jnp.zeros((2, 100))
  x = jnp.zeros((2, 28, 28, 1))
  for arch, widths in (("dcgan", (512, 256, 128, 64)), ("sngan_cnn", (512, 256, 128))):
    g = models.Generator(arch=arch, out_shape=(28, 28, 1), widths=widths).init(jax.random.key(0), z, train=False)
    d = models.Discriminator(arch=arch, widths=(64, 128, 256, 512)).init(jax.random.key(1), x, train=False,
                                                                       update_stats=False)
    kernels = [leaf for path, leaf in jax.tree_util.tree_leaves_with_path((g["params"], d["params"]))
               if getattr(path[-1], "key", None) == "kernel" and leaf.size > 1000]
    stds = np.array([float(jnp.std(k)) for k in kernels])
    if arch == "dcgan":
      np.testing.assert_allclose(stds, 0.02, rtol=0.1)
    else:
      assert np.ptp(stds) > 0.02  # fan-in scaled: far from one common value


def test_packing_concatenates_consecutive_examples_along_channels():
  x = jnp.arange(4 * 2 * 2 * 3, dtype=jnp.float32).reshape(4, 2, 2, 3)
  packed = gan.pack_images(x, 2)
  assert packed.shape == (2, 2, 2, 6)
  np.testing.assert_array_equal(packed[1, ..., :3], x[2])
  np.testing.assert_array_equal(packed[1, ..., 3:], x[3])


def test_wgan_gp_training_lowers_the_critic_loss_and_samples_are_images():
  exp = tiny(batch_size=20, g_norm="none", d_norm="none", loss="wasserstein", gp_weight=10.0,
             n_critic=5, critic_batches="split", latent_dist="normal")
  f = gan.build(exp, INFO)
  state = f.init(jax.random.PRNGKey(0))
  step = jax.jit(f.train_step)
  data = batch(20)
  first = None
  for i in range(6):
    state, metrics = step(state, data, jax.random.PRNGKey(i))
    first = first if first is not None else float(metrics["d_loss"])
  assert int(state.step) == 6
  assert {"d_loss", "g_loss", "gp", "d_real_logit", "d_fake_logit"} <= set(metrics)
  # The critic learns to separate a fixed batch from early samples: its loss goes down.
  assert float(metrics["d_loss"]) < first
  images = f.sample(state.variables(), jax.random.PRNGKey(0), 5)
  assert images.shape == (5, 8, 8, 1) and float(jnp.max(jnp.abs(images))) <= 1.0


def test_pictures_use_fixed_noise_and_class_rows():
  exp = tiny(conditional=True)
  f = gan.build(exp, INFO)
  state = f.init(jax.random.PRNGKey(0))
  a = f.pictures(state, None, jax.random.PRNGKey(1))
  b = f.pictures(state, None, jax.random.PRNGKey(2))
  assert set(a) == {"fixed_noise", "class_rows", "interpolation"}
  np.testing.assert_array_equal(a["fixed_noise"], b["fixed_noise"])  # independent of the eval rng
  assert a["class_rows"].shape == (100, 8, 8, 1)
  # Interpolation rows start and end at different latents and move smoothly in between.
  rows = np.asarray(a["interpolation"]).reshape(8, 8, -1)
  step_sizes = np.abs(np.diff(rows, axis=1)).mean(axis=(1, 2))
  assert np.all(step_sizes > 0) and np.all(step_sizes < np.abs(rows[:, -1] - rows[:, 0]).mean(axis=1))


def test_config_errors_are_actionable():
  with pytest.raises(ConfigError, match="d_norm=none"):
    gan.build(tiny(gp_weight=10.0), INFO)
  with pytest.raises(ConfigError, match="multiple of"):
    gan.build(tiny(batch_size=10, pack=4), INFO)
  with pytest.raises(ConfigError, match="generates images"):
    gan.build(tiny(), DataInfo("tiny_shakespeare", "text", (256,), vocab_size=65))


# ----------------------------------------------------------------------------------------------
# Parallelism: one device, jit over 8 devices and pmap over 8 devices take the same step
# ----------------------------------------------------------------------------------------------


@pytest.mark.slow  # three compilations of a two-network step: 88 s measured on the shared 2-core CPU
def test_one_device_jit_and_pmap_give_the_same_parameters():
  devices = jax.devices()
  if len(devices) < 8:
    pytest.skip("needs 8 devices: XLA_FLAGS=--xla_force_host_platform_device_count=8 (tests/conftest.py)")
  # BatchNorm in both networks, two critic updates on strided halves, packing by 2.
  model = dict(n_critic=2, critic_batches="split", pack=2)
  data = [batch(64, seed=s) for s in range(2)]
  rngs = [jax.random.PRNGKey(10 + s) for s in range(2)]

  f = gan.build(tiny(batch_size=64, **model), INFO)
  init = f.init(jax.random.PRNGKey(0))

  def run(step, place):
    state = init
    for d, r in zip(data, rngs):
      state, metrics = step(state, place(d), r)
    return state, metrics

  single, m_single = run(jax.jit(f.train_step), lambda d: jax.device_put(d, devices[0]))

  mesh = Mesh(np.array(devices[:8]), ("data",))
  sharded = run(jax.jit(f.train_step), lambda d: jax.device_put(d, NamedSharding(mesh, P("data"))))[0]

  # pmap as the trainer runs it: the parallel layer maps the family's global-batch step.
  par = Parallelism("pmap", 8)
  pstep = par.compile(gan.build(tiny(mode="pmap", batch_size=64, **model), INFO).train_step, returns_state=True)
  state = par.put_state(init)
  for d, r in zip(data, rngs):
    state, m_pmap = pstep(state, par.put_batch(jax.tree.map(np.asarray, d)), r)
  pmapped = par.one_copy(state)

  for other in (sharded, pmapped):
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5),
                 (single.params, single.extra), (other.params, other.extra))
  np.testing.assert_allclose(float(m_single["d_loss"]), float(m_pmap["d_loss"][0]), rtol=1e-4)
  assert not tree_equal(single.params, init.params)


# ----------------------------------------------------------------------------------------------
# The experiment configs
# ----------------------------------------------------------------------------------------------


def _load(name, arg=None):
  spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, "experiments", f"{name}.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg) if arg is not None else module.get_config()


@pytest.mark.parametrize("name,arg,shape,g_params,d_params", [
    # DCGAN-tensorflow at 28x28 (PacGAN's code): dense 100 -> 2*2*512, deconvs 5x5.
    ("dcgan_mnist", None, (28, 28, 1), None, None),
    ("wgan_gp_mnist", None, (28, 28, 1), None, None),
    ("sngan_fashion_mnist", "cnn_cond", (28, 28, 1), None, None),
    ("sngan_fashion_mnist", "resnet", (28, 28, 1), None, None),
    ("pacgan_stacked_mnist", "2", (28, 28, 3), None, None),
])
def test_experiment_configs_build_at_their_sizes(name, arg, shape, g_params, d_params):
  from genjax.config import validate
  exp = validate(_load(name, arg), num_devices=1)
  info = DataInfo(exp.data.name, "image", shape, num_classes=10 if name != "pacgan_stacked_mnist" else 1000)
  f = gan.build(exp, info)
  state = jax.eval_shape(f.init, jax.random.PRNGKey(0))
  count = lambda tree: sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))
  g, d = count(state.params["g"]), count(state.params["d"])
  if name == "dcgan_mnist":
    # Independently: dense 100*2048+2048, deconvs 5*5*(512*256 + 256*128 + 128*64 + 64*1) + biases,
    # BatchNorm scale/offset on 2048 + 256 + 128 + 64 channels... counted by hand:
    # (layers followed by BatchNorm have no bias).
    dense = 100 * 2 * 2 * 512
    deconv = 25 * (512 * 256 + 256 * 128 + 128 * 64 + 64 * 1) + 1
    bn = 2 * (512 + 256 + 128 + 64)
    assert g == dense + deconv + bn
    conv = 25 * (1 * 64 + 64 * 128 + 128 * 256 + 256 * 512) + 64
    assert d == conv + 2 * (128 + 256 + 512) + (2 * 2 * 512 + 1)
  if name == "pacgan_stacked_mnist":
    first_kernel = state.params["d"]["Conv_0"]["kernel"]
    assert first_kernel.shape == (5, 5, 6, 64)  # two 3-channel images packed along channels
  assert g > 1e6 and d > 5e5  # paper-sized networks, not test toys


def test_a_researcher_calls_the_losses_under_their_own_jit():
  """The module-level losses need no Experiment or build: a discriminator and a generator
  update written by hand with optax give the parameters the family's step gives."""
  import functools

  import optax
  exp = tiny(g_norm="none", d_norm="none", loss="hinge")
  net = gan.make_model(exp.model, INFO)
  state = gan.build(exp, INFO).init(jax.random.PRNGKey(0))
  data = batch(16)
  keys = gan.with_keys(data, jax.random.PRNGKey(3))["keys"]
  tx = optax.adam(1e-2, b1=0.5)

  @jax.jit
  def by_hand(g, d):
    d_loss = functools.partial(gan.discriminator_loss, model=net)
    grads, (metrics, _) = jax.grad(d_loss, has_aux=True)(d, {}, {"params": g}, data["image"], data["label"], keys, 0)
    d = optax.apply_updates(d, tx.update(grads, tx.init(d), d)[0])
    g_loss = functools.partial(gan.generator_loss, model=net)
    grads, _ = jax.grad(g_loss, has_aux=True)(g, {}, {"params": d}, keys, 1)
    return optax.apply_updates(g, tx.update(grads, tx.init(g), g)[0]), d, metrics

  g, d, metrics = by_hand(state.params["g"], state.params["d"])
  stepped, logged = jax.jit(gan.build(exp, INFO).train_step)(state, data, jax.random.PRNGKey(3))
  np.testing.assert_allclose(float(metrics["d_loss"]), float(logged["d_loss"]), rtol=1e-6)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7), (g, d),
               (stepped.params["g"], stepped.params["d"]))
  assert not tree_equal(g, state.params["g"])
