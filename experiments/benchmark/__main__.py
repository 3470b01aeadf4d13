r"""Throughput, latency, memory and MFU of the model zoo, next to the PyTorch implementations.

  python -m experiments.benchmark --config=configs/kinetics400/vivit_b16x2_spatio_temporal.py
  python -m experiments.benchmark --all --num_layers=2 --runs=3     # every paper config
  python -m experiments.benchmark --config=... --dtype=bfloat16 --remat \
      --train_batch_size=0 --json=/tmp/bench.json                   # GPU: largest batch

Run from the repository root. For each config (`--config`, repeatable, `path[:arg]`;
`--all` = the `--configs` glob):
  inference  jitted forward (train=False) at `--batch_size`: median seconds per call over
             `--runs` timed calls after `--warmup` calls, spread (min-max), clips/s and
             latency per clip;
  train      one optimiser update of the real training path (`train/steps.train_step`
             under `train/parallel.py`'s jit wrapper with buffer donation, the config's
             optimizer) at `--train_batch_size` (0 = the largest power of two whose
             compiled program fits the device memory; on CPU `--batch_size`): step time,
             clips/s, memory (compiled `memory_analysis()` bytes and, where the backend
             has them, `memory_stats()['peak_bytes_in_use']`).
FLOPs are model FLOPs: XLA `cost_analysis()['flops']` of the lowered program with
attention traced as its explicit formulation and no remat (`ops.switches.flop_counting()`;
loops and cuDNN calls would otherwise hide FLOPs, recomputation would add some).
Achieved FLOP/s = FLOPs / median time; MFU = that / the device's peak
(`PEAK_TFLOPS` in experiments/benchmark/programs.py by device kind and dtype, or
`--peak_tflops`).

With torch installed (`--pytorch`, alias `--hf`, on by default), configs with a PyTorch
counterpart run the same shapes through it, random weights built locally, interleaved
run by run with ours so a shared machine slows both alike: Hugging Face transformers'
`VivitForVideoClassification` (ViViT Model 1 with tubelets, sdpa attention) and
`TimesformerForVideoClassification` (eager: transformers has no sdpa path for it), and
torchvision's `MViT` (MViT-B, MViTv2-S; our per-block schedule, any clip length) and
`SwinTransformer3d` (Video Swin-T/S/B), whose attention is eager. A counterpart with
another parameter count than ours is not the same model and is skipped (said on stderr).
`ratio` = our clips/s / theirs (> 1: ours is faster), `cpu_ratio` the same by CPU
seconds per call (this process, all threads), which a shared machine's load hardly
changes. The training step there is forward, cross-entropy, backward, global-norm
clipping and SGD momentum.

`--profile_dir=DIR` also traces one call of ours per config and mode (`jax.profiler`,
perfetto JSON under DIR) and prints its device time per op and kind of op
(experiments/trace_summary.py: attention, matmul, convolution, fusion, copy, other).

`--attention_kernels` instead times one attention layer over the config's full token
sequence with `jax.nn.dot_product_attention`, the explicit path, the chunked kernel, the
C++ CPU kernel and torch sdpa.

Reduced shapes (`--num_frames`, `--crop_size`, `--num_layers`) keep CPU runs short; the
attention shapes only change with frames and crop. Output: the environment on one line,
a markdown table on stdout (a row per config and mode as it finishes) and `--json=PATH`
({'environment', 'rows'}, rewritten after every config).
"""
from __future__ import annotations

import glob
import os

# PyTorch's OpenMP threads spin after each parallel region and, interleaved call by call
# with ours, take the cores from our next call (experiments/README.md, OMP_WAIT_POLICY).
# Set before torch loads its OpenMP runtime.
os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')

# pylint: disable=g-import-not-at-top,wrong-import-position
from absl import app, flags
import jax

from experiments.benchmark import kernels, ours, report, run

FLAGS = flags.FLAGS
flags.DEFINE_multi_string('config', [], 'Config file(s), `path[:arg]`.')
flags.DEFINE_bool('all', False, 'Benchmark every config matching --configs.')
flags.DEFINE_string('configs', 'configs/kinetics400/*.py', 'Glob used by --all.')
flags.DEFINE_integer('batch_size', 1, 'Inference batch (clips per call).')
flags.DEFINE_integer('train_batch_size', None,
                     'Training batch; 0 = largest power of two that fits the device '
                     '(accelerators only); default: --batch_size.')
flags.DEFINE_integer('max_train_batch', 512, 'Upper bound of the 0 search.')
flags.DEFINE_integer('runs', 5, 'Timed calls per measurement (median and spread).')
flags.DEFINE_integer('warmup', 1, 'Untimed calls after compilation.')
flags.DEFINE_integer('num_frames', None, 'Override config.dataset.num_frames.')
flags.DEFINE_integer('crop_size', None, 'Override config.dataset.crop_size.')
flags.DEFINE_integer('num_layers', None, 'Override config.model.num_layers.')
flags.DEFINE_enum('dtype', None, ['float32', 'bfloat16'], 'Override config.model.dtype.')
flags.DEFINE_bool('remat', None, 'Override config.model.remat.')
flags.DEFINE_string('remat_policy', None, 'Override config.model.remat_policy.')
flags.DEFINE_string('attention_impl', None, 'Override config.model.attention_impl.')
flags.DEFINE_bool('inference', True, 'Measure inference.')
flags.DEFINE_bool('train', True, 'Measure a training step.')
flags.DEFINE_bool('pytorch', True, 'Also run the PyTorch counterparts where installed '
                  '(Hugging Face transformers, torchvision).')
flags.DEFINE_alias('hf', 'pytorch')   # its name before torchvision's models.
flags.DEFINE_float('peak_tflops', None, 'Device peak TFLOP/s for MFU (default: table).')
flags.DEFINE_string('json', None, 'Write the rows as JSON to this path.')
flags.DEFINE_string('profile_dir', None,
                    'Also trace one call of ours per config and mode into this folder '
                    'and print where its device time goes (trace_summary.py).')
flags.DEFINE_bool('attention_kernels', False,
                  'Only time one attention layer of each config\'s largest '
                  'sequence with every kernel (and torch sdpa).')


def load(spec: str):
  """`ours.load_config` of `spec` with the override flags."""
  return ours.load_config(
      spec, num_frames=FLAGS.num_frames, crop_size=FLAGS.crop_size,
      num_layers=FLAGS.num_layers,
      **{field: getattr(FLAGS, field) for field in ours.MODEL_OVERRIDES})


def main(argv):
  del argv
  specs = list(FLAGS.config)
  if FLAGS.all:
    specs += sorted(glob.glob(FLAGS.configs))
  if not specs:
    raise app.UsageError('give --config=PATH (repeatable) or --all')
  train_batch = FLAGS.train_batch_size or FLAGS.batch_size
  if FLAGS.train and not FLAGS.attention_kernels and train_batch % jax.device_count():
    raise app.UsageError(
        f'training batch {train_batch} (--train_batch_size, else --batch_size) must be a '
        f'multiple of the {jax.device_count()} devices the training step shards over.')
  options = run.Options(
      batch_size=FLAGS.batch_size, train_batch_size=FLAGS.train_batch_size,
      max_train_batch=FLAGS.max_train_batch, runs=FLAGS.runs, warmup=FLAGS.warmup,
      inference=FLAGS.inference, train=FLAGS.train, pytorch=FLAGS.pytorch,
      peak_tflops=FLAGS.peak_tflops, profile_dir=FLAGS.profile_dir)
  env = report.environment()
  print(report.environment_line(env))
  print(report.KERNELS_HEADER if FLAGS.attention_kernels else report.HEADER, flush=True)
  rows = []
  for spec in specs:
    config = load(spec)
    if FLAGS.attention_kernels:
      rows.extend(kernels.attention_kernels(config, FLAGS.batch_size, FLAGS.runs,
                                            FLAGS.warmup))
    else:
      rows.extend(run.benchmark(config, ours.config_name(spec), options))
    if FLAGS.json:   # after every config: a run cut short keeps what it measured.
      report.write_json(FLAGS.json, env, rows)


if __name__ == '__main__':
  app.run(main)
