"""The one training loop, shared by every family.

    config -> Experiment -> datasets (this process's share) -> sharded global batch
      -> jitted family.train_step -> metrics (JSONL, TensorBoard, progress bar)
      -> Orbax checkpoints -> sample / evaluate read the same checkpoint back.

Determinism: the batch of step s is a pure function of (train.seed, s) and so is the step's PRNG
key (`fold_in(key(seed), s)`); the state is restored exactly; so a run resumed from any
checkpoint logs bit for bit the losses of a run never interrupted (on CPU).

Preemption: after dispatching a call the loop waits for the one before it, never for the newest
(so the device does not idle for the host, and no metric is fetched), and reads the SIGTERM flag
after every call and between evaluation batches: a notice is answered with a checkpoint and exit
status 75 within about two step times.

Throughput: each logged record's steps_per_sec is the steps since the previous record over the
seconds they took, less the seconds spent evaluating and checkpointing in between (and the
compilation, timed before the first window), so every window measures training alone.
"""

import collections
import concurrent.futures
import logging
import os
import signal
import time
from typing import Any, Dict

import jax
import numpy as np

from genjax import config as config_lib
from genjax import data as data_lib
from genjax import errors, families, paths
from genjax.core import checkpoint as ckpt_lib
from genjax.core.placement import Placement, place
from genjax.trainer import program as program_lib
from genjax.trainer import workdir as workdir_lib
from genjax.trainer import writers

log = logging.getLogger("genjax")

PREEMPTED_EXIT_CODE = 75  # EX_TEMPFAIL: "try again" - rerunning the command resumes the run
# Compiled calls the loop lets run ahead of the host: after dispatching call n it waits for call
# n - MAX_IN_FLIGHT. One keeps the device busy (call n runs while the host prepares n + 1) and
# bounds the work queued when a preemption notice arrives, which is answered (checkpoint
# written) within about two calls.
MAX_IN_FLIGHT = 1


class NonFiniteLoss(errors.UserError, RuntimeError):
  """A logged metric became NaN or infinite; the last good checkpoint is kept."""

  exit_code = 3


class Preempted(RuntimeError):
  """SIGTERM (or a preemption notice) arrived; a checkpoint was written. Rerun to resume."""


class _PreemptionFlag:
  """Turns SIGTERM into a flag the loop checks between steps (single-process runs).

  Multi-process runs leave SIGTERM to JAX's preemption service (started by
  jax.distributed.initialize): it tells every process about a signal any one of them received
  and names a common step to stop at, which `Checkpoints.reached_preemption` reports.
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


def check_loop_config(exp: config_lib.Experiment, placement: Placement):
  """Everything about `exp` that can be checked before data is read or anything compiles."""
  families.of(exp)
  config_lib.validate(exp)
  t = exp.train
  placement.check_batches(t.batch_size, exp.eval.batch_size or t.batch_size)
  for name in ("log_every", "eval_every", "checkpoint_every", "steps"):
    if getattr(t, name) % t.steps_per_call:
      raise config_lib.ConfigError(
        f"config.train.{name} = {getattr(t, name)} must be a multiple of train.steps_per_call = {t.steps_per_call}."
      )


def train(exp: config_lib.Experiment, workdir: str, restart_from_scratch: bool = False) -> Dict[str, Any]:
  """Trains `exp` in `workdir` until train.steps, resuming from its newest readable checkpoint
  (unreadable ones are moved to WORKDIR/checkpoints_corrupt/, genjax.core.checkpoint). When the
  workdir held checkpoints and none is readable it refuses (CheckpointError) unless
  `restart_from_scratch`, which starts from step 0 beside the kept unreadable ones.
  Returns a summary: final step, the step it started from, last logged metrics, last eval
  metrics, devices used, seconds spent compiling the train step and training."""
  placement = place(exp.parallel)  # devices are known before validation so errors come first
  check_loop_config(exp, placement)
  is_chief = jax.process_index() == 0
  workdir_lib.prepare(workdir, exp)
  train_ds = data_lib.load(exp.data, exp.data.train_split)
  eval_ds = data_lib.load(exp.data, exp.data.eval_split)
  program = program_lib.build(exp, train_ds.info, placement)
  train_ds = program.family.train_data(train_ds)  # e.g. a latent model's cache
  run = _Run(program, workdir, train_ds, eval_ds, restart_from_scratch)  # a refused restore writes nothing
  if is_chief:
    workdir_lib.write_config(workdir, exp)
  started, t0 = run.step, time.perf_counter()
  try:
    run.loop()
  finally:
    run.close()
  return {
    "step": run.step,
    "started_at": started,
    "train": run.last_logged,
    "eval": run.last_eval,
    "workdir": workdir,
    "devices": placement.num_devices,
    "output": program.family.output,
    "compile_s": round(run.compile_s, 1),
    "seconds": round(time.perf_counter() - t0, 1),
  }


class _Run:
  """One training run in progress: its state on the devices, the metrics not yet fetched, the
  writers and checkpoints. `loop()` drives it from the restored step to train.steps."""

  def __init__(self, program: program_lib.Program, workdir, train_ds, eval_ds, restart_from_scratch=False):
    self.program, self.exp, self.workdir, self.family = program, program.exp, workdir, program.family
    self.par = program.placement
    self.train_ds, self.eval_ds, self.info = train_ds, eval_ds, program.info
    self.is_chief = jax.process_index() == 0
    self.nproc = jax.process_count()
    t = self.exp.train
    self.checkpoints = ckpt_lib.Checkpoints(workdir, keep=t.keep_checkpoints, async_save=t.async_checkpoints)
    self.writer, self.progress, self.profiling = None, None, False
    self.train_call, self.compile_s = None, 0.0
    try:
      self.step, self.last_saved = self._restore(restart_from_scratch)
    except BaseException:  # refused (unreadable or another structure): nothing runs, nothing is left open
      self.checkpoints.close()
      raise
    self.meta_base = {"config": config_lib.to_dict(self.exp), "data_info": self.info.to_dict()}
    self.sample_fn = program.sampler(self.exp.eval.num_samples)
    self.pictures_fn = jax.jit(self.family.pictures) if self.family.pictures else None
    self.writer = writers.MetricWriter(workdir, enabled=self.is_chief)
    if self.is_chief and self.step > 0:
      workdir_lib.truncate_metrics(workdir, self.step)
    self.pending = collections.deque()  # (first step, device metrics) not yet fetched
    self.last_logged: Dict[str, float] = {}
    self.last_eval: Dict[str, float] = {}

  def _restore(self, restart_from_scratch: bool):
    """(start step, last saved step): the newest readable checkpoint's state, or a fresh one
    where the workdir holds no checkpoint; none readable of several is refused (see `train`)."""
    found = self.program.restore(self.checkpoints)
    if found is None:
      kept = self.checkpoints.quarantined()
      if kept and not restart_from_scratch:
        raise ckpt_lib.CheckpointError(self._none_readable(kept))
      if kept:
        log.warning(
          "--restart_from_scratch: starting from step 0; %d unreadable checkpoint(s) kept in %s",
          len(kept),
          self.checkpoints.quarantine,
        )
        if self.is_chief:  # the old run's metrics go beside its checkpoints, not under the new run's
          workdir_lib.set_aside_metrics(self.workdir, self.checkpoints.quarantine)
      self.state = self.program.init_state()
      return 0, None
    start, self.state, meta = found
    if meta.get("data", {}).get("seed", self.exp.train.seed) != self.exp.train.seed:
      raise config_lib.ConfigError("The checkpoint's data seed differs from train.seed.")
    log.info("Resumed from step %d of %s", start, self.checkpoints.directory)
    return start, start

  def _none_readable(self, kept) -> str:
    return (
      f"No readable checkpoint in {self.checkpoints.directory}: the unreadable checkpoint(s) of step(s) "
      f"{', '.join(str(s) for s, _ in kept)} are kept in {self.checkpoints.quarantine}/ (never "
      "deleted), and nothing was trained. Start a new --workdir, or rerun with --restart_from_scratch to "
      "train this workdir from step 0 (the unreadable checkpoints stay where they are)."
    )

  # -- batches ---------------------------------------------------------------------------------

  def host_batch(self, step: int):
    """This process's part of the batches of the call starting at `step` (placement.batch_shard)."""
    t, p = self.exp.train, self.par
    parts = [
      self.train_ds.batch(step + i, t.batch_size, t.seed, p.batch_shard, p.batch_shards)
      for i in range(t.steps_per_call)
    ]
    if t.steps_per_call == 1:
      return parts[0]
    return {k: np.stack([part[k] for part in parts]) for k in parts[0]}

  def device_batch(self, step: int):
    return self.program.put_batch(self.host_batch(step))

  # -- metrics, checkpoints, evaluation ---------------------------------------------------------

  def flush(self, steps_per_sec: float):
    """Fetches pending metrics (one sync), stops on a non-finite value, logs the logged steps."""
    if not self.pending:
      return
    t, K = self.exp.train, self.exp.train.steps_per_call
    firsts, values = zip(*self.pending)
    fetched = zip(firsts, self.par.host_metrics(list(values)))  # one transfer for the window
    self.pending.clear()
    for first, metrics in fetched:
      for k in range(K):
        scalars = {name: float(np.asarray(v).reshape(-1)[k] if K > 1 else v) for name, v in metrics.items()}
        self._check_finite(first + k + 1, scalars)
        step_done = first + k + 1
        if step_done % t.log_every == 0 or step_done == t.steps:
          self.last_logged = scalars  # a GAN logs d_loss and g_loss, no "loss"
          self.writer.write(step_done, {**scalars, "steps_per_sec": steps_per_sec})

  def _check_finite(self, step: int, scalars: Dict[str, float]):
    bad = [name for name, v in scalars.items() if not np.isfinite(v)]
    if bad:
      kept = f"step {self.last_saved}" if self.last_saved else "none yet"
      raise NonFiniteLoss(
        f"Step {step}: {', '.join(f'{b} = {scalars[b]}' for b in bad)} is not finite. The run stopped; the "
        f"last good checkpoint ({kept}) is kept in {self.checkpoints.directory}. Lower optim.learning_rate, "
        "set optim.grad_clip_norm, or check the data; rerunning the command resumes from that checkpoint."
      )

  def save(self, step: int):
    self.checkpoints.save(
      step,
      self.par.one_copy(self.state),
      {**self.meta_base, "step": step, "data": {"seed": self.exp.train.seed, "next_step": step}},
    )
    self.last_saved = step

  def evaluate(self, step: int, preempt=None):
    """The eval step's means over the real examples of eval.num_batches held-out batches, then
    (process 0) samples; abandoned (nothing written) when a preemption notice arrives in between."""
    exp, p = self.exp, self.par
    eval_batch = exp.eval.batch_size or exp.train.batch_size
    stopped = []

    def batches():
      for batch in self.eval_ds.eval_batches(eval_batch, exp.eval.num_batches, p.batch_shard, p.batch_shards):
        if preempt is not None and self._should_stop(preempt, step):
          stopped.append(True)
          return
        yield batch

    means, _ = self.program.eval_means(self.state, batches())
    if stopped:
      return
    self.last_eval = {f"eval_{k}": v for k, v in means.items()}
    self.writer.write(step, self.last_eval)
    if self.family.output != "none" and not (preempt is not None and self._should_stop(preempt, step)):
      here = self.par.local_copy(self.state)  # every process: a sharded state is gathered collectively
      if self.is_chief:
        self.draw_samples(step, here)

  def draw_samples(self, step: int, here):
    """Sample grids (or texts) of the EMA weights of `here` (a local copy of the state) into
    WORKDIR/samples and TensorBoard."""
    exp, family = self.exp, self.family
    samples = np.asarray(jax.device_get(self.sample_fn(here.variables(ema=True), self.program.keys.sample)))
    sample_dir = paths.join(self.workdir, "samples")
    paths.makedirs(sample_dir)
    if family.output == "text":
      text = "\n\n---\n\n".join(family.decode(row) for row in samples)
      paths.write_atomic(paths.join(sample_dir, f"step_{step:08d}.txt"), text)
      self.writer.write_text("samples", step, text)
    else:
      picture = writers.image_grid(samples, layout=family.layouts.get("samples"))
      writers.save_picture(paths.join(sample_dir, f"step_{step:08d}.png"), picture)
      self.writer.write_image("samples", step, picture)
    self.writer.flush()  # the loss curve reads metrics.jsonl back
    writers.save_loss_curve(self.workdir, exp.name)
    if self.pictures_fn is not None:
      batch = next(iter(self.eval_ds.eval_batches(exp.eval.num_samples, 1)))
      for name, images in self.pictures_fn(here, batch, self.program.keys.sample).items():
        path = paths.join(sample_dir, f"{name}_step_{step:08d}.png")
        writers.save_image_grid(path, np.asarray(images), layout=family.layouts.get(name))

  # -- the loop ----------------------------------------------------------------------------------

  def _show_progress(self):
    if self.progress is None or not self.last_logged:
      return
    shown = {k: v for k, v in self.last_logged.items() if v is not None}
    shown = (
      {"loss": shown["loss"]}
      if "loss" in shown
      else {k: v for k, v in shown.items() if k.endswith("loss")} or dict(list(shown.items())[:2])
    )
    self.progress.set_postfix({k: f"{v:.4f}" for k, v in shown.items()})

  def _compile(self, batch):
    """The train call, compiled ahead of the first step and timed as its own phase (read back
    from the persistent compilation cache when it holds it), so that the progress bar's rate,
    its ETA and the first steps_per_sec window count training only."""
    if self.is_chief:
      log.info("Compiling the train step of %s ...", self.exp.name)
    t0 = time.perf_counter()
    self.train_call = self.program.train_step.lower(self.state, batch, np.int32(self.step)).compile()
    self.compile_s = time.perf_counter() - t0
    if self.is_chief:
      log.info("Compiled the train step in %.1f s", self.compile_s)

  def _start_progress(self):
    t = self.exp.train
    if self.is_chief and t.progress:
      from tqdm import tqdm

      self.progress = tqdm(
        total=t.steps,
        initial=self.step,
        unit="step",
        dynamic_ncols=True,
        mininterval=1.0 if os.isatty(2) else 30.0,
        desc=self.exp.name,
      )

  def loop(self):
    t, K = self.exp.train, self.exp.train.steps_per_call
    if self.step >= t.steps:
      return
    self.prefetch = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    queue = collections.deque(
      self.prefetch.submit(self.device_batch, s) for s in range(self.step, min(self.step + 2 * K, t.steps), K)
    )
    next_prefetch = self.step + len(queue) * K
    self._compile(queue[0].result())
    self._start_progress()
    window_start, window_steps, paused = time.perf_counter(), 0, 0.0
    in_flight = collections.deque()
    with _PreemptionFlag(install=self.nproc == 1) as preempt:
      while self.step < t.steps:
        batch = queue.popleft().result()
        if next_prefetch < t.steps:
          queue.append(self.prefetch.submit(self.device_batch, next_prefetch))
          next_prefetch += K
        self._profile(starting=True)
        self.state, metrics = self.train_call(self.state, batch, np.int32(self.step))
        self.pending.append((self.step, metrics))
        in_flight.append(metrics)
        if len(in_flight) > MAX_IN_FLIGHT:
          jax.block_until_ready(in_flight.popleft())  # an older call: the newest keeps the device busy
        self.step += K
        self._profile(starting=False)
        window_steps += K
        if self.progress is not None:
          self.progress.update(K)
        if self.step % t.log_every == 0 or self.step == t.steps:
          now = time.perf_counter()
          self.flush(window_steps / (now - window_start - paused))
          window_start, window_steps, paused = now, 0, 0.0
          self._show_progress()
        paused += self._after_step(preempt)  # steps_per_sec counts training only

  def _should_stop(self, preempt, step: int) -> bool:
    return preempt.raised or (self.nproc > 1 and self.checkpoints.reached_preemption(step))

  def _profile(self, starting: bool):
    """Starts a jax.profiler trace before the first profiled step, stops it after the last."""
    if not self.exp.train.profile_steps:
      return
    first, last = self.exp.train.profile_steps
    if starting and not self.profiling and first <= self.step < last:
      jax.profiler.start_trace(paths.join(self.workdir, "profile"))
      self.profiling = True
    elif not starting and self.profiling and self.step >= last:
      jax.block_until_ready(self.state)
      jax.profiler.stop_trace()
      self.profiling = False
      log.info("Profile of steps %d-%d written to %s", first, last, paths.join(self.workdir, "profile"))

  def _after_step(self, preempt) -> float:
    """Evaluation, checkpoint and preemption at the step just dispatched. Returns the seconds the
    evaluation and the checkpoint took, timed from when the steps dispatched before them finished
    (they wait for those anyway), which the steps_per_sec window leaves out."""
    t, step = self.exp.train, self.step
    paused_at = None
    if step % t.eval_every == 0 or step == t.steps:
      paused_at = self._pause()
      self.flush(0.0)
      self.evaluate(step, preempt)
    stop = self._should_stop(preempt, step)
    if step % t.checkpoint_every == 0 or step == t.steps or stop:
      paused_at = self._pause() if paused_at is None else paused_at
      self.flush(0.0)
      self.save(step)
      self.writer.flush()  # a bucket's metrics.jsonl is uploaded with each checkpoint
    if stop:
      self.checkpoints.wait()
      raise Preempted(
        f"Preempted at step {step}: a checkpoint was written to {self.checkpoints.directory}. "
        "Rerun the same command to resume."
      )
    return 0.0 if paused_at is None else time.perf_counter() - paused_at

  def _pause(self) -> float:
    """The time once the steps dispatched so far finished: what the window counts ends there."""
    jax.block_until_ready(self.state)
    return time.perf_counter()

  def close(self):
    if self.profiling:
      jax.profiler.stop_trace()
      self.profiling = False
    prefetch = getattr(self, "prefetch", None)
    if prefetch is not None:
      prefetch.shutdown(wait=False, cancel_futures=True)
    if self.progress is not None:
      self.progress.close()
    self.checkpoints.wait()
    self.checkpoints.close()
    if self.writer is not None:
      self.writer.close()
