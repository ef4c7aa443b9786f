"""A small KL autoencoder (latent diffusion's first stage) for Fashion-MNIST 28x28 grey images.

Command:   python -m genjax.train --config experiments/autoencoder_kl_fashion_mnist.py --workdir runs/ae_fmnist
           python -m genjax.evaluate --workdir runs/ae_fmnist    (test MSE, L1, PSNR, KL per image)
           (`:cpu` selects the smaller model and short run that fits a 2-core CPU)
Hardware:  one accelerator for the full config; `:cpu` ran on a 2-core CPU shared with other jobs.
Runtime:   full: not run (20000 steps of batch 64, 5.1M parameters). `:cpu` (0.73M parameters): 1500
           steps of batch 32 in 16.2 min, ~1.55 steps/s niced on the shared CPU (2026-12-05); the
           evaluation of the 10000 test images 82 s.
Result:    no published number for this model. `:cpu` at step 1500 on the 10000 test images
           (posterior mean, clipped to [-1, 1]): MSE 0.0372, L1 0.0981, PSNR 21.19 dB, KL 1127 nats
           per image; still improving when it stopped (test PSNR 18.8 dB at step 500, 19.8 at 1000).
           Its latents' std over a training batch is 2.42: latent diffusion scales them by 1/2.42.

Model (genjax.families.autoencoder): the AutoencoderKL of Stable Diffusion's VAE at a smaller
size, block_out_channels (64, 128, 128) with 2 ResnetBlocks per level (`:cpu`: (32, 32, 64), 1 per
level), 3 levels so f = 4 and 28x28x1 images become 7x7x4 latents. LDM's first-stage objective
without its LPIPS and patch-GAN terms: per-pixel L1 summed over the image plus 1e-6 * KL, z drawn
from the posterior (configs/autoencoder/autoencoder_kl_32x32x4.yaml's kl_weight; see the family's
docstring). Adam with LDM's betas (0.5, 0.9) at LDM's learning-rate rule, base_learning_rate 4.5e-6
times the batch (4.5e-6 * 64 = 2.88e-4; `:cpu` 4.5e-6 * 32 = 1.44e-4), constant; no EMA.
"""

from genjax.config import Data, Eval, Experiment, Optim, Train
from genjax.families import autoencoder

BASE_LEARNING_RATE = 4.5e-6  # LDM's base_learning_rate, multiplied by the batch (one device, no accumulation)


def get_config(arg=None) -> Experiment:
  if arg not in (None, "cpu"):
    raise ValueError(f"experiments/autoencoder_kl_fashion_mnist.py takes no argument or :cpu, got {arg!r}.")
  cpu = arg == "cpu"
  batch = 32 if cpu else 64
  return Experiment(
    name="autoencoder_kl_fashion_mnist" + (":cpu" if cpu else ""),
    family="autoencoder",
    model=autoencoder.Config(
      block_out_channels=(32, 32, 64) if cpu else (64, 128, 128),
      layers_per_block=1 if cpu else 2,
      latent_channels=4,
      norm_num_groups=32,
      reconstruction="l1",
      kl_weight=1e-6,
      sample_posterior=True,
    ),
    data=Data(name="fashion_mnist"),
    optim=Optim(name="adam", learning_rate=BASE_LEARNING_RATE * batch, b1=0.5, b2=0.9),
    train=Train(
      steps=1500 if cpu else 20000,
      batch_size=batch,
      log_every=50 if cpu else 200,
      eval_every=500 if cpu else 2000,
      checkpoint_every=500 if cpu else 2000,
    ),
    eval=Eval(num_batches=4, batch_size=256, num_samples=64),
  )
