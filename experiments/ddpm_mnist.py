"""Class-conditional DDPM on MNIST with classifier-free guidance.

Command:   python -m genjax.train --config experiments/ddpm_mnist.py --workdir runs/ddpm_mnist
           python -m genjax.evaluate --workdir runs/ddpm_mnist          (bits/dim, full bound)
           python -m genjax.sample --workdir runs/ddpm_mnist --num 100 --out mnist.png \
               --sampler ddim --num_steps 50 --guidance_scale 2
           The small CPU run measured for RESULTS.md:
           python -m genjax.train --config experiments/ddpm_mnist.py:cpu --workdir runs/ddpm_mnist_cpu
Hardware:  the full config is meant for one accelerator (50k steps of batch 128 with a 6.5M
           parameter U-Net: about an hour on a current GPU, untested here); the `cpu` variant
           (1.1M parameters, batch 32) was run on the 2-core CPU, no accelerator.
Runtime:   `cpu`: 600 steps; the first 300 ran at load ~20 (0.15 steps/s, 35 min), steps 300-600
           in 3.8 min on the otherwise idle CPU (~1.3 steps/s; the Fashion-MNIST twin: 600 steps in
           6.9 min). The full bound costs 1000 U-Net calls per image: 4.4 min for 50 test images.
Result:    there is no published DDPM bits/dim for MNIST in [-1, 1] to compare with. At step 600
           (EMA weights, decay 0.995) the whole bound on the first 50 test images is 2.57 bits/dim
           (prior 0.00003, diffusion terms 1.40, decoder 1.17), and the Frechet distance in the MNIST
           classifier's features of 500 DDIM-50 samples (guidance 2) against MNIST train is 66.0;
           samples are still noisy strokes, a few digit-like. Fashion-MNIST `cpu` at step 600: 4.21
           bits/dim. Details, dates and the sampling times in experiments/RESULTS.md.

The U-Net for 28x28 images halves the resolution twice (28 -> 14 -> 7) with channel
multipliers (1, 2, 2) and attends at 14x14 (the full config; 196 positions, like DDPM's 16x16)
or only at 7x7 (the cpu config, where attention at 14x14 would dominate the cost).
Labels are dropped 10% of the time (Ho and Salimans 2021); samples use guidance scale 2
(out = out_null + 2 (out_label - out_null), i.e. w = 1 in the paper's notation) and DDIM 50 steps.
"""

import dataclasses

from genjax import config as C
from genjax.families import diffusion


def get_config(arg=None, dataset: str = "mnist") -> C.Experiment:
  model = diffusion.Config(
    ch=64,
    ch_mult=(1, 2, 2),
    num_res_blocks=2,
    attn_resolutions=(14,),
    dropout=0.1,
    schedule="linear",
    timesteps=1000,
    prediction="eps",
    loss="simple",
    variance="fixedlarge",
    class_conditional=True,
    label_dropout=0.1,
    guidance_scale=2.0,
    sampler="ddim",
    sample_steps=50,
    eta=0.0,
    eval_max_examples=1000,
  )
  exp = C.Experiment(
    name=f"ddpm_{dataset}",
    family="diffusion",
    model=model,
    data=C.Data(name=dataset),
    optim=C.Optim(name="adam", learning_rate=2e-4, warmup_steps=1000, grad_clip_norm=1.0, ema_decay=0.9999),
    train=C.Train(steps=50_000, batch_size=128, log_every=100, eval_every=5000, checkpoint_every=5000),
    eval=C.Eval(num_batches=4, batch_size=128, num_samples=100),
  )
  if arg == "cpu":
    # A small model and a short run for a shared 2-core CPU (about 0.3 steps/s): one residual
    # block per level, 32 base channels, attention only at 7x7, batch 32, a fast EMA (0.995,
    # half-life ~140 steps) for the 600 steps.
    exp = C.Experiment(
      **{
        **exp.__dict__,
        "name": f"ddpm_{dataset}_cpu",
        "model": dataclasses.replace(model, ch=32, num_res_blocks=1, attn_resolutions=(7,), eval_max_examples=500),
        "optim": dataclasses.replace(exp.optim, learning_rate=1e-3, warmup_steps=100, ema_decay=0.995),
        "train": dataclasses.replace(
          exp.train, steps=600, batch_size=32, log_every=20, eval_every=600, checkpoint_every=100
        ),
        "eval": C.Eval(num_batches=2, batch_size=100, num_samples=16),
        # XLA:CPU's per-step buffers kept mapped (genjax.cli.tune_malloc): the U-Net step took
        # 0.85-0.89x diffusers' time instead of 1.04x on a 2-core CPU (experiments/RESULTS.md, sixth
        # and seventh sessions); flow_mnist.py:cpu inherits it.
        "parallel": dataclasses.replace(exp.parallel, keep_cpu_memory=True),
      }
    )
  elif arg is not None:
    raise ValueError(f"experiments/ddpm_{dataset}.py takes no argument or 'cpu', got {arg!r}.")
  return exp
