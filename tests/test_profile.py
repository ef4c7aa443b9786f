"""genjax.profile and genjax.perf.hlo_profile: a trace of a compiled step matched to its HLO, sorted into phases."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from genjax import profile
from genjax.perf import hlo_profile


def test_self_time_of_nested_events():
  """A while loop's time excludes the operations of its body; siblings keep their own."""
  events = [("while.1", 0, 100), ("dot.2", 10, 30), ("fusion.3", 50, 20), ("copy.4", 200, 5), ("dot.2", 300, 7)]
  assert hlo_profile._self_times(events) == {"while.1": 50, "dot.2": 37, "fusion.3": 20, "copy.4": 5}


def test_parse_hlo_and_phases_of_a_train_step():
  """A small train step (a random draw, a matmul layer, its gradient, an Adam update under the
  `optimizer` scope) traced for real: every phase is found with the right kind of operation."""
  tx = optax.adam(1e-3)

  def step(params, opt_state, x, key):
    def loss(p):
      noise = jax.random.normal(key, x.shape)
      return jnp.mean(jnp.tanh((x + noise) @ p["w"]) ** 2)

    grads = jax.grad(loss)(params)
    with jax.named_scope("optimizer"):
      updates, opt_state = tx.update(grads, opt_state, params)
      return optax.apply_updates(params, updates), opt_state

  params = {"w": jnp.ones((256, 256)) * 0.01}
  opt_state = tx.init(params)
  x = jnp.asarray(np.random.default_rng(0).standard_normal((64, 256)), jnp.float32)
  compiled = jax.jit(step).lower(params, opt_state, x, jax.random.key(0)).compile()
  instructions = hlo_profile.parse_hlo(compiled.as_text())
  dots = [i for i in instructions.values() if i.matmul]
  assert dots, "the layer's matmul (and its gradient's) must be found as matmul operations"
  assert {hlo_profile.phase_of(i) for i in dots} >= {"forward", "backward"}
  holder = {"p": params, "s": opt_state}

  def run():
    holder["p"], holder["s"] = compiled(holder["p"], holder["s"], x, jax.random.key(1))
    jax.block_until_ready(holder["p"])

  run()
  ops = hlo_profile.trace_ops(run, instructions, calls=3, steps_per_call=1)
  assert ops and all(op.us_per_step > 0 for op in ops)
  assert ops == sorted(ops, key=lambda op: -op.us_per_step)
  table = hlo_profile.summarize(ops)
  assert table["forward"]["matmul/conv"] > 0 and table["backward"]["matmul/conv"] > 0
  assert table["optimizer"]["elementwise"] > 0 and table["optimizer"]["matmul/conv"] == 0
  assert table["random numbers"]["elementwise"] > 0
  shares = hlo_profile.breakdown(ops)
  assert abs(sum(shares[p] for p in hlo_profile.PHASES) - 1.0) < 1e-9
  text = hlo_profile.format_profile(ops, top=3)
  assert "forward" in text and "optimizer" in text and len(text.splitlines()) >= 5


def test_command_profiles_a_config_and_refuses_a_bad_one(capsys):
  """`python -m genjax.profile` on a real config (the IWAE paper's VAE, small batch, 2 steps per
  call): the step's wall time, the phase table and the largest operations named by model code."""
  import pytest

  profile.main(["--config", "experiments/vae_binarized_mnist.py:vae", "--batch", "4", "--steps_per_call", "2"])
  out = capsys.readouterr().out
  assert "2 step(s) per call" in out and "ms per step (wall)" in out
  for phase in ("forward", "backward", "optimizer", "total"):
    assert phase in out
  assert "VAE.decode" in out or "VAE.q_first" in out  # operations carry the module path they came from
  with pytest.raises(SystemExit) as exit_info:
    profile.main(["--config", "experiments/vae_binarized_mnist.py:bogus"])
  assert exit_info.value.code == 2 and "takes one of" in capsys.readouterr().err
