"""DDPM on CIFAR-10, the exact setup of Ho et al. 2020 ("Denoising Diffusion Probabilistic Models").

Results:   experiments/RESULTS.md, the "DDPM CIFAR-10 U-Net" row.
Command:   python -m genjax.train --config experiments/ddpm_cifar10.py --workdir runs/ddpm_cifar10
           (needs the CIFAR-10 archive TFDS downloads, cifar-10-binary.tar.gz, in the folder
           --config.data.manual_dir or $GENJAX_MANUAL_DIR names; it is not in this repository)
           then  python -m genjax.evaluate --workdir runs/ddpm_cifar10        (bits/dim, full bound)
                 python -m genjax.sample --workdir runs/ddpm_cifar10 --num 64 --out ddpm_cifar10.png
Hardware:  the paper trained on a TPU v3-8 for 10.6 hours per 100k steps (800k steps: ~3.5 days);
           expect about the same on 8 current accelerators. Not run here (no CIFAR-10 offline);
           tests/families/test_diffusion_cifar10.py checks that this model has the paper's
           35.7M parameters and that one training step runs on a mock batch.
Published: FID 3.17, Inception score 9.46, NLL <= 3.75 bits/dim on the test set (3.72 train),
           after 800k steps with L_simple (Ho et al. 2020, Table 1; samples with the 1000-step
           ancestral sampler and sigma_t^2 = beta_t).

The paper's setup (section 4 and appendix B): batch 128; Adam, learning rate 2e-4 with 5000 steps
of linear warmup, no decay; gradient clipping at norm 1; EMA of the weights with decay 0.9999;
random horizontal flips; T = 1000 linear betas from 1e-4 to 0.02; the U-Net with ch 128,
multipliers (1, 2, 2, 2), two residual blocks per resolution, self-attention at 16x16 and
dropout 0.1; eps prediction with L_simple; data scaled to [-1, 1].
"""

from genjax import config as C
from genjax.families import diffusion


def get_config(arg=None) -> C.Experiment:
  del arg
  return C.Experiment(
    name="ddpm_cifar10",
    family="diffusion",
    model=diffusion.Config(
      ch=128,
      ch_mult=(1, 2, 2, 2),
      num_res_blocks=2,
      attn_resolutions=(16,),
      dropout=0.1,
      schedule="linear",
      timesteps=1000,
      beta_start=1e-4,
      beta_end=0.02,
      prediction="eps",
      loss="simple",
      variance="fixedlarge",
      sampler="ddpm",
    ),
    data=C.Data(name="cifar10", flip=True),
    optim=C.Optim(
      name="adam", learning_rate=2e-4, schedule="constant", warmup_steps=5000, grad_clip_norm=1.0, ema_decay=0.9999
    ),
    train=C.Train(
      steps=800_000, batch_size=128, log_every=100, eval_every=10_000, checkpoint_every=10_000, compute_dtype="float32"
    ),
    eval=C.Eval(num_batches=4, batch_size=128, num_samples=64),
  )
