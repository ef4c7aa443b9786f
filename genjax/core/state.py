"""The train state every family shares: one pytree that shards, averages and checkpoints."""

from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax


@flax.struct.dataclass
class TrainState:
  """step: int32 scalar; params, opt_state and ema_params: pytrees; extra: other variable
  collections (e.g. {"batch_stats": ...}). Optimizers are not stored: families close over them."""

  step: jax.Array
  params: Any
  opt_state: Any
  ema_params: Any = None
  extra: Any = flax.struct.field(default_factory=dict)

  @classmethod
  def create(cls, params, tx: optax.GradientTransformation, ema: bool = False, extra=None):
    return cls(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
               ema_params=jax.tree.map(jnp.copy, params) if ema else None, extra=extra or {})

  def variables(self, ema: bool = True) -> dict:
    """The Flax variables to apply the model with: EMA weights when present and asked for."""
    params = self.ema_params if (ema and self.ema_params is not None) else self.params
    return {"params": params, **self.extra}


def ema_update(ema_params, params, decay: float):
  """ema <- decay * ema + (1 - decay) * params."""
  return optax.incremental_update(params, ema_params, step_size=1.0 - decay)


def apply_gradients(state: TrainState, grads, tx: optax.GradientTransformation,
                    ema_decay=None, params_key=None, **updates) -> TrainState:
  """One optimizer update (and EMA update) of `state.params`, or of `state.params[params_key]`
  when a family keeps several networks with their own optimizers (e.g. a GAN's "g" and "d").
  Other fields of the state may be replaced through `updates` (e.g. extra=new_batch_stats)."""
  params = state.params if params_key is None else state.params[params_key]
  opt_state = state.opt_state if params_key is None else state.opt_state[params_key]
  delta, opt_state = tx.update(grads, opt_state, params)
  params = optax.apply_updates(params, delta)
  ema = state.ema_params
  if ema_decay is not None and ema is not None:
    if params_key is None:
      ema = ema_update(ema, params, ema_decay)
    elif params_key in ema:
      ema = {**ema, params_key: ema_update(ema[params_key], params, ema_decay)}
  if params_key is not None:
    params = {**state.params, params_key: params}
    opt_state = {**state.opt_state, params_key: opt_state}
  return state.replace(params=params, opt_state=opt_state, ema_params=ema, **updates)
