"""The step builder: gradients, averaging over repetitions, collections and the EMA, once for
every family."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from genjax.config import Optim
from genjax.core import optim as optim_lib
from genjax.core import step as step_lib
from genjax.core.state import EMA, TrainState


def _state(ema: bool):
  params = {"a": {"w": jnp.array([1.0, 2.0])}, "b": {"w": jnp.array([3.0])}}
  tx = optax.sgd(0.1)
  return TrainState(
    step=jnp.zeros((), jnp.int32),
    params=params,
    opt_state={"a": tx.init(params["a"]), "b": tx.init(params["b"])},
    ema_params={"a": params["a"]} if ema else None,
    extra={"stats": {"a": jnp.zeros(()), "b": jnp.zeros(())}},
    ema_extra={"stats": {"a": jnp.zeros(())}} if ema else None,
  ), tx


def test_updates_run_in_order_with_their_own_networks_collections_and_ema():
  state, tx = _state(ema=True)
  seen = []

  def loss_a(p, state, batch, rng, i):  # depends on b: b's update must see a's new value later
    seen.append(("a", i))
    value = jnp.sum(p["w"] ** 2) * batch["x"]
    return value, ({"la": value}, {"stats": state.extra["stats"]["a"] + 1.0})

  def loss_b(p, state, batch, rng, i):
    seen.append(("b", i))
    value = jnp.sum(p["w"] * state.params["a"]["w"][0])
    return value, ({"lb": value}, {})

  updates = (step_lib.Update(loss_a, key="a", repeat=2), step_lib.Update(loss_b, key="b"))
  new, metrics = step_lib.train_step(
    state, {"x": 1.0}, None, updates=updates, optimizers={"a": tx, "b": tx}, ema=EMA(0.5, warmup=False)
  )
  assert seen == [("a", 0), ("a", 1), ("b", 0)]
  # a: two SGD steps on |w|^2 (w <- 0.8 w each), b: one step with gradient a_w[0] after them.
  np.testing.assert_allclose(new.params["a"]["w"], [0.64, 1.28], rtol=1e-6)
  np.testing.assert_allclose(new.params["b"]["w"], [3.0 - 0.1 * 0.64], rtol=1e-6)
  # metrics of a repeated update are the mean over its repetitions (|w|^2 before each: 5, 3.2)
  np.testing.assert_allclose(metrics["la"], (5.0 + 3.2) / 2, rtol=1e-6)
  assert float(new.extra["stats"]["a"]) == 2.0 and float(new.extra["stats"]["b"]) == 0.0
  # the EMA follows a (the only network it holds) after each of a's updates: 0.5 and 0.5
  np.testing.assert_allclose(
    new.ema_params["a"]["w"],
    [0.5 * (0.5 * 1.0 + 0.5 * 0.8) + 0.5 * 0.64, 0.5 * (0.5 * 2.0 + 0.5 * 1.6) + 0.5 * 1.28],
    rtol=1e-6,
  )
  # ... and so does the EMA of a's collections (stats 1 then 2): 0.5 * (0.5 * 0 + 0.5 * 1) + 0.5 * 2
  assert float(new.ema_extra["stats"]["a"]) == 1.25 and "b" not in new.ema_extra["stats"]
  # sampling with the EMA reads both EMAs, and b's raw collections
  variables = new.variables(ema=True)
  assert float(variables["stats"]["a"]) == 1.25 and float(variables["stats"]["b"]) == 0.0
  assert int(new.step) == 1


def test_ema_warmup_forgets_the_initial_weights():
  ema = EMA(0.999)
  decays = [float(ema.decay_at(t)) for t in (0, 1, 10, 90, 10_000)]
  np.testing.assert_allclose(decays, [1 / 10, 2 / 11, 11 / 20, 91 / 100, 0.999], rtol=1e-6)
  assert float(EMA(0.999, warmup=False).decay_at(0)) == np.float32(0.999)
  # After 254 updates toward a constant target the warmed-up EMA holds about 4% of its start
  # (the product of the decays), the plain one 78% (0.999 ** 254).
  left = np.prod([float(ema.decay_at(t)) for t in range(254)])
  assert left < 0.05 and 0.999**254 > 0.77


def test_accumulated_micro_steps_move_the_ema_as_one_step_over_their_batches():
  """optim.grad_accum_steps = k: k micro-steps on k batches give the parameters, the EMA and its
  warm-up decay of one step on the k batches together (the EMA moves once per optimizer update,
  its warm-up counting updates, not micro-steps), here for two updates of Adam."""
  k, updates = 3, 2
  x = np.random.default_rng(0).normal(size=(updates, k, 4, 2)).astype(np.float32)

  def loss(p, state, batch, rng, i):
    value = jnp.mean((batch["x"] @ p["w"] - 1.0) ** 2)
    return value, ({"loss": value}, {})

  def run(accum, batches):
    tx = optim_lib.make_optimizer(Optim(learning_rate=0.1, grad_accum_steps=accum), updates * accum)
    state = TrainState.create({"w": jnp.array([[0.5], [-0.3]])}, tx, ema=True)
    step = jax.jit(
      lambda state, batch: step_lib.train_step(
        state, batch, None, updates=(step_lib.Update(loss),), optimizers={None: tx}, ema=EMA(0.99)
      )[0]
    )
    after = []
    for batch in batches:
      state = step(state, {"x": batch})
      after.append(state)
    return after

  big = run(1, x.reshape(updates, k * 4, 2))
  micro = run(k, x.reshape(updates * k, 4, 2))
  for u in range(updates):
    np.testing.assert_allclose(micro[(u + 1) * k - 1].params["w"], big[u].params["w"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(micro[(u + 1) * k - 1].ema_params["w"], big[u].ema_params["w"], rtol=1e-5, atol=1e-6)
  # between updates the EMA stays where the last update left it; the warm-up decay was 1/10, then 2/11
  np.testing.assert_array_equal(micro[k].ema_params["w"], micro[k - 1].ema_params["w"])
  p0, p1, p2 = np.array([[0.5], [-0.3]]), np.asarray(big[0].params["w"]), np.asarray(big[1].params["w"])
  ema1 = 0.1 * p0 + 0.9 * p1
  np.testing.assert_allclose(big[1].ema_params["w"], 2 / 11 * ema1 + 9 / 11 * p2, rtol=1e-5)


def test_eval_means_come_from_masked_sums():
  values = {"loss": jnp.array([1.0, 3.0, 100.0])}
  mask = jnp.array([1.0, 1.0, 0.0])
  sums, count = step_lib.masked_sums(values, mask)
  means, count = step_lib.means_from_sums(sums, count, finish=lambda m: {**m, "double": 2 * m["loss"]})
  assert float(means["loss"]) == 2.0 and float(means["double"]) == 4.0 and float(count) == 2.0
