"""The one training loop and what it needs: train state, optimizers, parallelism, checkpoints.

`python -m genjax.train` (this package's __main__) is the training command. Families import
`genjax.train.state`, `genjax.train.optim` and `genjax.train.parallel` (pure helpers); only the
command-line entry points import `genjax.train.loop`.
"""
