"""Sharding as data: the partition rules, FSDP and tensor parallelism give the numbers of the
replicated step, and checkpoints restore onto another mesh."""

import dataclasses

import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from genjax import config as C
from genjax import families
from genjax.core import sharding
from genjax.data.info import DataInfo
from genjax.families.autoregressive import gpt
from genjax.trainer import loop, writers
from genjax.trainer import workdir as workdir_lib
from tests.test_stack import experiments, text_export  # noqa: F401 - the fixture


def test_rules_name_the_split_dimensions_and_fsdp_takes_the_largest_free_one():
  mesh = {"data": 4, "model": 2}
  rules = gpt.PARTITION_RULES
  # Tensor parallel: heads and MLP units over "model"; FSDP: the largest other dimension over "data".
  assert sharding.spec_for("block_0/attn/qkv/kernel", (768, 3, 12, 64), rules, mesh, fsdp=False) == P(
    None, None, "model"
  )
  assert sharding.spec_for("block_0/attn/qkv/kernel", (768, 3, 12, 64), rules, mesh, fsdp=True) == P(
    "data", None, "model"
  )
  assert sharding.spec_for("block_0/mlp/fc/kernel", (768, 3072), rules, mesh, fsdp=True) == P("data", "model")
  assert sharding.spec_for("block_0/mlp/proj/kernel", (3072, 768), rules, mesh, fsdp=True) == P("model", "data")
  # The optimizer's moments end in the parameter's path.
  assert sharding.spec_for("0/mu/block_0/mlp/fc/kernel", (768, 3072), rules, mesh, fsdp=False) == P(None, "model")
  # No rule: FSDP only, along the largest dimension that divides; small arrays stay whole.
  assert sharding.spec_for("Dense_0/kernel", (100, 8192), (), mesh, fsdp=True) == P(None, "data")
  assert sharding.spec_for("Dense_0/kernel", (8193, 6), (), mesh, fsdp=True) == P()
  assert sharding.spec_for("Dense_0/bias", (512,), (), mesh, fsdp=True) == P()
  # Nothing is split where it does not divide: 5 heads over 2 devices stay whole.
  assert sharding.spec_for("attn/qkv/kernel", (64, 3, 5, 16), rules, {"data": 1, "model": 2}, fsdp=False) == P()
  # A Llama's grouped-query projections split by (query, key/value) head; SwiGLU's gate and up on
  # their output, the down projection on its input; one key/value head (multi-query) stays whole.
  tp = lambda name, shape: sharding.spec_for(f"block_0/{name}", shape, rules, {"data": 1, "model": 2}, fsdp=False)
  assert tp("attn/q/kernel", (2048, 32, 64)) == P(None, "model")
  assert tp("attn/kv/kernel", (2048, 2, 8, 64)) == P(None, None, "model")
  assert tp("attn/kv/kernel", (2048, 2, 1, 64)) == P()
  assert tp("mlp/gate/kernel", (2048, 8192)) == tp("mlp/up/kernel", (2048, 8192)) == P(None, "model")
  assert tp("mlp/proj/kernel", (8192, 2048)) == P("model")


def test_fsdp_holds_an_eighth_of_the_state_per_device():
  exp = C.Experiment(
    family="autoregressive",
    model=gpt.GPTConfig(num_layers=2, num_heads=4, width=128),
    optim=C.Optim(name="adamw"),
    data=C.Data(name="tiny_shakespeare", block_size=64),
  )
  family = families.build(exp, DataInfo("t", "text", (64,), vocab_size=65))
  abstract = jax.eval_shape(family.init, jax.random.key(0))
  mesh = jax.make_mesh((8,), ("data",), devices=jax.devices()[:8], axis_types=(jax.sharding.AxisType.Auto,))
  replicated = sharding.bytes_per_device(abstract, sharding.state_shardings(abstract, mesh, (), fsdp=False))
  fsdp = sharding.bytes_per_device(abstract, sharding.state_shardings(abstract, mesh, (), fsdp=True))
  assert replicated / fsdp > 6.5  # about 8: only the small biases and norm scales stay whole


def _run(exp, workdir, steps, mode, devices=8, model_parallel=1):
  exp = dataclasses.replace(
    exp,
    name="sharding",
    train=C.Train(steps=steps, batch_size=8, log_every=1, eval_every=steps, checkpoint_every=2, progress=False),
    eval=C.Eval(num_batches=1, batch_size=8, num_samples=2, sample_length=4),
    parallel=C.Parallel(mode=mode, num_devices=devices, model_parallel=model_parallel),
  )
  loop.train(exp, workdir)
  return [r.get("loss", r.get("d_loss")) for r in writers.read_metrics(workdir) if "loss" in r or "d_loss" in r]


@pytest.mark.parametrize("name", ["vae", "gan", "gpt", "pixelcnn", "diffusion", "classifier"])
def test_fsdp_and_tensor_parallel_steps_equal_the_replicated_step(name, text_export, tmp_path):  # noqa: F811
  exp = experiments(text_export)[name]
  replicated = _run(exp, str(tmp_path / "jit"), 3, "jit")
  fsdp = _run(exp, str(tmp_path / "fsdp"), 3, "fsdp")
  np.testing.assert_allclose(fsdp, replicated, rtol=1e-5)
  params = lambda w: jax.device_get(workdir_lib.restore(w)[2].params)
  # Parameters to float rounding overall (Adam's first steps turn the last bits of a near-zero
  # gradient, summed in another order across shards, into updates of about the learning rate, so
  # single near-zero entries may differ in relative terms).
  flat = lambda w: np.concatenate([np.ravel(x) for x in jax.tree.leaves(params(w))])
  a, b = flat(str(tmp_path / "fsdp")), flat(str(tmp_path / "jit"))
  assert np.linalg.norm(a - b) < 1e-4 * np.linalg.norm(b)
  if name == "gpt":  # heads and MLP split over a model axis of 2, FSDP over 4
    both = _run(exp, str(tmp_path / "tp"), 3, "fsdp", model_parallel=2)
    np.testing.assert_allclose(both, replicated, rtol=1e-5)


@pytest.mark.parametrize("optimizer", ["adamw", "muon"])
def test_a_llama_under_tensor_parallelism_equals_the_replicated_step(optimizer, text_export, tmp_path):  # noqa: F811
  """RMSNorm, SwiGLU, grouped-query attention (4 query heads over 2 key/value heads), QK-norm,
  rotary positions, an untied head: its heads, key/value heads and MLP units split over a model
  axis of 2 (FSDP over 4) give the replicated step's losses, with AdamW and with Muon (whose
  Newton-Schulz iterations then run on split matrices)."""
  exp = experiments(text_export)["gpt"]
  model = gpt.GPTConfig(
    num_layers=1,
    num_heads=4,
    num_kv_heads=2,
    width=16,
    norm="rmsnorm",
    mlp="swiglu",
    mlp_hidden=32,
    positions="rotary",
    qk_norm=True,
    tie_embeddings=False,
  )
  exp = dataclasses.replace(
    exp, model=model, optim=C.Optim(name=optimizer, learning_rate=1e-2, muon_learning_rate=0.05)
  )
  replicated = _run(exp, str(tmp_path / "jit"), 3, "jit")
  both = _run(exp, str(tmp_path / "tp"), 3, "fsdp", model_parallel=2)
  np.testing.assert_allclose(both, replicated, rtol=1e-5)
  assert replicated[-1] < replicated[0]


def test_a_sharded_checkpoint_resumes_on_another_mesh(text_export, tmp_path):  # noqa: F811
  """Saved under FSDP on 8 devices, resumed replicated on 4 and FSDP + tensor parallel on 8: the
  next steps' losses are the uninterrupted run's."""
  exp = experiments(text_export)["gpt"]
  straight = _run(exp, str(tmp_path / "straight"), 4, "fsdp")
  for name, mode, devices, model in (("to_jit4", "jit", 4, 1), ("to_tp", "fsdp", 8, 2)):
    workdir = str(tmp_path / name)
    _run(exp, workdir, 2, "fsdp")
    resumed = _run(exp, workdir, 4, mode, devices, model)
    np.testing.assert_allclose(resumed, straight, rtol=1e-5)
