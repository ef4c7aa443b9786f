"""The diffusion Family on a tiny U-Net: training, evaluation, and sampling as one compiled scan."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax import config as C
from genjax import families
from genjax.config import ConfigError
from genjax.data.info import DataInfo
from genjax.families import diffusion
from genjax.families.diffusion import SampleOptions
from genjax.nn.unet import UNet

INFO = DataInfo(name="digits", kind="image", shape=(8, 8, 1), num_classes=10)


def experiment(**model):
  cfg = diffusion.Config(
    **{
      "ch": 32,
      "ch_mult": (1, 2),
      "num_res_blocks": 1,
      "attn_resolutions": (4,),
      "timesteps": 40,
      "class_conditional": True,
      "guidance_scale": 2.0,
      "sampler": "ddim",
      "sample_steps": 7,
      **model,
    }
  )
  return C.Experiment(
    family="diffusion",
    model=cfg,
    optim=C.Optim(learning_rate=1e-3, ema_decay=0.9),
    train=C.Train(steps=10, batch_size=8),
  )


def batch(n=8, seed=0):
  rng = np.random.default_rng(seed)
  return {
    "image": jnp.asarray(rng.integers(0, 256, (n, 8, 8, 1)) / 127.5 - 1, jnp.float32),
    "label": jnp.asarray(rng.integers(0, 10, n), jnp.int32),
  }


@pytest.fixture(scope="module")
def trained():
  family = families.build(experiment(), INFO)
  state = family.init(jax.random.key(0))
  step = jax.jit(family.train_step)
  first = state
  for i in range(2):
    state, metrics = step(state, batch(seed=i), jax.random.key(i))
  return family, first, state, metrics


def test_train_step_moves_params_and_ema(trained):
  _, first, state, metrics = trained
  assert int(state.step) == 2 and np.isfinite(float(metrics["loss"]))
  delta = lambda a, b: max(jax.tree.leaves(jax.tree.map(lambda x, y: float(jnp.abs(x - y).max()), a, b)))
  assert delta(state.params, first.params) > 0
  # EMA with decay 0.9 trails the weights: it moved, but less than they did.
  assert 0 < delta(state.ema_params, first.params) < delta(state.params, first.params)


def _eqns(jaxpr):
  for eqn in jaxpr.eqns:
    yield eqn
    for value in eqn.params.values():
      for sub in value if isinstance(value, (tuple, list)) else (value,):
        if isinstance(sub, jax.extend.core.ClosedJaxpr):
          yield from _eqns(sub.jaxpr)
        elif isinstance(sub, jax.extend.core.Jaxpr):
          yield from _eqns(sub)


def test_guided_ddim_is_one_scan_with_one_unet_call_per_step(trained):
  family, _, state, _ = trained
  n, steps = 3, 7
  jaxpr = jax.make_jaxpr(lambda v, r: family.sample(v, r, n, SampleOptions(sampler="ddim", num_steps=steps)))(
    state.variables(), jax.random.key(0)
  ).jaxpr
  eqns = list(_eqns(jaxpr))
  scans = [e for e in eqns if e.primitive.name == "scan"]
  assert [e.params["length"] for e in scans] == [steps]
  convs = [e for e in eqns if e.primitive.name == "conv_general_dilated"]
  model = UNet(ch=32, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(4,), num_classes=10, out_ch=1)
  one_call = jax.make_jaxpr(
    lambda v: model.apply(
      v, jnp.zeros((2 * n, 8, 8, 1)), jnp.zeros((2 * n,), jnp.int32), jnp.zeros((2 * n,), jnp.int32)
    )
  )(state.variables()).jaxpr
  convs_per_call = [e for e in _eqns(one_call) if e.primitive.name == "conv_general_dilated"]
  # Exactly one U-Net evaluation per step, on the conditional and null-label halves together.
  assert len(convs) == len(convs_per_call)
  assert all(e.invars[0].aval.shape[0] == 2 * n for e in convs)


def test_sample_options_and_errors(trained):
  family, _, state, _ = trained
  v = state.variables()
  x = family.sample(
    v, jax.random.key(0), 4, SampleOptions(sampler="dpmpp_2m", num_steps=3, label=7, guidance_scale=1.0)
  )
  assert x.shape == (4, 8, 8, 1) and float(jnp.abs(x).max()) <= 1.0
  # The config's 7 steps belong to its ddim sampler; ddpm runs all T = 40.
  assert family.resolve_options(SampleOptions(sampler="ddpm")).num_steps == 40
  assert family.resolve_options(SampleOptions()) == SampleOptions("ddim", 7, 0.0, 2.0, None, 0.0)
  y = jax.jit(lambda v, r: family.sample(v, r, 4, SampleOptions(sampler="ddpm")))(v, jax.random.key(0))
  assert y.shape == (4, 8, 8, 1) and bool(jnp.all(jnp.isfinite(y)))
  # The module-level sampler draws the labels it is given; the adapter's label option is every image's class.
  model = diffusion.make_model(experiment().model, INFO)
  options = SampleOptions(num_steps=3, guidance_scale=1.0)
  np.testing.assert_array_equal(
    diffusion.sample(v, jax.random.key(1), 2, model, options, labels=[7, 7]),
    family.sample(v, jax.random.key(1), 2, SampleOptions(num_steps=3, guidance_scale=1.0, label=7)),
  )
  with pytest.raises(ValueError, match="labels must lie"):
    diffusion.sample(v, jax.random.key(0), 2, model, labels=[3, 10])
  with pytest.raises(ValueError, match="labels must lie"):
    family.sample(v, jax.random.key(0), 2, SampleOptions(label=10))
  with pytest.raises(ValueError, match="sampler = 'plms' is not one of ddpm, ddim, dpmpp_2m, heun"):
    family.sample(v, jax.random.key(0), 2, SampleOptions(sampler="plms"))
  with pytest.raises(ValueError, match=r"num_steps = 41 must lie in \[1, T = 40\]"):
    family.sample(v, jax.random.key(0), 2, SampleOptions(sampler="ddpm", num_steps=41))
  with pytest.raises(ConfigError, match="class_conditional"):
    families.build(experiment(class_conditional=False), INFO)  # guidance_scale 2 needs labels
  with pytest.raises(ConfigError, match="ch_mult"):
    families.build(
      experiment(ch_mult=(1, 2, 2, 2)), DataInfo(name="x", kind="image", shape=(28, 28, 1), num_classes=10)
    )


def test_evaluate_reports_the_bound_over_real_examples_only(trained):
  family, _, state, _ = trained
  b1, b2 = batch(4, 1), batch(4, 2)
  b1["mask"], b2["mask"] = jnp.ones(4), jnp.array([1.0, 1.0, 0.0, 0.0])
  out = family.evaluate(state, [b1, b2], jax.random.key(0))
  assert out["num_examples"] == 6
  d = math.prod(INFO.shape)
  assert math.isclose(out["bits_per_dim"], out["nll_nats"] / (d * math.log(2)), rel_tol=1e-9)
  assert math.isclose(out["bits_per_dim"], out["prior_bpd"] + out["diffusion_bpd"] + out["decoder_bpd"], rel_tol=1e-6)
  only_first = family.evaluate(state, [b1], jax.random.key(0))
  assert only_first["num_examples"] == 4
  metrics, count = jax.jit(family.eval_step)(state, b1, jax.random.key(0))
  assert float(count) == 4
  assert set(metrics) == {"mse", "bpd_estimate"} and all(np.isfinite(float(v)) for v in metrics.values())


def test_edm_samplers_draw_from_the_ddpm_model(trained):
  """EDM's samplers on the epsilon model (a VP denoiser on its 40 noise levels): one scan of
  num_steps steps, images in [-1, 1]; the churn changes the draw, the deterministic ones agree
  with themselves."""
  family, _, state, _ = trained
  v = state.variables()
  jaxpr = jax.make_jaxpr(lambda v, r: family.sample(v, r, 2, SampleOptions(sampler="heun", num_steps=4)))(
    v, jax.random.key(0)
  ).jaxpr
  assert [e.params["length"] for e in _eqns(jaxpr) if e.primitive.name == "scan"] == [4]
  draws = {
    name: family.sample(v, jax.random.key(3), 3, SampleOptions(sampler=name, num_steps=4, **kw))
    for name, kw in (("heun", {}), ("euler", {}), ("edm_sde", {"s_churn": 10.0}), ("edm_sde", {}))
  }
  for x in draws.values():
    assert x.shape == (3, 8, 8, 1) and bool(jnp.all(jnp.isfinite(x))) and float(jnp.abs(x).max()) <= 1.0
  assert float(jnp.abs(draws["heun"] - draws["euler"]).max()) > 1e-3
  assert family.resolve_options(SampleOptions(sampler="heun")).num_steps == 18  # EDM's CIFAR-10 steps


def edm_experiment(**model):
  return experiment(formulation="edm", sampler="heun", sample_steps=3, **model)


def two_steps(exp):
  """(family, [state at init, after 1 step, after 2], the last step's metrics)."""
  family = families.build(exp, INFO)
  state = family.init(jax.random.key(0))
  step = jax.jit(family.train_step)
  states = [state]
  for i in range(2):
    state, metrics = step(state, batch(seed=i), jax.random.key(i))
    states.append(state)
  return family, states, metrics


@pytest.fixture(scope="module")
def edm_trained():
  return two_steps(edm_experiment())


def test_edm_loss_at_init_equals_numpy_formulas(edm_trained):
  """The family's EDM loss against Table 1 written out in numpy around the U-Net's raw output."""
  _, states, _ = edm_trained
  model = diffusion.make_model(edm_experiment().model, INFO)
  params, b, rng = states[0].params, batch(seed=4), jax.random.key(9)
  value, metrics = jax.jit(diffusion.loss, static_argnames="model")(params, b, rng, model)
  x0, sigma_B, noise, labels = diffusion.edm_inputs(b, rng, model)
  s = np.asarray(sigma_B, np.float64)[:, None, None, None]
  x = np.asarray(x0, np.float64) + s * np.asarray(noise, np.float64)
  c_in, c_skip, c_out = 1 / np.sqrt(s**2 + 0.25), 0.25 / (s**2 + 0.25), 0.5 * s / np.sqrt(s**2 + 0.25)
  raw = jax.jit(lambda p, x, c, y, r: diffusion.apply({"params": p}, x, c, y, model, train=True, rng=r))(
    params,
    jnp.asarray(c_in * x, jnp.float32),
    jnp.asarray(np.log(s[:, 0, 0, 0]) / 4, jnp.float32),
    labels,
    jax.random.fold_in(rng, 3),
  )
  d = c_skip * x + c_out * np.asarray(raw, np.float64)
  mse = ((d - np.asarray(x0, np.float64)) ** 2).mean(axis=(1, 2, 3))
  weight = (s[:, 0, 0, 0] ** 2 + 0.25) / (0.5 * s[:, 0, 0, 0]) ** 2
  np.testing.assert_allclose(float(value), (weight * mse).mean(), rtol=2e-4)
  np.testing.assert_allclose(float(metrics["mse"]), mse.mean(), rtol=2e-4)
  # the ddpm formulation of the same network is another loss
  ddpm_value, _ = diffusion.loss(params, b, rng, diffusion.make_model(experiment().model, INFO))
  assert abs(float(ddpm_value) - float(value)) > 1e-3


def test_edm_family_trains_evaluates_and_samples_with_its_samplers_only(edm_trained):
  family, states, metrics = edm_trained
  assert np.isfinite(float(metrics["loss"])) and family.evaluate is None  # genjax.evaluate computes FD
  moved = jax.tree.leaves(jax.tree.map(lambda a, b: float(jnp.abs(a - b).max()), states[2].params, states[0].params))
  assert max(moved) > 0
  out, count = jax.jit(family.eval_step)(states[2], batch(seed=5), jax.random.key(0))
  assert set(out) == {"loss", "mse"} and float(count) == 8
  v = states[2].variables()
  x = family.sample(v, jax.random.key(0), 4, SampleOptions(label=3))
  assert x.shape == (4, 8, 8, 1) and float(jnp.abs(x).max()) <= 1.0
  assert "10 network evaluations" in family.notes  # heun: 2 * 3 - 1, twice for guidance 2
  with pytest.raises(ValueError, match="walks DDPM's T discrete steps") as e:
    family.sample(v, jax.random.key(0), 2, SampleOptions(sampler="ddim"))
  assert "--sampler heun" in str(e.value)


needs_diffrax = pytest.mark.skipif(
  not diffusion.flow_lib.diffrax_available(), reason="flow matching's ODE solvers come from diffrax (requirements.txt)"
)


def flow_experiment(**model):
  return experiment(formulation="flow", sampler="heun", sample_steps=3, flow_rtol=1e-3, flow_atol=1e-3, **model)


@pytest.fixture(scope="module")
def flow_trained():
  return two_steps(flow_experiment())


@needs_diffrax
def test_flow_loss_at_init_equals_numpy_formulas(flow_trained):
  """The family's flow matching loss against the OT path written out in numpy around the U-Net's
  raw output (at 999 t, the time the network is given)."""
  _, states, _ = flow_trained
  model = diffusion.make_model(flow_experiment(flow_sigma_min=0.05).model, INFO)
  params, b, rng = states[0].params, batch(seed=4), jax.random.key(9)
  value, metrics = jax.jit(diffusion.loss, static_argnames="model")(params, b, rng, model)
  x1, t_B, noise, labels = diffusion.flow_inputs(b, rng, model)
  t = np.asarray(t_B, np.float64)[:, None, None, None]
  x1, noise = np.asarray(x1, np.float64), np.asarray(noise, np.float64)
  xt = (1 - 0.95 * t) * noise + t * x1
  raw = jax.jit(lambda p, x, c, y, r: diffusion.apply({"params": p}, x, c, y, model, train=True, rng=r))(
    params,
    jnp.asarray(xt, jnp.float32),
    jnp.asarray(999 * t[:, 0, 0, 0], jnp.float32),
    labels,
    jax.random.fold_in(rng, 3),
  )
  want = ((np.asarray(raw, np.float64) - (x1 - 0.95 * noise)) ** 2).mean()
  np.testing.assert_allclose(float(value), want, rtol=2e-4)
  assert float(metrics["mse"]) == float(value)
  edm_value, _ = diffusion.loss(params, b, rng, diffusion.make_model(edm_experiment().model, INFO))
  assert abs(float(edm_value) - float(value)) > 1e-3


@needs_diffrax
def test_flow_family_trains_samples_with_its_solvers_and_reports_bits_per_dim(flow_trained):
  family, states, metrics = flow_trained
  assert np.isfinite(float(metrics["loss"]))
  moved = jax.tree.leaves(jax.tree.map(lambda a, b: float(jnp.abs(a - b).max()), states[2].params, states[0].params))
  assert max(moved) > 0
  out, count = jax.jit(family.eval_step)(states[2], batch(seed=5), jax.random.key(0))
  assert set(out) == {"loss", "mse"} and float(count) == 8
  v = states[2].variables()
  draws = {
    name: family.sample(v, jax.random.key(0), 4, SampleOptions(sampler=name, label=3))
    for name in ("heun", "euler", "dopri5")
  }
  for x in draws.values():
    assert x.shape == (4, 8, 8, 1) and bool(jnp.all(jnp.isfinite(x))) and float(jnp.abs(x).max()) <= 1.0
  # one ODE, three solvers (3 Heun steps, 35 Euler steps, adaptive): the same images, which the
  # flow moved away from the starting noise
  noise = jnp.clip(jax.random.normal(jax.random.key(0), (4, 8, 8, 1)), -1, 1)
  for name in ("euler", "dopri5"):
    assert float(jnp.abs(draws[name] - draws["heun"]).max()) < 5e-3
  assert float(jnp.abs(draws["dopri5"] - noise).max()) > 0.05
  assert family.resolve_options(SampleOptions(sampler="dopri5")).num_steps == 0  # adaptive
  assert "12 network evaluations" in family.notes  # heun: 2 * 3, twice for guidance 2
  with pytest.raises(ValueError, match="walks DDPM's T discrete steps"):
    family.sample(v, jax.random.key(0), 2, SampleOptions(sampler="ddim"))
  # the likelihood: dopri5 on the augmented ODE, Hutchinson's estimate, dequantized 8-bit images
  batches = [dict(batch(n=4, seed=6), mask=np.array([1, 1, 1, 0], np.float32))]
  result = family.evaluate(states[2], batches, jax.random.key(1))
  assert result["num_examples"] == 3 and result["solver_steps"] >= 1
  assert np.isfinite(result["bits_per_dim"]) and result["bits_per_dim"] > 0
  assert np.isfinite(result["bits_per_dim_stderr"]) and result["bits_per_dim_stderr"] > 0
  np.testing.assert_allclose(result["nll_nats"], result["bits_per_dim"] * 64 * math.log(2.0), rtol=1e-9)


@pytest.mark.parametrize(
  "fields,phrase",
  [
    ({"formulation": "edm", "sampler": "ddim"}, "walks DDPM's T discrete steps"),
    ({"formulation": "rectified"}, "formulation = 'rectified' is not one of ddpm, edm, flow"),
    ({"formulation": "flow", "sampler": "edm_sde"}, "adds noise along EDM's sigma schedule"),
    ({"formulation": "flow", "sampler": "ddpm"}, "with one of euler, heun, dopri5"),
    ({"sampler": "dopri5"}, "solves a flow-matching model's ODE"),
    ({"formulation": "flow", "sampler": "heun", "flow_rtol": 0.0}, "config.model.flow_rtol = 0.0 must be positive"),
    ({"formulation": "flow", "sampler": "heun", "flow_sigma_min": 1.0}, "flow_sigma_min = 1.0 must lie in [0, 1)"),
    ({"formulation": "flow", "sampler": "heun", "flow_probes": 0}, "config.model.flow_probes = 0"),
    ({"formulation": "flow", "sampler": "heun", "flow_time_sampling": "beta"}, "uniform, logit_normal"),
    ({"formulation": "edm", "sampler": "heun", "loss": "vlb"}, "leave config.model.loss at 'simple'"),
    ({"sigma_min": 90.0}, "0 < sigma_min < sigma_max"),
    ({"rho": -1.0}, "config.model.rho = -1.0 must be positive"),
    ({"s_churn": -0.5}, "config.model.s_churn = -0.5"),
    ({"preconditioning": "iddpm"}, "config.model.preconditioning = 'iddpm'"),
  ],
)
def test_bad_edm_and_flow_settings_are_config_errors(fields, phrase):
  with pytest.raises(ConfigError) as e:
    families.build(experiment(**fields), INFO)
  assert phrase in " ".join(str(e.value).split())


def test_flow_without_diffrax_is_one_config_error(monkeypatch):
  monkeypatch.setattr(diffusion.flow_lib, "diffrax_available", lambda: False)
  with pytest.raises(ConfigError) as e:
    families.build(flow_experiment(), INFO)
  assert "pip install diffrax" in str(e.value)


@pytest.mark.parametrize("variant", ["", ":cpu"])
def test_flow_mnist_is_ddpm_mnists_network_and_optimiser_with_the_flow_objective(variant):
  flow = C.load_config_file(f"experiments/flow_mnist.py{variant}")
  ddpm = C.load_config_file(f"experiments/ddpm_mnist.py{variant}")
  network = ("ch", "ch_mult", "num_res_blocks", "attn_resolutions", "dropout", "class_conditional", "label_dropout")
  assert [getattr(flow.model, f) for f in network] == [getattr(ddpm.model, f) for f in network]
  assert flow.optim == ddpm.optim and flow.train.batch_size == ddpm.train.batch_size and flow.data == ddpm.data
  m = flow.model
  assert (m.formulation, m.flow_sigma_min, m.flow_time_sampling, m.flow_logit_mean, m.flow_logit_std) == (
    "flow",
    0.0,
    "logit_normal",
    0.0,
    1.0,
  )
  C.validate(flow)
  diffusion.check_config(m, DataInfo(name="mnist", kind="image", shape=(28, 28, 1), num_classes=10))
