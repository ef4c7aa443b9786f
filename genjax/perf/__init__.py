"""The measuring tools behind `python -m genjax.bench`, `python -m genjax.profile` and
`python -m genjax.reproduce`, one job per module:

  registry.py     the benchmarked configs (BENCHMARKS), test-size shrinkers, experiment_for,
                  synthetic batches
  measure.py      timing, matmul rate, XLA's FLOP count, peak memory; the train step, sampling,
                  checkpoint, input pipeline and loop figures
  hlo_profile.py  where a compiled step's time goes: a profiler trace matched to its HLO, by phase
  benchmark.py    every figure of one config (run_one) and a run over several (the bench command)
  tables.py       the benchmark's printed tables
  memory.py       per-device memory of the sharded step (--memory)
  decode.py       decoding a folder of JPEGs beside the 64x64 train steps (--decode)
  peers.py        the CPU GPT beside nanoGPT (--nanogpt)
  gpu_suite.py    the GPU suite: time-boxed items in child processes, their records and rows

They sit above the trainer and below the entry points: nothing here imports genjax.train,
genjax.sample, genjax.evaluate, genjax.bench, genjax.profile or genjax.reproduce, and nothing
below (core, nn, data, families, trainer, metrics) imports them (tests/test_layers.py).
"""
