"""Class-conditional flow matching (rectified flow) on MNIST with classifier-free guidance.

Command:   python -m genjax.train --config experiments/flow_mnist.py --workdir runs/flow_mnist
           python -m genjax.evaluate --workdir runs/flow_mnist        (bits/dim, ODE likelihood)
           python -m genjax.evaluate --workdir runs/flow_mnist --metrics fd --num_samples 10000
           python -m genjax.sample --workdir runs/flow_mnist --num 100 --out mnist.png \
               --sampler heun --num_steps 10
           The CPU run measured for RESULTS.md:
           python -m genjax.train --config experiments/flow_mnist.py:cpu --workdir runs/flow_mnist_cpu
Hardware:  the full config is meant for one accelerator (the ddpm_mnist.py U-Net, 6.5M
           parameters, 50k steps of batch 128; not run here); the `cpu` variant (ddpm_mnist.py:cpu's
           1.1M parameter U-Net) was run on the 2-core CPU, no accelerator.
Runtime:   `cpu`: 1500 steps in 35 min (0.65-0.86 steps/s); the step-1250 checkpoint after 29.3 min.
Result:    `cpu` at step 1250: classifier FD 2.82 on 10,000 samples (Heun 5 steps, guidance 2) vs
           MNIST train, every sample grid digit recognisable (experiments/RESULTS.md, 2026-12-03).

The objective is Lipman et al. 2023's conditional flow matching on the optimal-transport path
(section 4.1, eq. 20-23) with sigma_min = 0, which is rectified flow's straight interpolation
(Liu et al. 2023, eq. 1); times are drawn logit-normally with m = 0, s = 1, the setting Stable
Diffusion 3 found best among its samplers of t (Esser et al. 2024, section 3.1 and 5.1.2,
"rf/lognorm(0.00, 1.00)"). The network and the optimiser are ddpm_mnist.py's (the DDPM U-Net
halving 28x28 twice, Adam 2e-4, EMA), so that the DDPM, EDM and flow rows of RESULTS.md differ in
the formulation only. Labels are dropped 10% of the time for classifier-free guidance (Ho and
Salimans 2021). Samples integrate the ODE with Heun's method; the likelihood with dopri5 at
rtol = atol = 1e-5, the tolerances of Lipman et al.'s likelihood evaluation (appendix E), and one
Rademacher probe per image (Hutchinson's estimator, FFJORD's choice).
"""

import dataclasses
import importlib.util
import os

from genjax import config as C

_spec = importlib.util.spec_from_file_location(
  "ddpm_mnist_config", os.path.join(os.path.dirname(os.path.abspath(__file__)), "ddpm_mnist.py")
)
ddpm_mnist = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ddpm_mnist)


def get_config(arg=None, dataset: str = "mnist") -> C.Experiment:
  if arg not in (None, "cpu"):
    raise ValueError(f"experiments/flow_{dataset}.py takes no argument or 'cpu', got {arg!r}.")
  base = ddpm_mnist.get_config(arg, dataset)
  model = dataclasses.replace(
    base.model,
    formulation="flow",
    flow_sigma_min=0.0,
    flow_time_sampling="logit_normal",
    flow_logit_mean=0.0,
    flow_logit_std=1.0,
    flow_rtol=1e-5,
    flow_atol=1e-5,
    flow_probes=1,
    sampler="heun",
    sample_steps=10,
    guidance_scale=2.0,
    eval_max_examples=1000 if arg is None else 100,
  )
  exp = C.Experiment(**{**base.__dict__, "name": f"flow_{dataset}" + ("_cpu" if arg else ""), "model": model})
  if arg == "cpu":
    # ddpm_mnist.py:cpu's model, optimiser and batch, run for what 30 minutes of the 2-core CPU
    # allow (about 0.85 steps/s measured on 2026-12-03)
    exp = dataclasses.replace(
      exp, train=dataclasses.replace(exp.train, steps=1500, log_every=50, eval_every=1500, checkpoint_every=250)
    )
  return exp
