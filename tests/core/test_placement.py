"""The placement (genjax.core.placement): one frozen value for the device counts, the mesh, the part
of the global batch each process loads and the state's shardings, read by every check."""

import dataclasses
import os
import re
import sys

import jax
import numpy as np
import pytest

from genjax import config as C
from genjax.config import ConfigError, Parallel
from genjax.core.placement import place
from genjax.data.info import DataInfo
from genjax.trainer import program as program_lib
from tests.reliability.procs import child_env, free_port, group

MNIST = DataInfo(name="mnist", kind="image", shape=(28, 28, 1), num_classes=10)
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_counts_on_one_process():
  p = place(Parallel(mode="fsdp", num_devices=8, model_parallel=2))
  assert (p.num_devices, p.data_parallel, p.batch_shards, p.batch_shard, p.batch_splits) == (8, 4, 1, 0, 1)
  q = place(Parallel(mode="pmap", num_devices=4))
  assert (q.num_devices, q.data_parallel, q.batch_splits) == (4, 4, 4) and q.mesh is None
  with pytest.raises(ConfigError, match="model_parallel = 3 does not divide the 8 devices"):
    place(Parallel(model_parallel=3))
  with pytest.raises(ConfigError, match="num_devices = 9 but only 8 devices exist"):
    place(Parallel(num_devices=9))
  with pytest.raises(dataclasses.FrozenInstanceError):
    p.num_devices = 2  # nothing changes a placement after it is made


def test_for_state_returns_a_new_placement_with_the_state_shardings():
  p = place(Parallel(mode="fsdp", num_devices=8))
  abstract = {"w": jax.ShapeDtypeStruct((64, 128), np.float32)}
  q = p.for_state(abstract)
  assert p.state_sharding is None and q.state_sharding["w"].spec == jax.sharding.PartitionSpec(None, "data")
  assert q.abstract(abstract)["w"].sharding == q.state_sharding["w"]


def _state(model, info, family="autoregressive"):
  """(abstract train state, partition rules) of a model: traced, nothing compiled."""
  from genjax import families

  exp = C.Experiment(family=family, model=model, optim=C.Optim(name="adamw"), data=C.Data(name="tiny_shakespeare"))
  built = families.build(exp, info)
  return jax.eval_shape(built.init, jax.random.key(0)), built.partition_rules


TEXT = DataInfo("t", "text", (64,), vocab_size=65)


def test_a_model_axis_that_splits_nothing_is_refused_with_the_sizes_that_would():
  """model_parallel=3 with 4 heads and 512 MLP units splits no array: every device of a model group
  would hold and compute the same model. Refused, naming the dimensions and model_parallel=2; a
  family whose rules name no dimension (the VAE) is told to leave it at 1."""
  from genjax.families import vae

  gpt = C.load_config_file(os.path.join(ROOT, "experiments", "gpt_shakespeare_char.py")).model
  state, rules = _state(dataclasses.replace(gpt, num_layers=2, num_heads=4, width=128, mlp_hidden=512), TEXT)
  with pytest.raises(ConfigError, match=r"model_parallel = 3 splits none of the \d+ arrays") as error:
    place(Parallel(num_devices=6, model_parallel=3)).for_state(state, rules)
  assert "heads: 4; mlp: 512" in str(error.value) and "--config.parallel.model_parallel=2 " in str(error.value)
  place(Parallel(num_devices=8, model_parallel=2)).for_state(state, rules)  # splits: accepted
  digits = DataInfo(name="digits", kind="image", shape=(8, 8, 1), num_classes=10)
  state, rules = _state(vae.Config(hidden=(16,), latents=(4,)), digits, family="vae")
  with pytest.raises(ConfigError, match="name no dimension for the model axis.*model_parallel=1"):
    place(Parallel(mode="fsdp", num_devices=8, model_parallel=2)).for_state(state, rules)


def test_a_sharded_state_reports_its_bytes_per_device_and_warns_when_fsdp_splits_little():
  gpt = C.load_config_file(os.path.join(ROOT, "experiments", "gpt_shakespeare_char.py")).model
  state, rules = _state(dataclasses.replace(gpt, num_layers=2, num_heads=4, width=128, mlp_hidden=512), TEXT)
  line, warnings = place(Parallel(mode="fsdp", num_devices=8)).for_state(state, rules).state_report(state, rules)
  assert re.match(
    r"state: [\d.]+ KiB per device, [\d.]+ MiB replicated \(7\.\dx less; fsdp on 8 devices.* are split$", line
  ), line
  assert not warnings
  # Over 3 devices almost nothing divides: a warning with the data-axis sizes that would split more.
  line, warnings = place(Parallel(mode="fsdp", num_devices=3)).for_state(state, rules).state_report(state, rules)
  assert "fsdp on 3 devices" in line and len(warnings) == 1
  assert re.search(r"splits \d+ of the \d+ arrays of the state \(\d+% of its", warnings[0]), warnings[0]
  assert "A data axis of 2, 4, 8 or 16 devices would split more than half" in warnings[0]
  assert place(Parallel(mode="jit", num_devices=8)).for_state(state, rules).state_report(state, rules) == ("", [])


def test_a_request_larger_than_memory_is_refused_with_the_size_it_needs():
  from genjax.core import placement

  device = jax.devices()[0]
  available, source = placement.memory_bytes(device)
  assert available > 2**20 and "host" in source
  placement.check_fits(16, 256, "samples of shape (8, 8, 1) at once", "Ask for fewer.", device)
  with pytest.raises(ConfigError, match=r"1,000,000,000,000 samples .* need at least 232\.8 TiB .* at most about"):
    placement.check_fits(10**12, 256, "samples of shape (8, 8, 1) at once", "Ask for fewer.", device)


def _wgan(batch):
  exp = C.load_config_file(os.path.join(ROOT, "experiments", "wgan_gp_mnist.py"))
  assert (exp.model.n_critic, exp.model.critic_batches) == (5, "split")
  model = dataclasses.replace(exp.model, n_critic=4)
  return dataclasses.replace(exp, model=model, train=dataclasses.replace(exp.train, batch_size=batch))


def test_the_critic_split_check_counts_the_devices_a_mapped_step_sees():
  """WGAN-GP with batch 24 and n_critic 4 on 4 devices: under pmap each device holds 6 rows,
  which do not split into 4 critic batches like the global batch does: refused. Under jit the
  step sees the global batch of 24, which splits: accepted."""
  with pytest.raises(ConfigError, match=r"batch_size = 24 must be a multiple of n_critic \* pack \* devices = 16"):
    program_lib.build(_wgan(24), MNIST, place(Parallel(mode="pmap", num_devices=4)))
  program_lib.build(_wgan(24), MNIST, place(Parallel(mode="jit", num_devices=4)))
  program_lib.build(_wgan(32), MNIST, place(Parallel(mode="pmap", num_devices=4)))


# Each of 2 processes (2 CPU devices each) places a run, loads its part of the global batch of the
# embedded digits as the loop does, and gathers the global batch back.
_TWO_HOSTS = """
import sys
import jax
jax.config.update("jax_cpu_collectives_implementation", "gloo")
jax.distributed.initialize(sys.argv[1], 2, int(sys.argv[2]))
import numpy as np
from jax.experimental import multihost_utils
from genjax import config as C, data
from genjax.core.placement import place

ds = data.load(C.Data(name="digits"), "train")
for mode, model_parallel, batch in (("fsdp", 1, 4), ("jit", 4, 8), ("jit", 2, 8)):
  p = place(C.Parallel(mode=mode, model_parallel=model_parallel))
  p.check_batches(batch, batch)
  local = ds.batch(3, batch, 0, p.batch_shard, p.batch_shards)
  glob = p.put_batch(local)
  gathered = multihost_utils.process_allgather(glob["image"], tiled=True)
  whole = ds.batch(3, batch, 0)["image"]
  print(mode, model_parallel, p.num_devices, p.batch_shards, glob["image"].shape, np.array_equal(gathered, whole))
"""


@pytest.mark.slow
def test_two_processes_count_four_devices_and_share_one_global_batch(tmp_path):
  """(a) fsdp over 2 processes x 2 devices counts 4 devices (not 8) and takes batch 4; (b) a model
  axis of 4 spans both processes, so both load the same rows and every replica holds the same
  global batch of 8 (not 4); a model axis of 2 keeps one data row per process."""
  port = free_port()
  with group(tmp_path) as g:
    for i in range(2):
      g.start([sys.executable, "-c", _TWO_HOSTS, f"127.0.0.1:{port}", str(i)], child_env(2))
    assert g.wait(240) == [0, 0], g.output()
    out = g.output()
  for line in ("fsdp 1 4 2 (4, 8, 8, 1) True", "jit 4 4 1 (8, 8, 8, 1) True", "jit 2 4 2 (8, 8, 8, 1) True"):
    assert out.count(line) == 2, out
