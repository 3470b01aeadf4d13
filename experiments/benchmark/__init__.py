"""Throughput, latency, memory and MFU of the model zoo, next to the PyTorch implementations.

`python -m experiments.benchmark --help` (`__main__.py`) has the command line. The parts:
  timing      `interleaved`: candidates timed round-robin, wall and CPU seconds per call;
  programs    what a lowered or compiled XLA program says: FLOPs, memory, attention
              kernel calls; the peak FLOP/s table behind MFU;
  ours        a config loaded with the shape overrides, and our jitted inference and
              training step on it (`Ours`), the largest training batch that fits;
  pytorch     the Hugging Face / torchvision counterpart of a config and its timed calls
              (`Theirs`);
  run         one config: every mode, ours and theirs interleaved -> table rows;
  kernels     one attention layer with every kernel (`--attention_kernels`);
  profiling   one traced call, summarised by experiments/trace_summary.py;
  report      the markdown table, the run's environment, the JSON file.
Importing the parts has no side effects; `__main__` sets the OpenMP wait policy.
"""
