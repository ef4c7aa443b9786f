"""Where a compiled step's time goes: a jax.profiler trace of a few calls, read back with
jax.profiler.ProfileData (no TensorBoard or xprof needed) and matched to the compiled HLO
(`python -m genjax.profile` prints it for one config; the benchmark's time table uses it too).

Each XLA operation's time is its self time (a while loop's time excludes the operations of its
body, which are counted themselves), summed over every thread or device stream it ran on, per
train step. On a CPU several threads run operations at once, so the op times add up to more
than the wall time of a step: they are thread time, to be read as shares.

Every operation is put in one phase, from the names JAX records for it (`op_name` metadata):
  forward         the loss and what it needs (under `jvp(...)`)
  backward        its gradient (`transpose(jvp(...))`)
  optimizer       the optimizer update, EMA and the new state (genjax.core.step's `optimizer` scope)
  random numbers  threefry key derivation and bit generation, and the fusions made mostly of it
                  (a dropout mask hashed inside the fusion that applies it)
  copies          copies and transposes XLA inserted between the others (e.g. a parameter laid
                  out afresh for a matmul)
  other           the rest (metrics, loop control)
and in one kind: "matmul/conv" (a dot or convolution, alone or fused, XLA's own or a library
kernel's) or "elementwise" (everything else).
"""

from __future__ import annotations

import collections
import dataclasses
import glob
import re
import tempfile
import time
from typing import Callable, Dict, Iterable, List, Tuple

import jax
import numpy as np

from genjax import data as data_lib
from genjax import errors
from genjax.perf.registry import synthetic_batch
from genjax.trainer import program as program_lib

PHASES = ("forward", "backward", "optimizer", "random numbers", "copies", "other")
MATMUL_OPCODES = ("dot", "convolution")
_RANDOM_MARKERS = ("threefry", "random_bits", "random_split", "random_fold_in", "_uniform", "_normal", "_bernoulli")
_BOOKKEEPING_OPCODES = ("parameter", "constant", "bitcast", "get-tuple-element", "tuple")


@dataclasses.dataclass(frozen=True)
class Instruction:
  name: str
  opcode: str
  op_name: str  # JAX's name for the operation it came from ("" when none)
  matmul: bool  # a dot or convolution, or a fusion / library call that contains one
  random: bool = False  # a fusion whose operations come mostly from random-number code


@dataclasses.dataclass(frozen=True)
class OpTime:
  name: str
  phase: str
  kind: str
  us_per_step: float
  op_name: str


def _split_instruction(line: str):
  """(name, opcode, rest) of an HLO instruction line, or None."""
  m = re.match(r"\s*(?:ROOT\s+)?%?([\w.\-]+) = ", line)
  if not m:
    return None
  rest = line[m.end() :]
  if rest.startswith("("):  # a tuple shape: skip to its closing parenthesis
    depth = 0
    for i, ch in enumerate(rest):
      depth += ch == "("
      depth -= ch == ")"
      if depth == 0:
        rest = rest[i + 1 :]
        break
  else:
    rest = rest.split(" ", 1)[1] if " " in rest else ""
  op = re.match(r"\s*([\w\-]+)\(", rest)
  return (m.group(1), op.group(1), rest) if op else None


def parse_hlo(text: str) -> Dict[str, Instruction]:
  """Every instruction of a compiled module's HLO text (`compiled.as_text()`), by name."""
  computations: Dict[str, List[Tuple[str, str, str]]] = {}
  current = None
  for line in text.splitlines():
    header = re.match(r"^(?:ENTRY\s+)?%?([\w.\-]+) .*\{\s*$", line)
    if header and not line.startswith(" "):
      current = computations.setdefault(header.group(1), [])
      continue
    parsed = _split_instruction(line)
    if parsed is not None and current is not None:
      current.append(parsed)

  contains_matmul: Dict[str, bool] = {}

  def has_matmul(comp: str, seen=()) -> bool:
    if comp not in contains_matmul:
      found = False
      for _, opcode, rest in computations.get(comp, ()):
        if opcode in MATMUL_OPCODES or "matmul" in rest or "convolution" in rest:
          found = True
          break
        for callee in re.findall(r"calls=%?([\w.\-]+)", rest):
          if callee not in seen and has_matmul(callee, (*seen, comp)):
            found = True
            break
        if found:
          break
      contains_matmul[comp] = found
    return contains_matmul[comp]

  def mostly_random(comp: str) -> bool:
    """More than half of the computation's operations come from random-number code (genjax's
    unrolled Threefry, genjax.threefry, fuses into the operations that use its bits)."""
    ops = [rest for _, opcode, rest in computations.get(comp, ()) if opcode not in _BOOKKEEPING_OPCODES]
    marked = sum(any(marker in rest for marker in _RANDOM_MARKERS) for rest in ops)
    return 2 * marked > len(ops) > 0

  out: Dict[str, Instruction] = {}
  for instructions in computations.values():
    for name, opcode, rest in instructions:
      op_name = re.search(r'op_name="([^"]*)"', rest)
      matmul, random = opcode in MATMUL_OPCODES, False
      if opcode in ("fusion", "custom-call"):
        callees = re.findall(r"calls=%?([\w.\-]+)", rest)
        matmul = matmul or "matmul" in rest or any(has_matmul(c) for c in callees)
        random = opcode == "fusion" and not matmul and any(mostly_random(c) for c in callees)
      out[name] = Instruction(name, opcode, op_name.group(1) if op_name else "", matmul, random)
  return out


def phase_of(instruction: Instruction) -> str:
  name = instruction.op_name
  if instruction.random or any(marker in name for marker in _RANDOM_MARKERS):
    return "random numbers"
  if "/optimizer" in name or name.startswith("optimizer"):
    return "optimizer"
  if "transpose(jvp(" in name:
    return "backward"
  if "jvp(" in name:
    return "forward"
  if instruction.opcode in ("copy", "transpose", "copy-start", "copy-done") or (
    instruction.opcode == "fusion" and instruction.name.startswith(("copy", "transpose"))
  ):
    return "copies"
  return "other"


def _self_times(events: Iterable[Tuple[str, int, int]]) -> Dict[str, int]:
  """Self time in ns of each event name on one timeline: (name, start, duration) events that
  nest (a while loop around its body's operations) give their children's time to them."""
  out: Dict[str, int] = collections.Counter()
  stack: List[List] = []  # [name, end, child time]

  def close(until: int):
    while stack and stack[-1][1] <= until:
      name, end, child, duration = stack.pop()
      out[name] += duration - child
      if stack:
        stack[-1][2] += duration

  for name, start, duration in sorted(events, key=lambda e: (e[1], -e[2])):
    close(start)
    stack.append([name, start + duration, 0, duration])
  close(float("inf"))
  return out


def trace_ops(run: Callable[[], None], instructions: Dict[str, Instruction], calls: int, steps_per_call: int):
  """Runs `run()` (one compiled call, blocking) `calls` times under jax.profiler and returns the
  op times per train step, largest first."""
  with tempfile.TemporaryDirectory() as trace_dir:
    jax.profiler.start_trace(trace_dir)
    try:
      for _ in range(calls):
        run()
    finally:
      jax.profiler.stop_trace()
    files = glob.glob(f"{trace_dir}/**/*.xplane.pb", recursive=True)
    if not files:
      raise errors.ToolError(f"jax.profiler wrote no trace into {trace_dir}.")
    data = jax.profiler.ProfileData.from_file(files[0])
    totals: Dict[str, int] = collections.Counter()
    for plane in data.planes:
      for line in plane.lines:
        events = []
        for event in line.events:
          name = event.name
          if name not in instructions:
            stats = dict(event.stats) if hasattr(event, "stats") else {}
            name = stats.get("hlo_op", name)
          if name in instructions:
            events.append((name, event.start_ns, event.duration_ns))
        for name, ns in _self_times(events).items():
          totals[name] += ns
  steps = calls * steps_per_call
  ops = [
    OpTime(
      name,
      phase_of(instructions[name]),
      "matmul/conv" if instructions[name].matmul else "elementwise",
      ns / 1e3 / steps,
      instructions[name].op_name,
    )
    for name, ns in totals.items()
  ]
  return sorted(ops, key=lambda op: -op.us_per_step)


def summarize(ops: List[OpTime]) -> Dict[str, Dict[str, float]]:
  """{phase: {"matmul/conv": us, "elementwise": us}} per train step, and "total"."""
  table = {phase: {"matmul/conv": 0.0, "elementwise": 0.0} for phase in PHASES}
  for op in ops:
    table[op.phase][op.kind] += op.us_per_step
  table["total"] = {kind: sum(table[p][kind] for p in PHASES) for kind in ("matmul/conv", "elementwise")}
  return table


def breakdown(ops: List[OpTime]) -> Dict[str, float]:
  """Shares of the op time: {phase: share} for every phase, "matmul": the share of matmuls and
  convolutions, "op_us": the op time per step (thread time on a CPU), "top_ops": the three
  largest operations as "name (phase, share)"."""
  table = summarize(ops)
  total = sum(table["total"].values())
  if not total:
    return {}
  out: Dict = {phase: sum(table[phase].values()) / total for phase in PHASES}
  out["matmul"] = table["total"]["matmul/conv"] / total
  out["op_us"] = total
  out["top_ops"] = [
    f"{short_op_name(op.op_name, 60) or op.name} ({op.phase}, {op.us_per_step / total:.0%})" for op in ops[:3]
  ]
  return out


def short_op_name(op_name: str, width: int = 70) -> str:
  """The informative end of JAX's op_name (the jit(...)/while/body/ prefix dropped)."""
  name = re.sub(r"^jit\([^)]*\)/(while/body/)?(closed_call/)?", "", op_name)
  return name if len(name) <= width else "..." + name[-(width - 3) :]


def format_profile(ops: List[OpTime], top: int = 12) -> str:
  table = summarize(ops)
  total = sum(table["total"].values()) or 1.0
  lines = [f"{'phase':16s} {'matmul/conv':>12s} {'elementwise':>12s} {'share':>6s}   (us of thread time per step)"]
  for phase in (*PHASES, "total"):
    row = table[phase]
    both = row["matmul/conv"] + row["elementwise"]
    if both or phase == "total":
      lines.append(f"{phase:16s} {row['matmul/conv']:12.1f} {row['elementwise']:12.1f} {both / total:6.1%}")
  lines.append(f"\nlargest operations ({top}):")
  for op in ops[:top]:
    lines.append(f"{op.us_per_step:9.1f} us  {op.phase:15s} {op.kind:12s} {op.name:28s} {short_op_name(op.op_name)}")
  return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# One config's train step, as the loop compiles it
# ----------------------------------------------------------------------------------------------


def profile_experiment(exp, calls: int = 5) -> Tuple[List[OpTime], float]:
  """(op times per step, wall seconds per step) of `exp`'s train call, the loop's own
  (genjax.trainer.program: keyed steps over train.steps_per_call steps), on a synthetic batch."""
  program = program_lib.build(exp, data_lib.describe(exp.data))
  K = exp.train.steps_per_call
  program.check_fits(exp.train.batch_size * K, "training examples per call", "Lower --batch (or --steps_per_call).")
  state = program.init_state()
  host = synthetic_batch(program.info, exp.train.batch_size)
  if K > 1:
    host = {k: np.stack([v] * K) for k, v in host.items()}
  batch = program.put_batch(host)
  compiled = program.train_step.lower(state, batch, np.int32(0)).compile()
  instructions = parse_hlo(compiled.as_text())
  holder = {"state": state}

  def run():
    holder["state"], metrics = compiled(holder["state"], batch, np.int32(0))
    jax.block_until_ready(metrics)

  for _ in range(2):
    run()
  t0 = time.perf_counter()
  for _ in range(calls):
    run()
  wall = (time.perf_counter() - t0) / (calls * K)
  return trace_ops(run, instructions, calls, K), wall
