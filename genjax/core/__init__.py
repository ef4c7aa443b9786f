"""The toolkit every family builds on, below the families and the trainer:

  state.py       TrainState: one pytree that shards, averages and checkpoints; the EMA
  optim.py       optax optimizers and schedules from the `Optim` config
  step.py        the step builder: losses in, train and eval steps out
  parallel.py    jit over a device mesh or pmap; the global-batch helpers a step uses
  checkpoint.py  Orbax checkpoints (the only module that knows Orbax)
  flops.py       XLA's FLOP count of a jitted call

Nothing here imports a family or the trainer.
"""
