"""diffusers' DPMSolverMultistepScheduler (algorithm_type "dpmsolver++", solver_order 2, its
defaults otherwise) sampling Gaussian data N(mu, s^2) with that data's exact denoiser
E[x0 | x_t], for checking genjax.families.diffusion.samplers.dpmpp_2m against it. For comparison
only: nothing in genjax imports it; it needs torch, numpy and diffusers.

    python experiments/reference/torch_dpm_solver.py --inputs IN.npz --out OUT.npz

IN.npz holds T, beta_start, beta_end (a linear beta schedule), mu, s, and for each number of
steps N in `steps`: x_T_N (the starting noise) and ts_N (the time steps to evaluate at). OUT.npz
holds, for each N, sample_N (the scheduler's sample driven on ts_N from x_T_N) and lu_N (the time
steps the scheduler itself chooses for N steps with use_lu_lambdas=True, evenly spaced in log-SNR).
tests/families/test_diffusion.py runs it.
"""

import argparse

import numpy as np
import torch
from diffusers import DPMSolverMultistepScheduler


def scheduler(inputs, **kwargs) -> DPMSolverMultistepScheduler:
  return DPMSolverMultistepScheduler(
    num_train_timesteps=int(inputs["T"]),
    beta_start=float(inputs["beta_start"]),
    beta_end=float(inputs["beta_end"]),
    beta_schedule="linear",
    algorithm_type="dpmsolver++",
    solver_order=2,
    **kwargs,
  )


def sample(inputs, n: int) -> np.ndarray:
  """The scheduler's sample from x_T_n on the time steps ts_n, the model predicting x0 exactly."""
  sched = scheduler(inputs, prediction_type="sample")
  sched.set_timesteps(timesteps=[int(t) for t in inputs[f"ts_{n}"]])
  alphas_cumprod = sched.alphas_cumprod.double().numpy()
  mu, s = float(inputs["mu"]), float(inputs["s"])
  x = torch.from_numpy(np.array(inputs[f"x_T_{n}"], np.float32))
  for t in sched.timesteps:
    a2 = alphas_cumprod[int(t)]
    x0 = mu + np.sqrt(a2) * s**2 / (a2 * s**2 + 1 - a2) * (x.double().numpy() - np.sqrt(a2) * mu)
    x = sched.step(torch.from_numpy(x0.astype(np.float32)), t, x).prev_sample
  return x.numpy()


def main():
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument("--inputs", required=True)
  parser.add_argument("--out", required=True)
  args = parser.parse_args()
  inputs = dict(np.load(args.inputs))
  out = {}
  for n in [int(k[len("ts_") :]) for k in inputs if k.startswith("ts_")]:
    out[f"sample_{n}"] = sample(inputs, n)
    lu = scheduler(inputs, use_lu_lambdas=True)
    lu.set_timesteps(n)
    out[f"lu_{n}"] = lu.timesteps.numpy()
  np.savez(args.out, **out)


if __name__ == "__main__":
  main()
