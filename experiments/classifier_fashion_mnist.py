"""The Fashion-MNIST classifier that evaluates generative models of clothes (domain FD).

Results:   experiments/RESULTS.md, the "classifier ... Fashion-MNIST test" and Fashion-MNIST FD rows.
Command:   python -m genjax.train --config experiments/classifier_fashion_mnist.py \
               --workdir $GENJAX_HOME/classifiers/fashion_mnist
           ($GENJAX_HOME defaults to ~/.genjax; genjax.metrics.features finds the checkpoint
           there by dataset name, or at $GENJAX_CLASSIFIER_FASHION_MNIST)
Check:     python -m genjax.evaluate --workdir $GENJAX_HOME/classifiers/fashion_mnist
Hardware:  2-core CPU shared with other jobs (load average ~20), no accelerator.
Runtime:   28.5 minutes there (0.6-0.7 steps/s).
Target:    test accuracy >= 91% (small CNNs on the Fashion-MNIST benchmark of Xiao et al., 2017,
           reach 91-92%).
Reached:   91.83% on the 10,000 test images (2026-11-24). Frechet distance in its features:
           train vs test 0.068 (the floor), test vs 10,000 uniform-noise images 88.2.

The same network and schedule as experiments/classifier_mnist.py.
"""

import importlib.util
import os

_spec = importlib.util.spec_from_file_location(
  "classifier_mnist_config", os.path.join(os.path.dirname(os.path.abspath(__file__)), "classifier_mnist.py")
)
_mnist = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_mnist)


def get_config(arg=None):
  del arg
  return _mnist.get_config("fashion_mnist")
