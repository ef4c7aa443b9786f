"""EDM on CIFAR-10: Karras et al. 2022 ("Elucidating the Design Space of Diffusion-Based Generative
Models"), config F, with EDM's DDPM++ or NCSN++ network, unconditional or class-conditional.

Command:   python -m genjax.train --config experiments/edm_cifar10.py:ddpmpp --workdir runs/edm_cifar10
           (also :ncsnpp, :ddpmpp_cond, :ncsnpp_cond; needs the CIFAR-10 archive TFDS downloads,
           cifar-10-binary.tar.gz, in --config.data.manual_dir or $GENJAX_MANUAL_DIR: not in this
           repository)
           then  python -m genjax.evaluate --workdir runs/edm_cifar10 --metrics fd --num_samples 50000
                 python -m genjax.sample --workdir runs/edm_cifar10 --num 64 --out edm.png --sampler heun --num_steps 18
Hardware:  EDM trained each CIFAR-10 model for ~2 days on 8 V100s (200 Mimg). Not run here (no
           CIFAR-10 offline, no accelerator); tests/families/test_cifar10_recipes.py checks that each
           network has the parameter count of EDM's own code (NVlabs/edm training/networks.py,
           instantiated in PyTorch: 55,733,891 DDPM++, 56,397,827 NCSN++, +1,408 / +2,816 with
           labels) and that the first training steps run with tiny overrides.
Published: FID 1.97 (DDPM++, unconditional), 1.98 (NCSN++, unconditional), 1.79 (both
           conditional), 35 network evaluations: Heun's 2nd-order sampler (Algorithm 1) with 18 steps
           of the rho = 7 schedule, sigma from 80 to 0.002 (Karras et al. 2022, Table 2, config F).

The settings of EDM's Table 7 ("CIFAR-10") as train.py applies them (--arch=ddpmpp|ncsnpp
--precond=edm): batch 512; Adam (0.9, 0.999, eps 1e-8), learning rate 1e-3 ramped up linearly over
the first 10 Mimg (19,531 steps), then constant, no gradient clipping; 200 Mimg (390,625 steps);
EMA half-life 0.5 Mimg, i.e. a decay of 0.5^(512 / 500,000) = 0.99929 per step; dropout 0.13;
EDM's non-leaky augmentation with probability 0.12 (x-flips, y-flips, isotropic and anisotropic
scaling, rotation, translation), whose 9 labels condition the network; preconditioning and loss
of the "EDM" column of Table 1 (sigma_data 0.5, ln sigma ~ N(-1.2, 1.2^2), lambda = 1 / c_out^2).
The networks: EDM's SongUNet (training/networks.py) with 128 base channels, multipliers
(2, 2, 2), 4 residual blocks per level, attention at 16x16; DDPM++ embeds the noise level with
sinusoids and resamples with [1, 1], NCSN++ with random Fourier features and [1, 3, 3, 1] and a
residual encoder.

Where genjax differs: EDM's loss sums the squared error over an image's pixels (training/loss.py),
genjax averages it (with Adam only epsilon's relative weight changes); EDM ramps its EMA half-life
up with the images seen (ema_rampup_ratio 0.05), genjax warms the decay up as
min(decay, (1 + t) / (10 + t)); EDM's labels of class-conditional models are dropped with
label_dropout 0 (EDM trains these without classifier-free guidance), as here.
"""

from genjax import config as C
from genjax.families import diffusion

VARIANTS = ("ddpmpp", "ncsnpp", "ddpmpp_cond", "ncsnpp_cond")
BATCH = 512
MIMG = 1_000_000 / BATCH  # steps per million images


def get_config(arg=None) -> C.Experiment:
  arg = arg or "ddpmpp"
  if arg not in VARIANTS:
    raise ValueError(f"experiments/edm_cifar10.py takes one of {', '.join(VARIANTS)}, got {arg!r}.")
  arch, cond = arg.split("_")[0], arg.endswith("_cond")
  model = diffusion.Config(
    backbone=arch,
    ch=128,
    ch_mult=(2, 2, 2),
    num_res_blocks=4,
    attn_resolutions=(16,),
    dropout=0.13,
    augment_p=0.12,
    formulation="edm",
    preconditioning="edm",
    sigma_data=0.5,
    p_mean=-1.2,
    p_std=1.2,
    class_conditional=cond,
    label_dropout=0.0,
    sampler="heun",
    sample_steps=18,
    sigma_min=0.002,
    sigma_max=80.0,
    rho=7.0,
  )
  return C.Experiment(
    name=f"edm_cifar10_{arg}",
    family="diffusion",
    model=model,
    data=C.Data(name="cifar10"),
    optim=C.Optim(
      name="adam",
      learning_rate=1e-3,
      b1=0.9,
      b2=0.999,
      eps=1e-8,
      schedule="constant",
      warmup_steps=round(10 * MIMG),
      ema_decay=0.5 ** (BATCH / 500_000),
    ),
    train=C.Train(
      steps=round(200 * MIMG),
      batch_size=BATCH,
      log_every=100,
      eval_every=10_000,
      checkpoint_every=10_000,
      compute_dtype="float32",
    ),
    eval=C.Eval(num_batches=4, batch_size=BATCH, num_samples=64),
  )
