"""Sample-quality metrics and the feature networks they are computed in.

frechet          Frechet distance (FID / domain FD) from streamed float64 feature statistics
kid              Kernel Inception Distance (unbiased cubic-kernel MMD^2 over subsets)
inception_score  Inception Score from any classifier's class probabilities
precision_recall improved precision and recall (k-NN manifolds, k=3)
stacked_mnist    Stacked-MNIST mode counts and KL to uniform (PacGAN protocol)
inception        FID's Inception-v3 in Flax and a torch-free reader of its weights
features         feature networks by name ("inception", "classifier_<dataset>")
reference_stats  dataset statistics computed once and cached (.npz)

`python -m genjax.evaluate` puts them together on a trained run.
"""
