"""FLOP counts of jitted calls, from XLA's cost analysis of the lowered program (nothing is
compiled for it). XLA counts the body of a loop (lax.scan, fori_loop, while_loop) once, whatever
its trip count: a caller whose function loops adds the body's count for the other trips itself
(`genjax.families.vae.evaluation_flops`, the diffusion bound's T terms)."""

from typing import Any, Callable


def of_cost(cost: Any) -> float:
  """The "flops" entry of a cost analysis (a dict, or a list of one per device program)."""
  if isinstance(cost, (list, tuple)):
    cost = cost[0] if cost else {}
  return float((cost or {}).get("flops", 0.0))


def of_call(jitted: Callable, *args, **kwargs) -> float:
  """XLA's FLOP count of one call `jitted(*args, **kwargs)` (abstract arguments are fine)."""
  return of_cost(jitted.lower(*args, **kwargs).cost_analysis())
