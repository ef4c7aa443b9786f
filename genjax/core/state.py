"""The train state every family shares: one pytree that shards, averages and checkpoints, and the
exponential moving average (EMA) of the weights that samples are drawn from."""

import dataclasses
from typing import Any, Optional

import flax
import jax
import jax.numpy as jnp
import optax


@flax.struct.dataclass
class TrainState:
  """step: int32 scalar; params, opt_state and ema_params: pytrees; extra: other variable
  collections (e.g. {"batch_stats": ...}); ema_extra: the EMA of the collections of the networks
  that keep an EMA (a GAN generator's BatchNorm statistics), same nesting as `extra`.
  Optimizers are not stored: families close over them."""

  step: jax.Array
  params: Any
  opt_state: Any
  ema_params: Any = None
  extra: Any = flax.struct.field(default_factory=dict)
  ema_extra: Any = None

  @classmethod
  def create(cls, params, tx: optax.GradientTransformation, ema: bool = False, extra=None):
    extra = extra or {}
    copy = lambda tree: jax.tree.map(jnp.copy, tree)
    return cls(
      step=jnp.zeros((), jnp.int32),
      params=params,
      opt_state=tx.init(params),
      ema_params=copy(params) if ema else None,
      extra=extra,
      ema_extra=copy(extra) if ema and extra else None,
    )

  def variables(self, ema: bool = True) -> dict:
    """The Flax variables to apply the model with: the EMA weights and their EMA'd collections
    when present and asked for."""
    if not ema or self.ema_params is None:
      return {"params": self.params, **self.extra}
    return {"params": self.ema_params, **overlay(self.extra, self.ema_extra or {})}


def overlay(base, top):
  """`base` with every leaf that `top` has (at the same path) replaced by top's."""
  if isinstance(top, dict) and isinstance(base, dict):
    return {**base, **{k: overlay(base.get(k), v) for k, v in top.items()}}
  return top


@dataclasses.dataclass(frozen=True)
class EMA:
  """ema <- decay_t * ema + (1 - decay_t) * params after every optimizer update (once per k
  micro-steps under gradient accumulation, see ema_decay_after), with
  decay_t = min(decay, (1 + t) / (10 + t)) at the t-th update when `warmup` (as diffusers'
  EMAModel), so early averages forget the initial weights instead of holding them for 1 / (1 -
  decay) steps; decay_t = decay without warm-up."""

  decay: float
  warmup: bool = True

  def decay_at(self, t) -> jax.Array:
    if not self.warmup:
      return jnp.asarray(self.decay, jnp.float32)
    t = jnp.asarray(t, jnp.float32)
    return jnp.minimum(jnp.float32(self.decay), (1.0 + t) / (10.0 + t))


def ema_of(optim) -> Optional[EMA]:
  """The EMA an `Optim` config asks for (None without optim.ema_decay)."""
  return EMA(optim.ema_decay, optim.ema_warmup) if optim.ema_decay is not None else None


def ema_update(ema_params, params, decay):
  """ema <- decay * ema + (1 - decay) * params (floating leaves; others take the new value)."""

  def one(new, old):
    if not jnp.issubdtype(jnp.asarray(new).dtype, jnp.floating):
      return new
    return optax.incremental_update(new, old, step_size=1.0 - decay)

  return jax.tree.map(one, params, ema_params)


def ema_decay_after(ema: EMA, opt_state, count) -> jax.Array:
  """The EMA's decay after an optimizer call that left `opt_state`, `count` calls having come
  before it: decay_at(t), t the optimizer updates before this one. Under gradient accumulation
  (an optax.MultiSteps state) the parameters change once every k calls, and t counts those
  updates (MultiSteps' gradient_step), not the calls; on the calls that only accumulate, the
  decay is 1 and the EMA stays as it is. So k accumulated micro-steps move the EMA as one step
  over their k batches does."""
  if isinstance(opt_state, optax.MultiStepsState):
    updated = opt_state.mini_step == 0  # MultiSteps resets it on the call that applies the update
    return jnp.where(updated, ema.decay_at(opt_state.gradient_step - 1), jnp.float32(1.0))
  return ema.decay_at(count)


def apply_gradients(
  state: TrainState, grads, tx: optax.GradientTransformation, params_key=None, **updates
) -> TrainState:
  """One optimizer update of `state.params`, or of `state.params[params_key]` when a family keeps
  several networks with their own optimizers (e.g. a GAN's "g" and "d"). Other fields of the
  state may be replaced through `updates` (e.g. extra=new_batch_stats)."""
  params = state.params if params_key is None else state.params[params_key]
  opt_state = state.opt_state if params_key is None else state.opt_state[params_key]
  delta, opt_state = tx.update(grads, opt_state, params)
  params = optax.apply_updates(params, delta)
  if params_key is not None:
    params = {**state.params, params_key: params}
    opt_state = {**state.opt_state, params_key: opt_state}
  return state.replace(params=params, opt_state=opt_state, **updates)


def update_ema(state: TrainState, decay, params_key=None) -> TrainState:
  """state.ema_params moved toward the parameters (of network `params_key`, when the EMA holds it)."""
  ema = state.ema_params
  if params_key is None:
    ema = ema_update(ema, state.params, decay)
  elif params_key in ema:
    ema = {**ema, params_key: ema_update(ema[params_key], state.params[params_key], decay)}
  return state.replace(ema_params=ema)
