"""The contract between a family and the trainer, and the one assembler that binds it.

A family is a module of pure functions a researcher can import and call under their own
`jax.jit`. Every family module (genjax.families.vae, .gan, .diffusion, .autoregressive.gpt,
.autoregressive.pixelcnn, .classifier) exposes the same names with the same signatures:

  CONFIGS                     its model config dataclasses (what `Experiment.model` may hold)
  SampleOptions               a frozen dataclass of its sampling options (None fields: defaults)
  make_model(cfg, info, dtype=jnp.float32) -> model
                              the family's Flax module, or a small frozen dataclass of modules:
                              hashable, so it binds with functools.partial or as a static argument
  init(rng, model) -> variables
                              fresh Flax variables: {"params": ..., other collections}; a GAN's
                              hold both networks ({"params": {"g": ..., "d": ...}, ...})
  updates(model) -> (genjax.core.step.Update, ...)
                              one train step as the step builder runs it: each update's loss
                              `(params, state, batch, rng, i) -> (loss, (metrics, collections))`
  eval_sums(variables, batch, rng, model) -> (sums, count)
                              sums over the real examples of a held-out batch, and their number
  sample(variables, rng, n, model, options=SampleOptions()) -> samples
                              images f32[n,H,W,C] in [-1, 1], or tokens i32[n,L]

and, where the family has them (each with a default here, FamilyModule lists them):

  evaluate(variables, batches, rng, model) -> {metric: float}
                              the full evaluation `python -m genjax.evaluate` prints
  pictures(variables, batch, rng, model, n) -> {name: images}
                              extra grids saved at each evaluation
  OUTPUT, PARTITION_RULES, EMA_OF, EVAL_EMA, FROZEN_COLLECTIONS (constants, DEFAULTS below), and the hooks
  prepare(batch, rng), optimizers(exp, model), finish(model), check(exp, info, batch_splits),
  resolve_options(options, model, exp, info), evaluates(exp), decode_text(ids, info),
  train_data(dataset, exp, model) (the training dataset the loop reads, e.g. a latent cache),
  layouts(model, n) -> {picture name or "samples": Layout}, notes(exp, model)

Families never mention devices: genjax.core.parallel makes the same functions right in every
parallel mode. `assemble(exp, info)` binds a family module to an experiment as the `Family` the
trainer (genjax.trainer), `genjax.sample`, `genjax.evaluate` and `genjax.perf` call; the trainer
owns everything else: data, sharding, checkpoints, logging, progress bars, preemption.
"""

import dataclasses
import functools
from typing import Any, Callable, Dict, Iterable, Mapping, Optional, Protocol, Tuple

import jax
import jax.numpy as jnp
import optax

from genjax import errors
from genjax.core import step as step_lib
from genjax.core.optim import make_optimizer
from genjax.core.state import TrainState, ema_of

Batch = Dict[str, Any]  # {"image": f32[B,H,W,C] in [-1, 1], "label": i32[B]} or {"tokens": i32[B,L+1]}
Metrics = Dict[str, jax.Array]  # scalar means over the batch
Variables = Dict[str, Any]  # Flax variables: {"params": ..., "batch_stats": ..., ...}


@dataclasses.dataclass(frozen=True)
class NoOptions:
  """The sampling options of a family whose sampler takes none."""


@dataclasses.dataclass(frozen=True)
class Layout:
  """How a grid of images is laid out and labelled (genjax.trainer.writers.image_grid): `ncols`
  images per row (None: a square), a label per row and per column where they vary (a class per
  row, an interpolation's steps per column), and a caption above the grid."""

  ncols: Optional[int] = None
  rows: Tuple[str, ...] = ()
  cols: Tuple[str, ...] = ()
  caption: str = ""


class FamilyModule(Protocol):
  """What a family module defines (see the module docstring); the optional names below default
  to the values in DEFAULTS."""

  CONFIGS: Tuple[type, ...]
  SampleOptions: type

  def make_model(self, cfg, info, dtype=jnp.float32) -> Any: ...
  def init(self, rng: jax.Array, model) -> Variables: ...
  def updates(self, model) -> Tuple[step_lib.Update, ...]: ...
  def eval_sums(self, variables: Variables, batch: Batch, rng, model) -> Tuple[Metrics, jax.Array]: ...
  def sample(self, variables: Variables, rng: jax.Array, n: int, model, options=None) -> jax.Array: ...


# The optional names of a family module, and what a module without them gets.
DEFAULTS: Dict[str, Any] = {
  "OUTPUT": "image",  # "image", "text" or "none" (the classifier draws no samples)
  # (regex on a parameter's path, logical axis names per dimension): which dimensions tensor
  # parallelism may split (genjax.core.sharding); families without large layers need none
  "PARTITION_RULES": (),
  "EMA_OF": None,  # the network (a key of params) whose weights the EMA follows; None: all of them
  # collections a state carries unchanged (a latent model's frozen autoencoder): no EMA copy
  "FROZEN_COLLECTIONS": (),
  "EVAL_EMA": True,  # eval_sums sees the EMA weights (a GAN's evaluation pits the raw G against D)
  "prepare": None,  # prepare(batch, rng) -> batch: what every update of a step shares
  "evaluate": None,
  "pictures": None,
}


def hook(module, name: str) -> Any:
  return getattr(module, name, DEFAULTS.get(name))


# Hooks: bound once per experiment, each `(exp, info, model)` unless said otherwise.


def optimizers(module, exp, info, model) -> Mapping[Optional[str], optax.GradientTransformation]:
  """{network key (None: all parameters): optimizer}; the family's `optimizers(exp, model)`."""
  if hasattr(module, "optimizers"):
    return module.optimizers(exp, model)
  return {None: make_optimizer(exp.optim, exp.train.steps)}


def finish(module, model) -> Optional[Callable]:
  """Metrics derived from the means after the mean over devices (e.g. bits from nats): the
  family's `finish(model)`."""
  return module.finish(model) if hasattr(module, "finish") else None


@dataclasses.dataclass(frozen=True)
class Family:
  """A family module bound to one experiment: what the trainer, `genjax.sample`,
  `genjax.evaluate` and `genjax.perf` call (made by `assemble`)."""

  init: Callable[[jax.Array], TrainState]  # (rng) -> a fresh TrainState
  # (state, batch, rng) -> (state, metrics): one optimisation step (genjax.core.step.train_step)
  train_step: Callable[[TrainState, Batch, jax.Array], Tuple[TrainState, Metrics]]
  # (state, batch, rng) -> (means over the batch's real examples, their count)
  eval_step: Callable[[TrainState, Batch, jax.Array], Tuple[Metrics, jax.Array]]
  # (variables, rng, n, options=None) -> images f32[n,H,W,C] in [-1, 1], or tokens i32[n,L]
  sample: Callable[..., jax.Array]
  # the family's SampleOptions class, and `resolve_options(options) -> options` filling in defaults
  sample_options: type = NoOptions
  resolve_options: Callable[[Any], Any] = lambda options: options
  output: str = "image"  # "image", "text" or "none"
  # (state, batches: iterable of Batch with a "mask" key, rng) -> {metric: float}
  evaluate: Optional[Callable[[TrainState, Iterable[Batch], Any], Dict[str, Any]]] = None
  # (state, batch, rng) -> {name: images f32[n,H,W,C]}
  pictures: Optional[Callable[[TrainState, Batch, Any], Dict[str, jax.Array]]] = None
  decode: Optional[Callable[[Any], str]] = None  # text families: token ids -> text
  # {picture name, or "samples" for the sample grid: its Layout}; a missing name: a plain square
  layouts: Dict[str, Layout] = dataclasses.field(default_factory=dict)
  partition_rules: Tuple[Tuple[str, Tuple[Optional[str], ...]], ...] = ()
  notes: str = ""
  # (the split's dataset) -> what the loop reads its training batches from
  train_data: Callable[[Any], Any] = lambda ds: ds  # noqa: E731


def create_state(module, variables: Variables, txs: Mapping[Optional[str], Any], ema: bool) -> TrainState:
  """The TrainState of fresh `variables`: one optimizer state per network of `txs` (or one for all
  parameters), and, when `ema`, a copy of the weights the EMA follows (module.EMA_OF) and of that
  network's other collections."""
  params, extra = variables["params"], {k: v for k, v in variables.items() if k != "params"}
  copy = lambda tree: jax.tree.map(jnp.copy, tree)  # noqa: E731
  net = hook(module, "EMA_OF")
  averaged = {k: v for k, v in extra.items() if k not in hook(module, "FROZEN_COLLECTIONS")}
  if None in txs:
    opt_state = txs[None].init(params)
  else:
    opt_state = {key: tx.init(params[key]) for key, tx in txs.items()}
  if not ema:
    ema_params, ema_extra = None, None
  elif net is None:
    ema_params, ema_extra = copy(params), (copy(averaged) if averaged else None)
  else:
    ema_params = {net: copy(params[net])}
    ema_extra = {name: {net: copy(coll[net])} for name, coll in averaged.items() if net in coll} or None
  return TrainState(
    step=jnp.zeros((), jnp.int32),
    params=params,
    opt_state=opt_state,
    ema_params=ema_params,
    extra=extra,
    ema_extra=ema_extra,
  )


def assemble(module, exp, info, batch_splits: int = 1) -> Family:
  """The family `module` bound to experiment `exp` on data `info`. `batch_splits`: the pieces each
  call's batch is cut into before the step function sees it (one per device when the step is
  mapped over devices)."""
  if hasattr(module, "check"):
    module.check(exp, info, batch_splits)
  model = module.make_model(exp.model, info, exp.train.compute_dtype)
  txs = optimizers(module, exp, info, model)
  done = finish(module, model)
  eval_ema = hook(module, "EVAL_EMA")
  sums = lambda state, batch, rng: module.eval_sums(state.variables(ema=eval_ema), batch, rng, model)  # noqa: E731
  if hasattr(module, "resolve_options"):  # resolve_options(options, model, exp, info) -> options
    resolve = lambda options: module.resolve_options(options, model, exp, info)  # noqa: E731
  else:
    resolve = lambda options: options  # noqa: E731
  evaluate, pictures = hook(module, "evaluate"), hook(module, "pictures")
  if evaluate is not None and hasattr(module, "evaluates") and not module.evaluates(exp):
    evaluate = None
  n = exp.eval.num_samples
  return Family(
    init=lambda rng: create_state(module, module.init(rng, model), txs, exp.optim.ema_decay is not None),
    train_step=functools.partial(
      step_lib.train_step,
      updates=module.updates(model),
      optimizers=txs,
      ema=ema_of(exp.optim),
      prepare=hook(module, "prepare"),
    ),
    eval_step=step_lib.eval_step_from_sums(sums, done),
    sample=lambda variables, rng, n, options=None: module.sample(
      variables, rng, n, model, resolve(options or module.SampleOptions())
    ),
    sample_options=module.SampleOptions,
    resolve_options=resolve,
    output=hook(module, "OUTPUT"),
    evaluate=None
    if evaluate is None
    else (lambda state, batches, rng: evaluate(state.variables(), batches, rng, model)),
    pictures=None
    if pictures is None
    else (lambda state, batch, rng: pictures(state.variables(), batch, rng, model, n)),
    decode=functools.partial(module.decode_text, info=info) if hasattr(module, "decode_text") else None,
    layouts=module.layouts(model, n) if hasattr(module, "layouts") else {},
    partition_rules=hook(module, "PARTITION_RULES"),
    notes=module.notes(exp, model) if hasattr(module, "notes") else "",
    train_data=(lambda ds: module.train_data(ds, exp, model)) if hasattr(module, "train_data") else (lambda ds: ds),
  )


def loss_updates(loss: Callable, finish_fn: Optional[Callable] = None) -> Callable:
  """`updates(model)` of a family with one network and no other collections, from its
  `loss(params, batch, rng, model) -> (loss, metrics)` (and its `finish(model)`)."""

  def updates(model) -> Tuple[step_lib.Update, ...]:
    def train_loss(params, state, batch, rng, i):
      value, metrics = loss(params, batch, rng, model)
      return value, (metrics, {})

    return (step_lib.Update(train_loss, finish=None if finish_fn is None else finish_fn(model)),)

  return updates


def resolve_likelihood(cfg, info) -> str:
  """An image model's likelihood: cfg.likelihood, where "auto" means Bernoulli for binarized data
  and the discretized logistic otherwise."""
  if cfg.likelihood == "auto":
    return "bernoulli" if info.binary else "logistic"
  return cfg.likelihood


def reconstruction_pairs(x, reconstruct: Callable):
  """Rows of images, each followed by the row of their reconstructions (`reconstruct(x)`), laid
  out so that a square grid keeps the pairs aligned: as many rows of up to 8 as the batch fills."""
  cols = 8
  while cols > 2 and cols * cols // 2 > x.shape[0]:
    cols -= 2
  rows = cols // 2
  x = x[: rows * cols]
  recon = reconstruct(x)
  pairs = jnp.stack([x.reshape(rows, cols, *x.shape[1:]), recon.reshape(rows, cols, *x.shape[1:])], 1)
  return pairs.reshape(2 * rows * cols, *x.shape[1:])


def check_options(family: Family, options) -> Any:
  """`options` (None: the defaults) as the family's SampleOptions, with defaults filled in."""
  if options is None:
    options = family.sample_options()
  if not isinstance(options, family.sample_options):
    raise errors.ConfigError(f"sample options must be {family.sample_options.__name__}, got {type(options).__name__}.")
  return family.resolve_options(options)


__all__ = [
  "Batch",
  "DEFAULTS",
  "Family",
  "FamilyModule",
  "Metrics",
  "Layout",
  "NoOptions",
  "Variables",
  "assemble",
  "check_options",
  "create_state",
  "loss_updates",
]
