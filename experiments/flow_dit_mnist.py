"""Class-conditional flow matching on MNIST pixels with a Diffusion Transformer (Peebles and Xie
2023) in place of flow_mnist.py's U-Net: the same formulation, data, optimiser and sampler, the
backbone alone differs.

Command:   python -m genjax.train --config experiments/flow_dit_mnist.py:cpu --workdir runs/flow_dit_mnist_cpu
           python -m genjax.evaluate --workdir runs/flow_dit_mnist_cpu --metrics fd --num_samples 10000 \
               --sampler heun --num_steps 5
Hardware:  the 2-core CPU, no accelerator.
Runtime:   `cpu`: the steps that take the U-Net of flow_mnist.py:cpu's schedule the same wall time
           (see experiments/RESULTS.md, "DiT beside the U-Net").
Result:    experiments/RESULTS.md, "DiT beside the U-Net", with the U-Net row beside it.

The DiT: patch 2 (196 tokens of 28x28 images), width 128, 6 adaLN-Zero blocks of 4 heads, MLP
ratio 4 (genjax/nn/dit.py; DiT-S has width 384, 12 blocks, 6 heads), conditioned on the time
(999 t, the range of the time-step indices its frequency embedding was built for, as the U-Net)
and on the class (the null label 10 for classifier-free guidance). Everything else is
flow_mnist.py's: rectified flow with SD3's logit-normal times, Adam 1e-3 with 100 warm-up steps,
EMA 0.995, batch 32, labels dropped 10% of the time, Heun sampling with guidance 2.
"""

import dataclasses
import importlib.util
import os

from genjax import config as C

_spec = importlib.util.spec_from_file_location(
  "flow_mnist_config", os.path.join(os.path.dirname(os.path.abspath(__file__)), "flow_mnist.py")
)
flow_mnist = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(flow_mnist)

# DiT steps in the wall time of the U-Net's 1,500 (flow_mnist.py:cpu), from the two train steps
# timed side by side on the idle CPU (experiments/RESULTS.md, "DiT beside the U-Net").
CPU_STEPS = 1500


def get_config(arg=None) -> C.Experiment:
  if arg not in (None, "cpu"):
    raise ValueError(f"experiments/flow_dit_mnist.py takes no argument or 'cpu', got {arg!r}.")
  base = flow_mnist.get_config(arg)
  model = dataclasses.replace(base.model, backbone="dit", patch_size=2, hidden_size=128, depth=6, num_heads=4)
  exp = C.Experiment(**{**base.__dict__, "name": "flow_dit_mnist" + ("_cpu" if arg else ""), "model": model})
  if arg == "cpu":
    exp = dataclasses.replace(
      exp, train=dataclasses.replace(exp.train, steps=CPU_STEPS, eval_every=CPU_STEPS, checkpoint_every=250)
    )
  return exp
