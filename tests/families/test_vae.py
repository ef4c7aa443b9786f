"""Tests of the VAE family: the bounds against independent numpy/scipy computations, the k=5000
estimator against an exact likelihood, sampling, masking, and pmap == one device."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from genjax import families
from genjax.config import ConfigError, Experiment, Optim, Parallel, Train
from genjax.core.placement import place
from genjax.data.info import DataInfo
from genjax.families import vae

BINARY_2x2 = DataInfo("tiny", "image", (2, 2, 1), binary=True)
GREY_2x2 = DataInfo("tiny", "image", (2, 2, 1))


def make(info, **model):
  exp = Experiment(model=vae.Config(**model), train=Train(steps=10, batch_size=16))
  return exp, vae.make_model(exp.model, info)


def init_variables(model, seed=0):
  return vae.init(jax.random.key(seed), model)


def random_params(variables, seed, scale=0.7):
  """Replaces every parameter with N(0, scale^2) values so no term is trivially zero."""
  leaves, tree = jax.tree.flatten(variables)
  rng = np.random.default_rng(seed)
  return jax.tree.unflatten(tree, [jnp.asarray(rng.normal(0, scale, leaf.shape), jnp.float32) for leaf in leaves])


# ----------------------------------------------------------------------------------------------
# The ELBO of a tiny model, computed again with numpy
# ----------------------------------------------------------------------------------------------


def numpy_terms(p, x_BxD, eps_BxKxZ, likelihood, num_bins=256):
  """The 1-hidden-layer tanh VAE written out in numpy: (recon f64[B], kl f64[B], log_w f64[B,K])."""
  enc = p["x_encoder"]["Dense_0"]
  x_in = (x_BxD + 1) / 2 if likelihood == "bernoulli" else x_BxD  # Bernoulli models see {0,1}
  h = np.tanh(x_in @ enc["kernel"] + enc["bias"])
  out = h @ p["q_heads_0"]["kernel"] + p["q_heads_0"]["bias"]
  z_dim = out.shape[-1] // 2
  mu, log_sd = out[:, :z_dim], out[:, z_dim:]
  z = mu[:, None] + np.exp(log_sd)[:, None] * eps_BxKxZ
  dec = p["decoder_mlp"]["Dense_0"]
  hd = np.tanh(z @ dec["kernel"] + dec["bias"])
  o = hd @ p["decoder_out"]["kernel"] + p["decoder_out"]["bias"]
  if likelihood == "bernoulli":
    probs = 1 / (1 + np.exp(-o))
    log_px = np.sum(stats.bernoulli.logpmf(x_in[:, None], probs), -1)
  else:  # discretized logistic, scale output interleaved with the mean per pixel
    mean, log_s = o[..., 0::2], np.maximum(o[..., 1::2], vae.MIN_LOG_SCALE)
    x = x_BxD[:, None]
    half = 1 / (num_bins - 1)
    upper = np.where(x > 1 - half, 1.0, stats.logistic.cdf(x + half, mean, np.exp(log_s)))
    lower = np.where(x < -1 + half, 0.0, stats.logistic.cdf(x - half, mean, np.exp(log_s)))
    log_px = np.sum(np.log(upper - lower), -1)
  log_pz = np.sum(stats.norm.logpdf(z), -1)
  log_qz = np.sum(stats.norm.logpdf(z, mu[:, None], np.exp(log_sd)[:, None]), -1)
  kl = np.sum(0.5 * (mu**2 + np.exp(2 * log_sd) - 1) - log_sd, -1)
  return log_px.mean(1), kl, log_px + log_pz - log_qz


@pytest.mark.parametrize("likelihood,info", [("bernoulli", BINARY_2x2), ("logistic", GREY_2x2)])
def test_elbo_and_iwae_match_numpy(likelihood, info):
  _, model = make(info, hidden=(3,), latents=(2,), likelihood=likelihood, num_bins=5)
  variables = random_params(init_variables(model), seed=1)
  rng = np.random.default_rng(0)
  if info.binary:
    x = np.sign(rng.normal(size=(4, 2, 2, 1))).astype(np.float32)
  else:  # on the 5-level grid, including both edge bins
    x = rng.choice(np.linspace(-1, 1, 5), size=(4, 2, 2, 1)).astype(np.float32)
  eps = rng.normal(size=(4, 3, 2)).astype(np.float32)
  terms = model.apply(variables, jnp.asarray(x), [jnp.asarray(eps)])
  got = vae.elbo_terms(terms)
  p64 = jax.tree.map(lambda a: np.asarray(a, np.float64), variables["params"])
  recon, kl, log_w = numpy_terms(p64, x.reshape(4, -1).astype(np.float64), eps.astype(np.float64), likelihood, 5)
  np.testing.assert_allclose(got["recon"], recon, rtol=1e-5, atol=1e-4)
  np.testing.assert_allclose(got["kl"], kl, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(got["elbo"], recon - kl, rtol=1e-5, atol=1e-4)
  iwae = np.log(np.mean(np.exp(log_w), 1))
  np.testing.assert_allclose(vae.iwae_bound(terms), iwae, rtol=1e-5, atol=1e-4)


def test_discretized_logistic_is_a_distribution_with_the_stated_mean():
  mean = jnp.array([0.3, 1.4, -0.9, 0.0]).reshape(4, 1, 1, 1)
  log_scale = jnp.log(jnp.array([0.2, 0.5, 0.05, 3.0])).reshape(4, 1, 1, 1)
  for bins in (17, 256):
    levels = np.linspace(-1, 1, bins)
    probs = np.stack(
      [np.exp(vae.discretized_logistic_log_prob(jnp.full(mean.shape, v), mean, log_scale, bins)) for v in levels], -1
    )
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-4)
    np.testing.assert_allclose(
      vae.discretized_logistic_mean(mean, log_scale, bins).ravel(), (probs * levels).sum(-1), atol=1e-4
    )


# ----------------------------------------------------------------------------------------------
# The IWAE bound
# ----------------------------------------------------------------------------------------------


def test_iwae_bound_is_above_the_elbo_and_tightens_with_k():
  _, model = make(BINARY_2x2, hidden=(8,), latents=(2,))
  variables = random_params(init_variables(model), seed=2, scale=1.0)
  x = jnp.asarray(np.sign(np.random.default_rng(1).normal(size=(64, 2, 2, 1))), jnp.float32)
  keys = jax.random.split(jax.random.key(3), 64)
  bounds = {}
  for k in (1, 5, 50):
    # 40 independent draws per example so the expectation over samples is well estimated.
    def mean_bound(r, k=k):
      eps = vae.draw_eps(model, jax.vmap(lambda key: jax.random.fold_in(key, r))(keys), k)
      return jnp.mean(vae.iwae_bound(model.apply(variables, x, eps)))

    bounds[k] = float(jnp.mean(jax.jit(jax.vmap(mean_bound))(jnp.arange(40))))
  # Each sample set: log mean w >= mean log w (Jensen), exactly, not just in expectation.
  terms = model.apply(variables, x, vae.draw_eps(model, keys, 50))
  assert np.all(np.asarray(vae.iwae_bound(terms)) >= np.asarray(jnp.mean(vae.log_weights(terms), 1)) - 1e-5)
  assert bounds[1] < bounds[5] < bounds[50], bounds
  assert bounds[50] - bounds[1] > 0.05, bounds  # a visible gap for this mismatched posterior


def test_two_layer_elbo_is_the_k1_iwae_bound():
  info = DataInfo("t", "image", (4, 4, 1), binary=True)
  _, model = make(info, hidden=(6, 6), latents=(4, 2))
  variables = random_params(init_variables(model), seed=3, scale=0.5)
  assert set(variables["params"]) >= {"q_nets_0", "p_nets_0", "q_heads_1", "p_heads_0"}
  x = jnp.asarray(np.sign(np.random.default_rng(2).normal(size=(5, 4, 4, 1))), jnp.float32)
  terms = model.apply(variables, x, vae.draw_eps(model, jax.random.split(jax.random.key(0), 5), 1))
  np.testing.assert_allclose(vae.elbo_terms(terms)["elbo"], vae.iwae_bound(terms), rtol=1e-6, atol=1e-4)


# ----------------------------------------------------------------------------------------------
# The k=5000 estimator on a linear-Gaussian model, whose log p(x) is exact
# ----------------------------------------------------------------------------------------------


def test_importance_sampled_nll_matches_exact_linear_gaussian():
  """Decoder x = W z + b + N(0, diag(s^2)), z ~ N(0, I): the marginal is N(b, W W^T + diag(s^2))."""
  info = DataInfo("t", "image", (2, 2, 1))
  _, model = make(info, hidden=(), latents=(2,), likelihood="gaussian", scale="learned")
  variables = random_params(init_variables(model), seed=4, scale=0.6)
  p = jax.tree.map(lambda a: np.asarray(a, np.float64), variables["params"])
  w, b = p["decoder_out"]["kernel"], p["decoder_out"]["bias"]  # [Z, D], [D]
  noise_var = np.exp(2 * p["pixel_log_scale"].reshape(-1))
  cov = w.T @ w + np.diag(noise_var)
  # The encoder: the exact posterior N(S W Psi^-1 (x - b), S), S = (I + W Psi^-1 W^T)^-1, with its
  # mean perturbed and its (diagonal) std widened, so importance sampling has work to do.
  post_cov = np.linalg.inv(np.eye(2) + (w / noise_var) @ w.T)
  mean_kernel = (w / noise_var).T @ post_cov + np.random.default_rng(6).normal(0, 0.1, (4, 2))
  log_std = np.log(np.sqrt(np.diag(post_cov))) + 0.4
  q_kernel = np.concatenate([mean_kernel, np.zeros((4, 2))], 1)
  q_bias = np.concatenate([-b @ mean_kernel, log_std])
  params = {
    **variables["params"],
    "q_heads_0": {"kernel": jnp.asarray(q_kernel, jnp.float32), "bias": jnp.asarray(q_bias, jnp.float32)},
  }
  variables = {"params": params}
  x = np.random.default_rng(5).multivariate_normal(b, cov, size=6).astype(np.float32)
  exact = stats.multivariate_normal(b, cov).logpdf(x.astype(np.float64))
  keys = jax.random.split(jax.random.key(7), 6)
  estimate = jax.jit(lambda v, x, k: vae.importance_sampled_log_px(model, v, x, k, 5000, 500))(
    variables, jnp.asarray(x.reshape(6, 2, 2, 1)), keys
  )
  np.testing.assert_allclose(estimate, exact, atol=0.03)
  # The elbo with the same (mismatched) encoder is visibly lower: the test would see a bound.
  elbo = vae.elbo_terms(model.apply(variables, jnp.asarray(x.reshape(6, 2, 2, 1)), vae.draw_eps(model, keys, 200)))[
    "elbo"
  ]
  assert np.all(np.asarray(elbo) < exact - 0.05)

  # Unbiasedness of the importance-sampled p(x) itself (not its log): E[p_hat / p] = 1 for any k.
  def log_p_hat(r):
    rkeys = jax.vmap(lambda key: jax.random.fold_in(key, 1000 + r))(keys)
    return vae.iwae_bound(model.apply(variables, jnp.asarray(x.reshape(6, 2, 2, 1)), vae.draw_eps(model, rkeys, 10)))

  ratios = np.exp(np.asarray(jax.jit(jax.vmap(log_p_hat))(jnp.arange(300)), np.float64) - exact).ravel()
  assert abs(ratios.mean() - 1.0) < 4 * ratios.std() / np.sqrt(ratios.size) + 1e-3, ratios.mean()


# ----------------------------------------------------------------------------------------------
# The family's functions: sampling, training, evaluation, pictures, pmap
# ----------------------------------------------------------------------------------------------


def binary_batch(n, shape=(4, 4, 1), seed=0):
  proto = np.sign(np.random.default_rng(1234).normal(size=(3, *shape)))  # the same three prototypes
  rng = np.random.default_rng(seed)  # pick one per example and flip 10% of its pixels: learnable
  x = proto[rng.integers(0, 3, n)] * np.where(rng.random((n, *shape)) < 0.1, -1, 1)
  return {"image": x.astype(np.float32), "label": np.zeros(n, np.int32)}


INFO_4x4 = DataInfo("t", "image", (4, 4, 1), binary=True)


def tiny_exp(**model):
  model = {"hidden": (16,), "latents": (2,), "eval_samples": 40, "eval_chunk": 20, "eval_step_samples": 5, **model}
  return Experiment(model=vae.Config(**model), optim=Optim(learning_rate=3e-3), train=Train(steps=100, batch_size=16))


def test_sample_shapes_range_and_determinism():
  fam = families.build(tiny_exp(), INFO_4x4)
  state = fam.init(jax.random.key(0))
  sample = jax.jit(fam.sample, static_argnums=2)
  a = sample(state.variables(), jax.random.key(1), 7)
  b = sample(state.variables(), jax.random.key(1), 7)
  c = sample(state.variables(), jax.random.key(2), 7)
  assert a.shape == (7, 4, 4, 1) and a.dtype == jnp.float32
  assert float(a.min()) >= -1.0 and float(a.max()) <= 1.0
  np.testing.assert_array_equal(a, b)
  assert not np.allclose(a, c)

  model = vae.make_model(tiny_exp().model, INFO_4x4)
  params = state.variables()["params"]
  x = binary_batch(3)["image"]
  assert vae.encode(params, x, model).shape == (3, 2)
  line = vae.interpolate(params, x[0], x[1], model, 5)
  recon = vae.reconstruct(params, x, model)
  assert line.shape == (5, 4, 4, 1)
  np.testing.assert_allclose(line[0], recon[0], atol=1e-6)  # the ends are the reconstructions
  np.testing.assert_allclose(line[-1], recon[1], atol=1e-6)


def test_training_improves_the_elbo_and_evaluate_respects_the_mask():
  exp = tiny_exp()
  fam = families.build(exp, INFO_4x4)
  state = fam.init(jax.random.key(0))
  step = jax.jit(fam.train_step)
  first = None
  for i in range(100):
    state, metrics = step(state, binary_batch(16, seed=i), jax.random.key(i))
    first = first or float(metrics["loss"])
    assert set(metrics) == {"loss", "elbo", "kl", "recon"}
  assert int(state.step) == 100
  assert float(metrics["loss"]) < first - 3.0, (first, float(metrics["loss"]))
  np.testing.assert_allclose(metrics["elbo"], metrics["recon"] - metrics["kl"], rtol=1e-5)

  test = binary_batch(6, seed=99)
  padded = {
    "image": np.concatenate([test["image"], np.ones((2, 4, 4, 1), np.float32)]),
    "mask": np.array([1, 1, 1, 1, 1, 1, 0, 0], np.float32),
  }
  exact = {"image": test["image"], "mask": np.ones(6, np.float32)}
  out_padded = fam.evaluate(state, [padded], jax.random.key(5))
  out_exact = fam.evaluate(state, [exact], jax.random.key(5))
  assert out_padded["num_examples"] == 6
  for name in ("nll", "elbo", "kl", "recon"):
    np.testing.assert_allclose(out_padded[name], out_exact[name], rtol=1e-5)
  assert out_exact["nll"] <= -out_exact["elbo"] + 0.5  # IW estimate is tighter than the ELBO
  np.testing.assert_allclose(out_exact["bits_per_dim"], out_exact["nll"] / (16 * np.log(2)), rtol=1e-6)

  eval_metrics, _ = jax.jit(fam.eval_step)(state, padded, jax.random.key(6))
  assert set(eval_metrics) == {"elbo", "kl", "recon", "nll_k5"}

  pictures = jax.jit(fam.pictures)(state, binary_batch(64, seed=3), jax.random.key(0))
  assert pictures["reconstructions"].shape == (64, 4, 4, 1)
  np.testing.assert_array_equal(pictures["reconstructions"][:8], binary_batch(64, seed=3)["image"][:8])
  assert pictures["latent_traversal"].shape == (225, 4, 4, 1)


def test_config_errors_are_raised_before_compiling():
  with pytest.raises(ConfigError, match="binarize"):
    families.build(tiny_exp(likelihood="bernoulli"), GREY_2x2)
  with pytest.raises(ConfigError, match="divisible by 4"):
    families.build(tiny_exp(architecture="conv"), DataInfo("t", "image", (6, 6, 1)))
  with pytest.raises(ConfigError, match="eval_chunk"):
    families.build(tiny_exp(eval_samples=50, eval_chunk=20), INFO_4x4)


@pytest.mark.parametrize(
  "model",
  [
    dict(),
    pytest.param(
      dict(architecture="conv", conv_channels=(4, 8), hidden=(8,), objective="iwae", train_samples=3),
      marks=pytest.mark.slow,
    ),
  ],
)
def test_pmap_step_equals_one_device_step(model):
  if jax.device_count() < 8:
    pytest.skip("needs 8 devices: XLA_FLAGS=--xla_force_host_platform_device_count=8 (tests/conftest.py)")
  fam = families.build(tiny_exp(**model), INFO_4x4)
  state = fam.init(jax.random.key(0))
  batch = binary_batch(16, seed=1)
  step_one = jax.jit(fam.train_step)
  par = place(Parallel(mode="pmap", num_devices=8))
  step_many = par.compile(fam.train_step, returns_state=True)
  state_many = par.put_state(state)  # one copy per device
  shards = par.put_batch(batch)
  for i in range(2):
    rng = jax.random.key(10 + i)
    state, m1 = step_one(state, batch, rng)
    state_many, m8 = step_many(state_many, shards, rng)
  for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(state_many.params)):
    np.testing.assert_allclose(np.asarray(b)[0], a, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.asarray(b)[7], a, rtol=1e-4, atol=1e-5)
  assert set(m8) == set(m1)
  for name in m1:
    np.testing.assert_allclose(np.asarray(m8[name])[0], m1[name], rtol=1e-4)


# ----------------------------------------------------------------------------------------------
# A researcher's use: the module-level loss under their own jit and grad
# ----------------------------------------------------------------------------------------------


def test_module_loss_under_a_researchers_own_jit_and_grad():
  exp = tiny_exp()
  model = vae.make_model(exp.model, INFO_4x4)
  params = vae.init(jax.random.key(0), model)["params"]
  batch = {"image": jnp.asarray(binary_batch(16, seed=1)["image"])}
  rng = jax.random.key(3)
  loss_fn = jax.jit(functools.partial(vae.loss, model=model))
  value, metrics = loss_fn(params, batch, rng)
  np.testing.assert_allclose(metrics["loss"], value)
  np.testing.assert_allclose(metrics["elbo"], metrics["recon"] - metrics["kl"], rtol=1e-5)
  np.testing.assert_allclose(value, -metrics["elbo"], rtol=1e-5)  # beta = 1: the loss is -ELBO

  # The family's train step logs the same loss for the same params, batch and key.
  fam = families.build(exp, INFO_4x4)
  state = fam.init(jax.random.key(0))
  for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(params)):
    np.testing.assert_array_equal(a, b)
  _, logged = jax.jit(fam.train_step)(state, batch, rng)
  for name in ("loss", "elbo", "kl", "recon"):
    np.testing.assert_allclose(logged[name], metrics[name], rtol=1e-6)

  # Gradients are finite and non-zero, and one SGD step along them lowers the loss (same key).
  grads, _ = jax.jit(jax.grad(functools.partial(vae.loss, model=model), has_aux=True))(params, batch, rng)
  leaves = jax.tree.leaves(grads)
  assert all(bool(jnp.all(jnp.isfinite(g))) for g in leaves)
  assert sum(float(jnp.sum(jnp.square(g))) for g in leaves) > 1e-6
  stepped = jax.tree.map(lambda p, g: p - 1e-3 * g, params, grads)
  new_value, _ = loss_fn(stepped, batch, rng)
  assert float(new_value) < float(value), (float(new_value), float(value))


# ----------------------------------------------------------------------------------------------
# The importance-sampled NLL at the IWAE paper's shapes: a numpy replay and its FLOP count
# ----------------------------------------------------------------------------------------------


def test_the_iwae_papers_nll_is_a_float64_replay_of_the_same_draws_and_counts_its_flops():
  """100 MNIST-shaped images through the IWAE paper's 784-200-200-50 tanh VAE, 300 importance
  samples in chunks of 100 (the k=5000 evaluation is 50 such chunks): evaluate()'s NLL equals a
  float64 numpy replay of the same posterior draws to 1e-4 nats, so the flattened likelihood, the
  chunked loop and its running logsumexp change nothing; its FLOP count is the matmuls' hand count
  plus a few percent of elementwise work."""
  info = DataInfo("mnist", "image", (28, 28, 1), binary=True)
  cfg = vae.Config(hidden=(200, 200), latents=(50,), activation="tanh", eval_samples=300, eval_chunk=100)
  model = vae.make_model(cfg, info)
  params = vae.init(jax.random.key(0), model)["params"]
  x = np.where(np.random.default_rng(3).random((100, 28, 28, 1)) < 0.15, 1.0, -1.0).astype(np.float32)
  rng = jax.random.key(9)
  out = vae.evaluate({"params": params}, [{"image": x, "mask": np.ones(100, np.float32)}], rng, model)

  # The same draws: batch 0 uses fold_in(rng, 0), its NLL keys fold_in(that, 0), chunk c fold_in(key, c).
  from genjax.core import parallel

  keys = parallel.example_keys(jax.random.fold_in(jax.random.fold_in(rng, 0), 0), 100)
  eps = np.concatenate(
    [
      np.asarray(vae.draw_eps(model, jax.vmap(lambda k, c=c: jax.random.fold_in(k, c))(keys), 100)[0]) for c in range(3)
    ],
    axis=1,
  ).astype(np.float64)  # [100, 300, 50]
  p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
  dense = lambda h, layer: h @ layer["kernel"] + layer["bias"]  # noqa: E731
  x01 = (x.reshape(100, -1).astype(np.float64) + 1) / 2
  h = np.tanh(dense(np.tanh(dense(x01, p["x_encoder"]["Dense_0"])), p["x_encoder"]["Dense_1"]))
  mu, log_sd = np.split(dense(h, p["q_heads_0"]), 2, axis=-1)
  z = mu[:, None] + np.exp(log_sd)[:, None] * eps
  hd = np.tanh(dense(np.tanh(dense(z, p["decoder_mlp"]["Dense_0"])), p["decoder_mlp"]["Dense_1"]))
  logits = dense(hd, p["decoder_out"])  # [100, 300, 784]
  log_px_z = np.sum(x01[:, None] * logits - np.logaddexp(0.0, logits), -1)
  log_pz = np.sum(stats.norm.logpdf(z), -1)
  log_qz = np.sum(stats.norm.logpdf(z, mu[:, None], np.exp(log_sd)[:, None]), -1)
  log_w = log_px_z + log_pz - log_qz
  want = -np.mean(np.logaddexp.reduce(log_w, axis=1) - np.log(300))
  assert abs(out["nll"] - want) < 1e-4, (out["nll"], want)

  matmuls = 2 * 100 * (300 * (50 * 200 + 200 * 200 + 200 * 784) + 4 * (784 * 200 + 200 * 200 + 200 * 100))
  assert matmuls < out["flops"] < 1.08 * matmuls, (out["flops"], matmuls)


def test_pythaes_vae_config_is_its_reproducibility_script():
  """experiments/vae_pythae_binarized_mnist.py against pythae's reproducibility/vae.py: a
  784-400-(40 mean, 40 log-variance) encoder and 40-400-784 decoder (676,864 parameters, counted
  from the layer sizes), Adam at 1e-4 multiplied by 10^(-1/5) after epochs 200 and 350 of 500
  steps (MultiStepLR stepped per epoch), 500 epochs of batch 100 on the fixed binarization."""
  from genjax import config as config_lib
  from genjax.core.optim import schedule

  exp = config_lib.load_config_file("experiments/vae_pythae_binarized_mnist.py")
  info = DataInfo("binarized_mnist", "image", (28, 28, 1), binary=True)
  params = vae.init(jax.random.key(0), vae.make_model(exp.model, info))["params"]
  want = (784 * 400 + 400) + (400 * 80 + 80) + (40 * 400 + 400) + (400 * 784 + 784)
  assert sum(int(np.prod(p.shape)) for p in jax.tree.leaves(params)) == want == 676_864
  assert exp.data.name == "binarized_mnist" and exp.data.binarize == "none" and exp.model.activation == "relu"
  assert exp.train.batch_size == 100 and exp.train.steps == 500 * 500
  lr = schedule(exp.optim, exp.train.steps)
  for step, epochs_after_milestones in [(0, 0), (99_999, 0), (100_000, 1), (174_999, 1), (175_000, 2), (249_999, 2)]:
    np.testing.assert_allclose(float(lr(step)), 1e-4 * 10 ** (-epochs_after_milestones / 5), rtol=1e-6)
  assert exp.model.eval_samples == 200 and exp.optim.name == "adam" and exp.optim.eps == 1e-8
