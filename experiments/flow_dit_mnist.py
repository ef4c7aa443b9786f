"""Class-conditional flow matching on MNIST pixels with a Diffusion Transformer (Peebles and Xie
2023) in place of flow_mnist.py's U-Net: the same formulation, data, optimiser and sampler, the
backbone alone differs.

Command:   python -m genjax.train --config experiments/flow_dit_mnist.py:cpu --workdir runs/flow_dit_mnist_cpu
           python -m genjax.evaluate --workdir runs/flow_dit_mnist_cpu --metrics fd --num_samples 10000 \
               --sampler heun --num_steps 5
           (`--config.train.steps=500` stops at the step-500 checkpoint of the same run: the learning
           rate is constant after its warm-up and the batches are a pure function of the step)
Hardware:  the 2-core CPU, no accelerator.
Runtime:   `cpu`: 858 ms a step on the idle CPU against 390 for flow_mnist.py:cpu's U-Net (2026-12-06,
           experiments/RESULTS.md), so 500 DiT steps take about the time of the U-Net's 1,250 steps
           and the 1,000 of this config about twice it.
Result:    experiments/RESULTS.md, "2026-12-06": classifier FD 25.5 at step 500 (10,000 samples;
           the U-Net's 2.82 at 1,250), 9.7 at step 1,000 (2,000 samples), sample grids at both.

The DiT (1,865,988 parameters; the U-Net has 1,114,209): patch 2 (196 tokens of 28x28 images),
width 128, 6 adaLN-Zero blocks of 4 heads, MLP ratio 4 (genjax/nn/dit.py; DiT-S has width 384, 12 blocks, 6 heads), conditioned on the time
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

# Twice the wall time of flow_mnist.py:cpu's 1,250-step FD row (858 against 390 ms a step, timed
# side by side on the idle CPU; experiments/RESULTS.md, "2026-12-06"); step 500 is the same time.
CPU_STEPS = 1000


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
