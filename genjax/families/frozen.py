"""Another genjax run's weights, read-only, for a model that builds on it frozen: latent
diffusion's autoencoder (genjax.families.autoencoder.load_frozen), a prior over a VQ-VAE's codes
(genjax.families.autoregressive.code_prior).

`newest_state(workdir, what)` restores the newest readable checkpoint of a run with Orbax, without
a target (no model needs building first), into host arrays; nothing in the run is moved, deleted
or written. `weights(tree)` picks what the run's own sampling would apply: the EMA's parameters
and collections where the run kept an EMA, else the raw ones.
"""

import logging
import os
from typing import Any, Dict, Tuple

import jax
import jax.numpy as jnp

from genjax import errors
from genjax.core.state import overlay

log = logging.getLogger("genjax")


def checkpoint_steps(workdir: str) -> list:
  """The steps of the run's finished checkpoints, newest first (Orbax's temporary folders skipped)."""
  folder = os.path.join(workdir, "checkpoints")
  names = os.listdir(folder) if os.path.isdir(folder) else []
  return sorted((int(n) for n in names if n.isdigit() and os.path.isdir(os.path.join(folder, n))), reverse=True)


def restore_tree(state_dir: str) -> Dict[str, Any]:
  """One checkpoint's saved TrainState as a dict of host arrays (read without a target)."""
  import orbax.checkpoint as ocp

  with ocp.StandardCheckpointer() as checkpointer:
    return checkpointer.restore(state_dir)


def newest_state(workdir: str, what: str) -> Tuple[Dict[str, Any], int]:
  """(saved TrainState tree, step) of the newest readable checkpoint of the run at `workdir`; a
  newer one that cannot be read is named in a warning and left where it is. `what` names the run
  in errors ("autoencoder run", "VQ-VAE run"): MissingError without checkpoints, CheckpointError
  when none can be read."""
  steps = checkpoint_steps(workdir)
  if not steps:
    raise errors.MissingError(
      f"{workdir} is a genjax {what} without a checkpoint in {os.path.join(workdir, 'checkpoints')}: "
      "train it past train.checkpoint_every steps (or until it ends), then load it."
    )
  failures = []
  for step in steps:
    try:
      tree = restore_tree(os.path.join(workdir, "checkpoints", str(step), "state"))
    except Exception as e:  # noqa: BLE001 - any unreadable checkpoint falls back the same way
      failures.append(f"{step} ({type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''})")
      continue
    if failures:
      log.warning("%s: checkpoints %s cannot be read; using checkpoint %d.", workdir, ", ".join(failures), step)
    return tree, step
  raise errors.CheckpointError(
    f"No checkpoint of the {what} {workdir} can be read: {'; '.join(failures)}. "
    "Nothing was changed; train the run again (or resume it) so that it saves a readable checkpoint."
  )


def weights(tree: Dict[str, Any]) -> Tuple[Dict[str, Any], bool]:
  """(Flax variables {"params": ..., collections...}, whether they are the EMA's) of a saved
  TrainState tree, as TrainState.variables(ema=True) gives them, as jax arrays."""
  ema = tree.get("ema_params") if isinstance(tree, dict) else None
  extra = dict(tree.get("extra") or {})
  if ema:
    extra = overlay(extra, tree.get("ema_extra") or {})
  variables = {"params": ema if ema else tree["params"], **extra}
  return jax.tree.map(jnp.asarray, variables), bool(ema)
