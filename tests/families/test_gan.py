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

from genjax import families
from genjax.config import ConfigError, Experiment, Optim, Parallel, Train
from genjax.config import Data as C_Data
from genjax.core import step as step_lib
from genjax.core.optim import make_optimizer
from genjax.core.placement import place
from genjax.core.state import EMA
from genjax.data.info import DataInfo
from genjax.families import gan
from genjax.families.gan import losses, models

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
INFO = DataInfo("test", "image", (8, 8, 1), num_classes=10)


def tiny(mode="jit", batch_size=16, **model):
  """An 8x8 DCGAN small enough to compile in seconds."""
  cfg = dict(g_widths=(8, 4), d_widths=(4, 8), latent_dim=6, kernel_size=3)
  cfg.update(model)
  return Experiment(
    family="gan",
    model=gan.Config(**cfg),
    optim=Optim(learning_rate=1e-2, b1=0.5),
    train=Train(steps=10, batch_size=batch_size),
    parallel=Parallel(mode=mode),
  )


def batch(n, shape=(8, 8, 1), seed=0):
  rng = np.random.default_rng(seed)
  return {
    "image": jnp.asarray(rng.uniform(-1, 1, (n,) + shape), jnp.float32),
    "label": jnp.asarray(rng.integers(0, 10, n), jnp.int32),
  }


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
  np.testing.assert_allclose(
    losses.discriminator_loss("non_saturating", real, fake), -np.log(sig(real)) - np.log(1 - sig(fake)), rtol=1e-5
  )
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
    _, new = D.apply(
      {"params": params, models.SPECTRAL: stats}, x, train=True, update_stats=True, mutable=[models.SPECTRAL]
    )
    return new[models.SPECTRAL]

  for _ in range(60):
    stats = iterate(stats)
  flat_sigmas = {
    "/".join(str(getattr(k, "key", k)) for k in path): v for path, v in jax.tree_util.tree_leaves_with_path(stats)
  }
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
  state = families.build(exp, INFO).init(jax.random.PRNGKey(0))
  net = gan.make_model(exp.model, INFO)
  tx = make_optimizer(exp.optim, 10)
  d_update, g_update = gan.updates(net)
  data = gan.with_keys(batch(16), jax.random.PRNGKey(1))
  update = lambda u, i: jax.jit(lambda s, b: step_lib.apply_update(s, b, None, u, i, tx, EMA(0.9)))

  after_d, metrics = update(d_update, 0)(state, data)
  assert np.isfinite(float(metrics["d_loss"]))
  assert not tree_equal(after_d.params["d"], state.params["d"])
  assert tree_equal(after_d.params["g"], state.params["g"])
  assert tree_equal(after_d.opt_state["g"], state.opt_state["g"])
  assert tree_equal(after_d.ema_params, state.ema_params)
  assert tree_equal(after_d.extra["batch_stats"]["g"], state.extra["batch_stats"]["g"])
  assert tree_equal(after_d.ema_extra, state.ema_extra)

  after_g, _ = update(g_update, 0)(state, data)
  assert not tree_equal(after_g.params["g"], state.params["g"])
  assert not tree_equal(after_g.ema_params["g"], state.ema_params["g"])
  assert not tree_equal(after_g.extra["batch_stats"]["g"], state.extra["batch_stats"]["g"])
  # The EMA generator's BatchNorm statistics follow the raw ones (decay 0.1 at the first update).
  jax.tree.map(
    lambda e, old, new: np.testing.assert_allclose(e, 0.1 * old + 0.9 * new, rtol=1e-5, atol=1e-7),
    after_g.ema_extra["batch_stats"]["g"],
    state.ema_extra["batch_stats"]["g"],
    after_g.extra["batch_stats"]["g"],
  )
  assert tree_equal(after_g.params["d"], state.params["d"])
  assert tree_equal(after_g.opt_state["d"], state.opt_state["d"])
  assert tree_equal(
    {k: v["d"] for k, v in after_g.extra.items() if "d" in v}, {k: v["d"] for k, v in state.extra.items() if "d" in v}
  )


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
  np.testing.assert_allclose(full[:, o : o + n_out, o : o + n_out], want, rtol=1e-5, atol=1e-5)


def test_dcgan_weights_start_as_in_the_paper():
  """DCGAN: every weight ~ N(0, 0.02) (Radford et al. 2016); SNGAN keeps the LeCun default,
  whose scale depends on the fan-in."""
  z = jnp.zeros((2, 100))
  x = jnp.zeros((2, 28, 28, 1))
  for arch, widths in (("dcgan", (512, 256, 128, 64)), ("sngan_cnn", (512, 256, 128))):
    g_net = models.Generator(arch=arch, out_shape=(28, 28, 1), widths=widths)
    d_net = models.Discriminator(arch=arch, widths=(64, 128, 256, 512))
    # jitted: the same draws as op by op, in one compiled call instead of hundreds of small ones
    g = jax.jit(lambda r, net=g_net: net.init(r, z, train=False))(jax.random.key(0))
    d = jax.jit(lambda r, net=d_net: net.init(r, x, train=False, update_stats=False))(jax.random.key(1))
    kernels = [
      leaf
      for path, leaf in jax.tree_util.tree_leaves_with_path((g["params"], d["params"]))
      if getattr(path[-1], "key", None) == "kernel" and leaf.size > 1000
    ]
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
  exp = tiny(
    batch_size=20,
    g_norm="none",
    d_norm="none",
    loss="wasserstein",
    gp_weight=10.0,
    n_critic=5,
    critic_batches="split",
    latent_dist="normal",
  )
  f = families.build(exp, INFO)
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
  f = families.build(exp, INFO)
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
    families.build(tiny(gp_weight=10.0), INFO)
  with pytest.raises(ConfigError, match="multiple of"):
    families.build(tiny(batch_size=10, pack=4), INFO)
  with pytest.raises(ConfigError, match="generates images"):
    families.build(tiny(), DataInfo("tiny_shakespeare", "text", (256,), vocab_size=65))


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

  f = families.build(tiny(batch_size=64, **model), INFO)
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
  par = place(Parallel(mode="pmap", num_devices=8))
  pstep = par.compile(families.build(tiny(mode="pmap", batch_size=64, **model), INFO).train_step, returns_state=True)
  state = par.put_state(init)
  for d, r in zip(data, rngs):
    state, m_pmap = pstep(state, par.put_batch(jax.tree.map(np.asarray, d)), r)
  pmapped = par.one_copy(state)

  for other in (sharded, pmapped):
    jax.tree.map(
      lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5),
      (single.params, single.extra),
      (other.params, other.extra),
    )
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


@pytest.mark.parametrize(
  "name,arg,shape,g_params,d_params",
  [
    # DCGAN-tensorflow at 28x28 (PacGAN's code): dense 100 -> 2*2*512, deconvs 5x5.
    ("dcgan_mnist", None, (28, 28, 1), None, None),
    ("wgan_gp_mnist", None, (28, 28, 1), None, None),
    ("sngan_fashion_mnist", "cnn_cond", (28, 28, 1), None, None),
    ("sngan_fashion_mnist", "resnet", (28, 28, 1), None, None),
    ("pacgan_stacked_mnist", "2", (28, 28, 3), None, None),
  ],
)
def test_experiment_configs_build_at_their_sizes(name, arg, shape, g_params, d_params):
  from genjax.config import validate

  exp = validate(_load(name, arg))
  info = DataInfo(exp.data.name, "image", shape, num_classes=10 if name != "pacgan_stacked_mnist" else 1000)
  f = families.build(exp, info)
  state = jax.eval_shape(f.init, jax.random.PRNGKey(0))
  count = lambda tree: sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))
  g, d = count(state.params["g"]), count(state.params["d"])
  if name == "dcgan_mnist":
    # DCGAN-tensorflow's conditional MNIST networks, counted by hand (layers followed by
    # BatchNorm have no bias; BN has a scale and an offset per channel):
    assert g == (110 * 1024 + 2 * 1024) + (1034 * 7 * 7 * 128 + 2 * 7 * 7 * 128) + (25 * 138 * 128 + 2 * 128) + (
      25 * 138 * 1 + 1
    )
    assert d == (25 * 11 * 11 + 11) + (25 * 21 * 74 + 2 * 74) + (3636 * 1024 + 2 * 1024) + (1034 + 1)
  if name == "pacgan_stacked_mnist":
    # PacGAN's (DCGAN-tensorflow's generic) networks at 28x28x3: dense 100 -> 2*2*512, deconvs 5x5.
    dense = 100 * 2 * 2 * 512
    deconv = 25 * (512 * 256 + 256 * 128 + 128 * 64 + 64 * 3) + 3
    assert g == dense + deconv + 2 * (512 + 256 + 128 + 64)  # BN per channel of the 2x2x512 map on
    conv = 25 * (6 * 64 + 64 * 128 + 128 * 256 + 256 * 512) + 64
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
  state = families.build(exp, INFO).init(jax.random.PRNGKey(0))
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
  stepped, logged = jax.jit(families.build(exp, INFO).train_step)(state, data, jax.random.PRNGKey(3))
  np.testing.assert_allclose(float(metrics["d_loss"]), float(logged["d_loss"]), rtol=1e-6)
  jax.tree.map(
    lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7),
    (g, d),
    (stepped.params["g"], stepped.params["d"]),
  )
  assert not tree_equal(g, state.params["g"])


# ----------------------------------------------------------------------------------------------
# Faithful reference settings: kernel sizes, the DCGAN-tensorflow MNIST networks, PacGAN's
# generator calls, [0, 1] pixels, the EMA generator's BatchNorm statistics
# ----------------------------------------------------------------------------------------------


def _kernels(params, name):
  return {
    "/".join(str(getattr(k, "key", k)) for k in path): leaf.shape
    for path, leaf in jax.tree_util.tree_leaves_with_path(params)
    if name in jax.tree_util.keystr(path)
  }


@pytest.mark.parametrize(
  "arch,g_widths,d_widths,kernel,g_sizes",
  [
    ("dcgan", (64, 32, 16, 8), (8, 16, 32, 64), 5, [5, 5, 5, 5]),
    ("sngan_cnn", (64, 32, 16), (8, 16, 32, 64), 4, [3, 4, 4]),  # two 4x4 deconvolutions, a 3x3 output conv
    ("dcgan_mnist", (64, 16), (8, 32), 5, [5, 5]),
  ],
)
def test_each_architecture_has_its_papers_kernel_size(arch, g_widths, d_widths, kernel, g_sizes):
  cfg = gan.Config(arch=arch, g_widths=g_widths, d_widths=d_widths, conditional=arch == "dcgan_mnist")
  info = DataInfo("mnist", "image", (28, 28, 1), num_classes=10)
  model = gan.make_model(cfg, info)
  params = jax.eval_shape(
    families.build(Experiment(family="gan", model=cfg, train=Train(batch_size=8)), info).init, jax.random.key(0)
  ).params
  sizes = sorted(s[0] for s in _kernels(params["g"], "kernel").values() if len(s) == 4)
  assert sizes == g_sizes
  assert model.generator.kernel_size == kernel
  # An explicit kernel size still wins.
  assert gan.make_model(dataclasses.replace(cfg, kernel_size=3), info).generator.kernel_size == 3


def test_dcgan_mnist_is_dcgan_tensorflows_conditional_network():
  cfg = gan.Config(arch="dcgan_mnist", g_widths=(1024, 128), d_widths=(64, 1024), conditional=True)
  info = DataInfo("mnist", "image", (28, 28, 1), num_classes=10)
  params = jax.eval_shape(
    families.build(Experiment(family="gan", model=cfg, train=Train(batch_size=8)), info).init, jax.random.key(0)
  ).params
  kernels = lambda net: sorted(s for p, s in _kernels(params[net], "kernel").items())
  # model.py's y_dim branch, hand-counted: z + y -> 1024; 1024 + y -> 7*7*128; deconvs over 128 + y.
  assert kernels("g") == sorted([(110, 1024), (1034, 7 * 7 * 128), (5, 5, 138, 128), (5, 5, 138, 1)])
  # D: x + y maps -> 11 filters; 11 + 10 maps -> 74; flatten 7*7*74 + y -> 1024; 1024 + y -> 1.
  assert kernels("d") == sorted([(5, 5, 11, 11), (5, 5, 21, 74), (7 * 7 * 74 + 10, 1024), (1034, 1)])
  with pytest.raises(ConfigError, match="conditional"):
    families.build(Experiment(family="gan", model=dataclasses.replace(cfg, conditional=False)), info)


def test_pacgan_generates_each_slot_of_a_pack_in_its_own_call():
  exp = tiny(batch_size=8, pack=2)
  net = gan.make_model(exp.model, INFO)
  state = families.build(exp, INFO).init(jax.random.key(0))
  g_vars = {"params": state.params["g"], "batch_stats": state.extra["batch_stats"]["g"]}
  z = jax.random.normal(jax.random.key(1), (8, 6))
  y = jnp.zeros((8,), jnp.int32)
  packed, _ = gan.generate_for_packs(g_vars, z, y, net, train=True)
  slot0, _ = gan.generate(g_vars, z[0::2], y[0::2], net, train=True)
  slot1, _ = gan.generate(g_vars, z[1::2], y[1::2], net, train=True)
  np.testing.assert_allclose(packed[0::2], slot0, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(packed[1::2], slot1, rtol=1e-5, atol=1e-6)
  joint, _ = gan.generate(g_vars, z, y, net, train=True)  # one call: statistics over both slots
  assert not np.allclose(joint, packed, atol=1e-4)


def test_sigmoid_pixels_take_the_penalty_on_unit_range_images():
  """With pixels="sigmoid" the critic reads x in [-1, 1] as (x + 1) / 2, and the gradient penalty
  is that of a critic on the [0, 1] images (WGAN-GP's code), not of the [-1, 1] ones."""
  D = models.Discriminator(arch="dcgan", widths=(4, 8), kernel_size=3, norm=False, pixels="sigmoid")
  real, fake = batch(3)["image"], batch(3, seed=1)["image"]
  params = D.init(jax.random.key(0), real, train=False, update_stats=False)
  critic = lambda x: D.apply(params, x, train=True, update_stats=False)
  on_unit = lambda u: critic(2.0 * u - 1.0)  # the same critic, written on [0, 1] images
  eps = jnp.array([0.2, 0.5, 0.9])
  ours = losses.gradient_penalty(critic, real, fake, eps, scale=2.0)
  unit = losses.gradient_penalty(on_unit, (real + 1) / 2, (fake + 1) / 2, eps)
  np.testing.assert_allclose(ours, unit, rtol=1e-5)
  # The unit-range gradient is twice the [-1, 1] one (what an unscaled penalty would constrain).
  np.testing.assert_allclose(
    losses._input_grad_norms(on_unit, (real + 1) / 2), 2.0 * losses._input_grad_norms(critic, real), rtol=1e-4
  )  # 1e-12 in the sqrt
  assert float(jnp.min(losses._input_grad_norms(critic, real))) > 1e-4
  # And G's sigmoid output is the [0, 1] image mapped to [-1, 1].
  G = models.Generator(arch="dcgan", out_shape=(8, 8, 1), widths=(8, 4), kernel_size=3, norm=False, pixels="sigmoid")
  z = jax.random.normal(jax.random.key(2), (2, 6))
  g = G.init(jax.random.key(3), z, train=False)
  images = G.apply(g, z, train=False)
  assert float(jnp.min(images)) > -1 and float(jnp.max(images)) < 1


def test_reused_noise_and_real_labels_are_what_every_update_draws():
  exp = tiny(reuse_noise=True, conditional=True, fake_labels="real")
  net = gan.make_model(exp.model, INFO)
  keys = jax.random.split(jax.random.key(0), 4)
  z0, _, _ = gan.draw_inputs(net, keys, 0)
  z2, _, _ = gan.draw_inputs(net, keys, 2)
  np.testing.assert_array_equal(z0, z2)
  fresh = gan.make_model(dataclasses.replace(exp.model, reuse_noise=False), INFO)
  assert not np.allclose(gan.draw_inputs(fresh, keys, 0)[0], gan.draw_inputs(fresh, keys, 2)[0])
  with pytest.raises(ConfigError, match="conditional"):
    families.build(tiny(fake_labels="real"), INFO)


def test_the_ema_generator_samples_with_its_own_batchnorm_statistics():
  exp = dataclasses.replace(tiny(), optim=Optim(learning_rate=1e-2, b1=0.5, ema_decay=0.99))
  family = families.build(exp, INFO)
  state = family.init(jax.random.key(0))
  step = jax.jit(family.train_step)
  for i in range(3):
    state, _ = step(state, batch(16, seed=i), jax.random.key(i))
  net = gan.make_model(exp.model, INFO)
  raw_stats, ema_stats = state.extra["batch_stats"]["g"], state.ema_extra["batch_stats"]["g"]
  assert not tree_equal(raw_stats, ema_stats)
  rng = jax.random.key(5)
  sampled = family.sample(state.variables(ema=True), rng, 4)
  with_ema_stats = gan.sample_generator({"params": state.ema_params["g"], "batch_stats": ema_stats}, rng, 4, net)
  with_raw_stats = gan.sample_generator({"params": state.ema_params["g"], "batch_stats": raw_stats}, rng, 4, net)
  np.testing.assert_array_equal(sampled, with_ema_stats)
  assert not np.allclose(sampled, with_raw_stats)


def test_reference_configs_say_what_the_papers_say():
  wgan = _load("wgan_gp_mnist").model
  assert (wgan.weight_init, wgan.crop, wgan.pixels, wgan.n_critic, wgan.critic_batches) == (
    "tflib",
    "top_left",
    "sigmoid",
    5,
    "split",
  )
  dcgan = _load("dcgan_mnist")
  assert (dcgan.model.arch, dcgan.model.g_steps, dcgan.model.reuse_noise, dcgan.model.fake_labels) == (
    "dcgan_mnist",
    2,
    True,
    "real",
  )
  cnn, resnet = _load("sngan_fashion_mnist", "cnn"), _load("sngan_fashion_mnist", "resnet")
  assert cnn.model.kernel() == 4 and cnn.model.d_learning_rate is None
  assert (cnn.optim.learning_rate, cnn.optim.b1, cnn.optim.b2, cnn.model.n_critic) == (2e-4, 0.5, 0.999, 1)
  assert (resnet.optim.learning_rate, resnet.optim.b1, resnet.optim.b2, resnet.model.n_critic) == (2e-4, 0.0, 0.9, 5)
  pac = _load("pacgan_stacked_mnist", "2")
  assert (pac.train.steps, pac.train.batch_size, pac.model.g_steps, pac.model.reuse_noise) == (100_000, 128, 2, True)


@pytest.mark.slow  # 96 steps of the real dcgan_mnist network on MNIST: about a minute and a half
def test_dcgan_mnist_draws_every_digit_it_is_asked_for(tmp_path):
  """The experiment's network and settings, 96 steps on MNIST: the MNIST classifier reads most
  samples as the digit they were conditioned on, and every digit is drawn (no collapse)."""
  from genjax import data as data_lib
  from genjax.metrics import features
  from genjax.trainer import loop
  from genjax.trainer import workdir as workdir_lib

  try:
    net = features.get("classifier_mnist")
    data_lib.load(C_Data("mnist"), "test")
  except (features.FeatureNetError, FileNotFoundError) as e:
    pytest.skip(f"needs prepared MNIST and the trained MNIST classifier: {e}")
  exp = _load("dcgan_mnist", "cpu")
  exp = dataclasses.replace(
    exp,
    train=dataclasses.replace(exp.train, steps=96, log_every=48, eval_every=96, checkpoint_every=96, progress=False),
    # one device, as `python -m genjax.train` runs it on a CPU (the 8 simulated devices of the
    # tests would split each batch 8 ways on 2 cores, 3-4x slower, and test nothing more)
    parallel=dataclasses.replace(exp.parallel, num_devices=1),
  )
  loop.train(exp, str(tmp_path))
  _, family, state, _ = workdir_lib.restore(str(tmp_path))
  images = np.asarray(jax.jit(family.sample, static_argnums=2)(state.variables(), jax.random.key(0), 500))
  predicted = np.argmax(net.apply(images)[1], -1)
  asked = np.arange(500) % 10  # the sampler cycles through the classes
  fractions = np.bincount(predicted, minlength=10) / 500
  assert np.mean(predicted == asked) > 0.5, np.mean(predicted == asked)
  # A collapsed generator draws some digits not at all. So early in training how often the
  # least-drawn digit comes out moves from one trajectory to the next (96 steps on 2026-12-02: 66%
  # read as asked, the rarest digit 2.8%; 192 steps on 2026-12-02: 1.2%, on 2026-11-28: 4%), so the
  # test asks for every digit at least once in 500 rather than for a share. The full 2,808-step
  # run's spread (every digit >= 7.6%) is in RESULTS.md.
  assert fractions.min() > 0, fractions
