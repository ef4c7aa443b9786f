"""The fault-injection table: per injected fault, how many trials ran and how they ended. Tests
record into it (the `fault_table` fixture of tests/reliability/conftest.py); under pytest-xdist
each worker hands its rows to the controlling process, which prints the merged table at the end
of the session (tests/conftest.py)."""

import collections
from typing import Dict, List

TABLE: Dict[str, collections.Counter] = collections.OrderedDict()  # fault -> Counter of outcomes


def record(fault: str, outcome: str):
  """outcome: "resumed bit-exact", "failed cleanly, nothing lost", "restarted from 0 bit-exact,
  nothing lost" (train --restart_from_scratch), or anything else (a failure)."""
  TABLE.setdefault(fault, collections.Counter())[outcome] += 1


def rows() -> Dict[str, Dict[str, int]]:
  """The table as plain data (what a worker sends to the controlling process)."""
  return {fault: dict(outcomes) for fault, outcomes in TABLE.items()}


def merge(other: Dict[str, Dict[str, int]]):
  for fault, outcomes in other.items():
    TABLE.setdefault(fault, collections.Counter()).update(outcomes)


def lines() -> List[str]:
  if not TABLE:
    return []
  out = [
    "",
    "fault injection                           trials  outcome",
    "----------------------------------------  ------  -------------------------------",
  ]
  for fault, outcomes in TABLE.items():
    text = ", ".join(f"{n} {o}" for o, n in outcomes.items())
    out.append(f"{fault:<40}  {sum(outcomes.values()):>6}  {text}")
  return out
