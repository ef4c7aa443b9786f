"""The one training loop, shared by every family.

    config -> Experiment -> datasets (this process's share) -> sharded global batch
      -> jitted family.train_step -> metrics (JSONL, TensorBoard, progress bar)
      -> Orbax checkpoints -> sample / evaluate read the same checkpoint back.

Determinism: the batch of step s is a pure function of (train.seed, s) and so is the step's PRNG
key (`fold_in(key(seed), s)`); the state is restored exactly; so a run resumed from any
checkpoint logs bit for bit the losses of a run never interrupted (on CPU).
"""

import collections
import concurrent.futures
import dataclasses
import json
import logging
import os
import signal
import time
from typing import Any, Dict, Optional

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from genjax import config as config_lib
from genjax import data as data_lib
from genjax import families
from genjax.data.info import DataInfo
from genjax.train import checkpoint as ckpt_lib
from genjax.train import parallel
from genjax.train import writers

log = logging.getLogger("genjax")

PREEMPTED_EXIT_CODE = 75  # EX_TEMPFAIL: "try again" - rerunning the command resumes the run

# Fields that may change between the runs that share a workdir; any other difference means the
# workdir holds a different experiment and resuming from it is refused.
RESUMABLE_CHANGES = ("name", "train.steps", "train.log_every", "train.eval_every",
                     "train.checkpoint_every", "train.keep_checkpoints", "train.async_checkpoints",
                     "train.progress", "train.steps_per_call", "eval.", "parallel.",
                     "data.data_dir", "data.manual_dir", "data.in_memory_max_mb")


class NonFiniteLoss(RuntimeError):
  """A logged metric became NaN or infinite; the last good checkpoint is kept."""


class Preempted(RuntimeError):
  """SIGTERM (or a preemption notice) arrived; a checkpoint was written. Rerun to resume."""


# ----------------------------------------------------------------------------------------------
# Parallelism: one place that knows jit-over-a-mesh from pmap
# ----------------------------------------------------------------------------------------------


class Parallelism:
  """Puts states and batches on devices and compiles step functions for `exp.parallel.mode`."""

  def __init__(self, exp: config_lib.Experiment):
    self.mode = exp.parallel.mode
    self.axis_name = parallel.axis_name_for(self.mode)
    n = exp.parallel.num_devices or jax.device_count()
    if self.mode == "jit":
      if n != jax.device_count() and jax.process_count() > 1:
        raise config_lib.ConfigError("config.parallel.num_devices must cover every device in multi-host runs.")
      self.devices = jax.devices()[:n]
      self.mesh = jax.make_mesh((n,), (parallel.DATA_AXIS,), devices=self.devices,
                                axis_types=(jax.sharding.AxisType.Auto,))
      self.replicated = NamedSharding(self.mesh, P())
      self.sharded = NamedSharding(self.mesh, P(parallel.DATA_AXIS))
    else:
      local = exp.parallel.num_devices or jax.local_device_count()
      if local > jax.local_device_count():
        raise config_lib.ConfigError(f"config.parallel.num_devices = {local} but this process has "
                                     f"{jax.local_device_count()} devices.")
      self.devices = jax.local_devices()[:local]
      self.replicated = jax.sharding.SingleDeviceSharding(self.devices[0])
    self.num_devices = n if self.mode == "jit" else len(self.devices) * jax.process_count()
    self.devices_here = [d for d in self.devices if d.process_index == jax.process_index()]

  # -- states: held replicated; checkpointed and sampled as one copy
  def abstract(self, abstract_state):
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=self.replicated),
                        abstract_state)

  def put_state(self, state):
    if self.mode == "jit":
      return jax.device_put(state, self.replicated)
    # pmap: one copy per local device along a leading axis; pmap keeps it there afterwards.
    d = len(self.devices)
    return jax.tree.map(lambda x: np.broadcast_to(np.asarray(x), (d,) + np.shape(x)), jax.device_get(state))

  def one_copy(self, state):
    """The state as a single copy (what is checkpointed). Under jit it stays a global array that
    spans every process, so every process must take part in whatever uses it."""
    if self.mode == "jit":
      return state
    return jax.tree.map(lambda x: x[0], state)

  def local_copy(self, state):
    """One copy on this process's first device, with no tie to other processes: what process 0
    samples from alone (a jitted call on a global array would wait for processes that never come)."""
    def local(x):
      if isinstance(x, jax.Array) and not x.is_fully_addressable:
        x = x.addressable_data(0)
      return jax.device_put(x, self.devices_here[0])
    return jax.tree.map(local, self.one_copy(state))

  # -- batches: each process gives its share, the global batch is sharded over the data axis
  def put_batch(self, local_batch: Dict[str, np.ndarray], stacked: bool = False):
    if self.mode == "jit":
      sharding = NamedSharding(self.mesh, P(None, parallel.DATA_AXIS)) if stacked else self.sharded
      return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, x), local_batch)
    d = len(self.devices)
    if stacked:  # [K, b, ...] -> [d, K, b/d, ...]
      return jax.tree.map(lambda x: np.swapaxes(x.reshape((x.shape[0], d, -1) + x.shape[2:]), 0, 1), local_batch)
    return jax.tree.map(lambda x: x.reshape((d, -1) + x.shape[1:]), local_batch)

  def compile(self, fn, returns_state: bool):
    """Compiles `fn(state, batch, rng)`; the old state's buffers are donated when it returns one."""
    donate = (0,) if returns_state else ()
    if self.mode == "jit":
      out = (self.replicated, self.replicated) if returns_state else self.replicated
      return jax.jit(fn, in_shardings=(self.replicated, self.sharded, self.replicated),
                     out_shardings=out, donate_argnums=donate)
    return jax.pmap(fn, axis_name=self.axis_name, in_axes=(0, 0, None), devices=self.devices,
                    donate_argnums=donate)

  def host_metrics(self, metrics):
    metrics = jax.device_get(metrics)
    return metrics if self.mode == "jit" else jax.tree.map(lambda x: x[0], metrics)  # pmap: device 0's copy


def scan_steps(train_step):
  """Several train steps in one compiled call (score_sde's trick against Python overhead):
  batches carry a leading axis of K steps, rngs are the K steps' keys."""

  def many(state, batches, rngs):
    def body(carry, xs):
      return train_step(carry, *xs)
    return jax.lax.scan(body, state, (batches, rngs))

  return many


def keyed_steps(train_step, train_rng, steps_per_call: int):
  """`fn(state, batch, step)`: `steps_per_call` train steps from global step `step`, step s drawing
  its randomness from fold_in(train_rng, s). The key is derived inside the compiled call, so the
  loop dispatches one computation per call and passes the step as a host integer."""
  family_step = train_step

  def train_step(state, batch, step):  # the name JAX's compile log shows
    return family_step(state, batch, jax.random.fold_in(train_rng, step))

  if steps_per_call == 1:
    return train_step
  many = scan_steps(family_step)

  def train_steps(state, batches, step):
    rngs = jax.vmap(lambda i: jax.random.fold_in(train_rng, i))(step + jnp.arange(steps_per_call))
    return many(state, batches, rngs)

  return train_steps


# ----------------------------------------------------------------------------------------------
# Building blocks shared by train, restore, sample and evaluate
# ----------------------------------------------------------------------------------------------


def example_batch(info: DataInfo, n: int = 8) -> Dict[str, np.ndarray]:
  """Zeros shaped like `n` examples: enough for a family's init."""
  if info.kind == "text":
    return {"tokens": np.zeros((n, info.shape[0] + 1), np.int32)}
  return {"image": np.zeros((n, *info.shape), np.float32), "label": np.zeros((n,), np.int32)}


def info_to_dict(info: DataInfo) -> dict:
  d = dataclasses.asdict(dataclasses.replace(info, tokenizer=None))
  d["tokenizer"] = info.tokenizer.to_dict() if info.tokenizer is not None else None
  return d


def info_from_dict(d: dict) -> DataInfo:
  d = dict(d)
  if d.get("tokenizer") is not None:
    from genjax.data import tokenizers
    d["tokenizer"] = tokenizers.from_dict(d["tokenizer"])
  d["shape"] = tuple(d["shape"])
  return DataInfo(**d)


def load_config(workdir: str) -> config_lib.Experiment:
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    raise FileNotFoundError(f"{path} does not exist: is {workdir!r} a genjax workdir? "
                            "Train first with python -m genjax.train --workdir DIR.")
  with open(path) as f:
    data = json.load(f)
  family = families.get(data.get("family", "vae"))
  return config_lib.from_dict(data, {data.get("family", "vae"): family.Config})


def _check_same_experiment(workdir: str, exp: config_lib.Experiment):
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    return
  try:
    old = load_config(workdir)
  except (ValueError, TypeError, KeyError, json.JSONDecodeError) as e:
    raise config_lib.ConfigError(f"{path} exists but cannot be read ({e}); this workdir holds something else. "
                                 "Use a new --workdir.") from e
  changed = [k for k in config_lib.diff(old, exp) if not k.startswith(RESUMABLE_CHANGES)]
  if changed:
    shown = ", ".join(f"{k} ({_get(old, k)!r} -> {_get(exp, k)!r})" for k in changed[:8])
    raise config_lib.ConfigError(
        f"The workdir {workdir} holds a run of a different experiment; differing fields: {shown}"
        f"{' ...' if len(changed) > 8 else ''}. Resuming it with this config would mix two models. "
        "Use a new --workdir, or the config the run was started with.")


def _get(exp, dotted):
  node = exp
  for part in dotted.split("."):
    node = getattr(node, part, None)
  return node


def restore(workdir: str, step: Optional[int] = None):
  """Reads a run back: (exp, family, state, info). The state is the newest readable checkpoint
  (or `step`), as one copy on the default device; nothing but the workdir is needed."""
  exp = load_config(workdir)
  checkpoints = ckpt_lib.Checkpoints(workdir, keep=exp.train.keep_checkpoints, async_save=False)
  if not checkpoints.steps():
    raise FileNotFoundError(f"No checkpoint in {checkpoints.directory}: train longer than "
                            "train.checkpoint_every steps, or check the --workdir.")
  if step is not None:
    meta = checkpoints.read_meta(step)
  else:
    newest = checkpoints.latest_meta()  # a damaged newest checkpoint falls back to the one before
    if newest is None:
      raise ckpt_lib.CheckpointError(f"No readable checkpoint in {checkpoints.directory}.")
    meta = newest[1]
  info = info_from_dict(meta["data_info"])
  family = families.get(exp.family).build(exp, info)
  abstract = jax.eval_shape(family.init, jax.random.key(0), example_batch(info))
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device), abstract)
  if step is None:
    found = checkpoints.restore_latest(abstract)
  else:
    found = (step, *checkpoints.manager.restore(step, args=ckpt_lib.ocp.args.Composite(
        state=ckpt_lib.ocp.args.StandardRestore(abstract), meta=ckpt_lib.ocp.args.JsonRestore())).values())
  checkpoints.close()
  if found is None:
    raise ckpt_lib.CheckpointError(f"No readable checkpoint in {checkpoints.directory}.")
  return exp, family, found[1], info


# ----------------------------------------------------------------------------------------------
# The loop
# ----------------------------------------------------------------------------------------------


class _PreemptionFlag:
  """Turns SIGTERM into a flag the loop checks between steps (single-process runs).

  Multi-process runs leave SIGTERM to JAX's preemption service (started by
  jax.distributed.initialize): it tells every process about a signal any one of them received
  and names a common step to stop at, which `CheckpointManager.reached_preemption` reports.
  A Python handler here would replace the service's and leave the processes disagreeing."""

  def __init__(self, install: bool = True):
    self.raised = False
    self._previous = None
    self._install = install

  def __enter__(self):
    if not self._install:
      return self
    try:
      self._previous = signal.signal(signal.SIGTERM, self._handle)
    except ValueError:  # not the main thread: no handler, the platform's notice still works
      self._previous = None
    return self

  def _handle(self, signum, frame):
    self.raised = True

  def __exit__(self, *exc):
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)


def train(exp: config_lib.Experiment, workdir: str) -> Dict[str, Any]:
  """Trains `exp` in `workdir` until train.steps, resuming from its latest checkpoint.
  Returns a summary: final step, last logged metrics, last eval metrics."""
  parallelism = Parallelism(exp)  # devices are known before validation so errors come first
  config_lib.validate(exp, num_devices=parallelism.num_devices, num_processes=jax.process_count())
  t, seed = exp.train, exp.train.seed
  K = t.steps_per_call
  for name in ("log_every", "eval_every", "checkpoint_every", "steps"):
    if getattr(t, name) % K:
      raise config_lib.ConfigError(f"config.train.{name} = {getattr(t, name)} must be a multiple of "
                                   f"train.steps_per_call = {K}.")
  is_chief = jax.process_index() == 0
  pid, nproc = jax.process_index(), jax.process_count()
  try:
    os.makedirs(workdir, exist_ok=True)
  except OSError as e:
    raise config_lib.ConfigError(f"Cannot create --workdir {workdir}: {e}. Choose a writable folder.") from e
  if not os.access(workdir, os.W_OK):
    raise config_lib.ConfigError(f"--workdir {workdir} is not writable. Choose a writable folder.")
  _check_same_experiment(workdir, exp)

  train_ds = data_lib.load(exp.data, exp.data.train_split)
  eval_ds = data_lib.load(exp.data, exp.data.eval_split)
  info = train_ds.info
  family = families.get(exp.family).build(exp, info)
  if is_chief:
    _write_atomic(os.path.join(workdir, "config.json"), config_lib.to_json(exp))

  root = jax.random.key(seed)
  init_rng, train_rng, eval_rng, sample_rng = jax.random.split(root, 4)
  checkpoints = ckpt_lib.Checkpoints(workdir, keep=t.keep_checkpoints, async_save=t.async_checkpoints)
  abstract = parallelism.abstract(jax.eval_shape(family.init, init_rng, example_batch(info)))
  found = checkpoints.restore_latest(abstract)
  if found is None:
    start = 0
    state = jax.jit(family.init, out_shardings=parallelism.replicated)(init_rng, example_batch(info))
  else:
    start, state, meta = found
    if meta.get("data", {}).get("seed", seed) != seed:
      raise config_lib.ConfigError("The checkpoint's data seed differs from train.seed.")
    log.info("Resumed from step %d of %s", start, checkpoints.directory)
  meta_base = {"config": config_lib.to_dict(exp), "data_info": info_to_dict(info)}
  state = parallelism.put_state(state)

  step_fn = parallelism.compile(keyed_steps(family.train_step, train_rng, K), True)
  eval_fn = parallelism.compile(family.eval_step, False)
  sample_fn = jax.jit(family.sample, static_argnums=2)
  pictures_fn = jax.jit(family.pictures) if family.pictures else None
  writer = writers.MetricWriter(workdir, enabled=is_chief)
  if is_chief and start > 0:
    _truncate_metrics(workdir, start)

  def host_batch(step):
    if K == 1:
      return train_ds.batch(step, t.batch_size, seed, pid, nproc)
    parts = [train_ds.batch(step + i, t.batch_size, seed, pid, nproc) for i in range(K)]
    return {k: np.stack([p[k] for p in parts]) for k in parts[0]}

  def device_batch(step):
    return parallelism.put_batch(host_batch(step), stacked=K > 1)

  pending = collections.deque()  # (first step, device metrics) not yet fetched
  last_logged, last_eval = {}, {}
  last_saved = start if found else None

  def flush(now):
    """Fetches pending metrics (one sync), stops on a non-finite value, logs the latest step."""
    nonlocal last_logged
    if not pending:
      return
    steps, values = zip(*pending)
    fetched = zip(steps, parallelism.host_metrics(list(values)))  # one transfer for the window
    pending.clear()
    for first, metrics in fetched:
      for k in range(K):
        values = {name: float(np.asarray(v).reshape(-1)[k] if K > 1 else v) for name, v in metrics.items()}
        bad = [name for name, v in values.items() if not np.isfinite(v)]
        step_done = first + k + 1
        if bad:
          raise NonFiniteLoss(
              f"Step {step_done}: {', '.join(f'{b} = {values[b]}' for b in bad)} is not finite. The run "
              f"stopped; the last good checkpoint ({'step ' + str(last_saved) if last_saved else 'none yet'}) "
              f"is kept in {checkpoints.directory}. Lower optim.learning_rate, set optim.grad_clip_norm, "
              "or check the data; rerunning the command resumes from that checkpoint.")
        if step_done % t.log_every == 0 or step_done == t.steps:
          last_logged = {"loss": values.get("loss"), **values}
          writer.write(step_done, {**values, "steps_per_sec": now})

  def save(step):
    nonlocal last_saved
    checkpoints.save(step, parallelism.one_copy(state), {**meta_base, "step": step,
                                                        "data": {"seed": seed, "next_step": step}})
    last_saved = step

  def run_eval(step):
    nonlocal last_eval
    eval_batch = exp.eval.batch_size or t.batch_size
    totals, count = {}, 0
    for batch in eval_ds.eval_batches(eval_batch, exp.eval.num_batches, pid, nproc):
      metrics = eval_fn(state, parallelism.put_batch(batch), eval_rng)
      for k, v in parallelism.host_metrics(metrics).items():
        totals[k] = totals.get(k, 0.0) + float(v)
      count += 1
    last_eval = {f"eval_{k}": v / max(count, 1) for k, v in totals.items()}
    writer.write(step, last_eval)
    if not is_chief:
      return
    here = parallelism.local_copy(state)
    variables = here.variables(ema=True)
    samples = np.asarray(jax.device_get(sample_fn(variables, sample_rng, exp.eval.num_samples)))
    sample_dir = os.path.join(workdir, "samples")
    os.makedirs(sample_dir, exist_ok=True)
    if family.output == "text":
      text = "\n\n---\n\n".join(info.tokenizer.decode(row.tolist()) for row in samples)
      with open(os.path.join(sample_dir, f"step_{step:08d}.txt"), "w") as f:
        f.write(text)
      writer.write_text("samples", step, text)
    elif len(samples):  # families that do not generate (the classifier) return no samples
      picture = writers.image_grid(samples)
      picture.save(os.path.join(sample_dir, f"step_{step:08d}.png"))
      writer.write_image("samples", step, picture)
    if pictures_fn is not None:
      batch = next(iter(eval_ds.eval_batches(exp.eval.num_samples, 1)))
      for name, images in pictures_fn(here, batch, sample_rng).items():
        writers.save_image_grid(os.path.join(sample_dir, f"{name}_step_{step:08d}.png"), np.asarray(images))

  progress = None
  if is_chief and t.progress:
    from tqdm import tqdm
    progress = tqdm(total=t.steps, initial=start, unit="step", dynamic_ncols=True,
                    mininterval=1.0 if os.isatty(2) else 30.0, desc=exp.name)
  prefetch = concurrent.futures.ThreadPoolExecutor(max_workers=1)
  queue = collections.deque(prefetch.submit(device_batch, s) for s in range(start, min(start + 2 * K, t.steps), K))
  next_prefetch = start + len(queue) * K
  window_start, window_steps = time.perf_counter(), 0
  step = start
  try:
    with _PreemptionFlag(install=nproc == 1) as preempt:
      while step < t.steps:
        batch = queue.popleft().result()
        if next_prefetch < t.steps:
          queue.append(prefetch.submit(device_batch, next_prefetch))
          next_prefetch += K
        state, metrics = step_fn(state, batch, np.int32(step))
        pending.append((step, metrics))
        step += K
        window_steps += K
        if progress is not None:
          progress.update(K)
        if step % t.log_every == 0 or step == t.steps:
          now = time.perf_counter()
          flush(window_steps / (now - window_start))
          window_start, window_steps = now, 0
          if progress is not None and last_logged:
            shown = {k: v for k, v in last_logged.items() if v is not None}
            shown = ({"loss": shown["loss"]} if "loss" in shown else
                     {k: v for k, v in shown.items() if k.endswith("loss")} or dict(list(shown.items())[:2]))
            progress.set_postfix({k: f"{v:.4f}" for k, v in shown.items()})
        if step % t.eval_every == 0 or step == t.steps:
          flush(0.0)
          run_eval(step)
        stop = preempt.raised or (nproc > 1 and checkpoints.manager.reached_preemption(step))
        if step % t.checkpoint_every == 0 or step == t.steps or stop:
          flush(0.0)
          save(step)
        if stop:
          checkpoints.wait()
          raise Preempted(f"Preempted at step {step}: a checkpoint was written to {checkpoints.directory}. "
                          "Rerun the same command to resume.")
  finally:
    prefetch.shutdown(wait=False, cancel_futures=True)
    if progress is not None:
      progress.close()
    checkpoints.wait()
    checkpoints.close()
    writer.close()
  return {"step": step, "train": last_logged, "eval": last_eval, "workdir": workdir}


def _truncate_metrics(workdir: str, step: int):
  """Drops records past the restored step: the resumed run writes them again, identically."""
  records = [r for r in writers.read_metrics(workdir) if r["step"] <= step]
  _write_atomic(os.path.join(workdir, "metrics.jsonl"), "".join(json.dumps(r) + "\n" for r in records))


def _write_atomic(path: str, text: str):
  tmp = f"{path}.tmp{os.getpid()}"
  with open(tmp, "w") as f:
    f.write(text)
  os.replace(tmp, path)
