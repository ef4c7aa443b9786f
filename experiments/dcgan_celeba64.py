"""DCGAN (Radford et al. 2016) at 64x64 on your copy of CelebA, as the DCGAN reference code trains it.

Command:   python -m genjax.train --config experiments/dcgan_celeba64.py --workdir runs/dcgan_celeba64 \
               --config.data.path=/path/to/img_align_celeba
           (the folder of CelebA's 202,599 aligned 178x218 JPEGs, img_align_celeba.zip unpacked; any
           folder of face photos works the same way). Without data.path, or with a folder that does
           not exist or holds no PNG/JPEG, the run stops before compiling and says which.
           python -m genjax.evaluate --workdir runs/dcgan_celeba64 --metrics fd   (Inception FD)
Hardware:  one accelerator (25 epochs, 79,141 steps of batch 64). Not run for RESULTS.md: genjax
           has no copy of CelebA; only the networks' sizes and the data path are tested
           (tests/families/test_dcgan_celeba64.py).
Result:    the paper reports no number for CelebA (its face set was its own scrape); judge samples.

The paper (arXiv:1511.06434v2): Section 3, "Approach and model architecture", gives the
guidelines followed here (strided convolutions both ways, no pooling; BatchNorm in G and D except
G's output and D's input; ReLU in G with a tanh output; LeakyReLU in D); Section 4, "Details of
adversarial training", the recipe (pixels scaled to [-1, 1]; weights N(0, 0.02); LeakyReLU slope
0.2; Adam, learning rate 0.0002, beta1 0.5); Figure 1 the 64x64 generator (z of 100 -> 4x4x1024
-> 8x8x512 -> 16x16x256 -> 32x32x128 -> 64x64x3, 5x5 fractionally-strided convolutions).

The reference code, carpedm20/DCGAN-tensorflow (model.py, the `y_dim is None` branches of
`generator`, `discriminator` and `train`; main.py's flags):
  G: z ~ U[-1, 1]^100 -> dense 4*4*512, BN, ReLU -> 5x5 stride-2 deconvolutions to 8x8x256,
     16x16x128, 32x32x64 (each BN, ReLU) -> 64x64x3, tanh (gf_dim 64);
  D: 5x5 stride-2 convolutions 64 (LeakyReLU 0.2, no BN), 128, 256, 512 (BN, LeakyReLU) ->
     dense logit (df_dim 64);
  sigmoid cross-entropy (non-saturating G loss); Adam(2e-4, beta1 0.5); batch 64; 25 epochs; each
  step one D update, then two G updates ("different from paper"), all with the same z;
  images: the centered 108x108 square of each 178x218 photo (--input_height 108 --crop),
  resized to 64x64 (--output_height 64), scaled to [-1, 1].
Deviations: the reference's widths are half of Figure 1's (512 at 4x4, not 1024) and its batch 64
is half the paper's 128: genjax follows the code. The reference shuffles the files each epoch and
drops the last partial batch; genjax's order is its seeded per-epoch permutation over every image
(genjax.data.datasets), so 25 epochs are ceil(25 * 202,599 / 64) = 79,141 steps. It resized with
scipy.misc.imresize (bilinear); genjax resizes with Pillow's bicubic filter (genjax.data.files).
Layers followed by BatchNorm carry no bias (BN cancels it).
"""

from genjax import config as C
from genjax.families import gan

CELEBA_IMAGES = 202_599
EPOCHS = 25
BATCH = 64


def get_config(arg=None) -> C.Experiment:
  if arg is not None:
    raise C.ConfigError(
      f"experiments/dcgan_celeba64.py takes no argument (got {arg!r}); give the images with --config.data.path=DIR."
    )
  return C.Experiment(
    name="dcgan_celeba64",
    family="gan",
    model=gan.Config(
      arch="dcgan",
      latent_dim=100,
      latent_dist="uniform",
      g_widths=(512, 256, 128, 64),
      d_widths=(64, 128, 256, 512),
      kernel_size=5,
      weight_init="normal",
      g_norm="batch",
      d_norm="batch",
      bn_momentum=0.9,
      loss="non_saturating",
      n_critic=1,
      g_steps=2,
      reuse_noise=True,
    ),
    # Every image trains (the reference holds none out); the periodic evaluation reads the first 1024.
    data=C.Data(
      name="folder",
      path=None,
      image_size=64,
      crop_size=108,
      channels=3,
      holdout=0.0,
      train_split="all",
      eval_split="all[:1024]",
    ),
    optim=C.Optim(name="adam", learning_rate=2e-4, b1=0.5, b2=0.999),
    train=C.Train(
      steps=-(-EPOCHS * CELEBA_IMAGES // BATCH),
      batch_size=BATCH,
      log_every=100,
      eval_every=3166,
      checkpoint_every=3166,
    ),
    eval=C.Eval(num_batches=4, batch_size=BATCH, num_samples=64),
  )
