"""Params, GFLOPs per view and CPU forward time of every paper-sized config.

  python -m experiments.model_table [--configs='configs/kinetics400/*.py'] [--time_runs=2]

By default every paper config (each configs/<dataset>/ but configs/synthetic/); rows
are named by file (configs/kinetics400/) or '<dataset>/<file>' (the other datasets).

GFLOPs are multiply-adds of one inference forward pass (XLA cost analysis of the
lowered computation / 2, no execution); see vivit_jax/models/cost.py for what that
includes. Masked-pretraining configs (configs/pretrain/, model 'videomae') count the
encoder on the visible tokens only (at mask ratio 0.9 about a tenth of the same encoder on
all tokens: the fine-tuning config's row). The forward time is the median wall time of `--time_runs` jitted forward
passes of one clip (batch 1) after a warm-up run, on this machine's CPU, float32;
`--time_runs=0` skips it. Prints a markdown table; `--json=PATH` also writes the rows.
"""
import glob
import json
import pathlib
import statistics
import time

from absl import app, flags
import jax
import numpy as np

from vivit_jax import config as vc
from vivit_jax import models
from vivit_jax.models import cost, videomae

FLAGS = flags.FLAGS
flags.DEFINE_string('configs', None, 'Glob of config files (default: every paper config).')
flags.DEFINE_integer('time_runs', 2, 'Timed forward passes per model (0 = no timing).')
flags.DEFINE_string('json', None, 'Optional path to write the rows as JSON.')


def forward_seconds(model, params_shape, input_shape, runs):
  """Median seconds of `runs` jitted forward passes (after one warm-up/compile)."""
  params = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), params_shape)
  video = np.random.default_rng(0).standard_normal(input_shape).astype(np.float32)
  forward = jax.jit(lambda p, x: model.apply({'params': p}, x, train=False))
  forward(params, video).block_until_ready()
  times = []
  for _ in range(runs):
    start = time.perf_counter()
    forward(params, video).block_until_ready()
    times.append(time.perf_counter() - start)
  return statistics.median(times)


REPO = pathlib.Path(__file__).resolve().parents[1]


def paper_configs() -> list[str]:
  """Every config file under configs/ but the CPU-sized configs/synthetic/."""
  return sorted(str(p) for p in (REPO / 'configs').glob('*/*.py')
                if p.parent.name != 'synthetic')


def config_name(path) -> str:
  """'<file>' for configs/kinetics400/<file>.py, else '<dataset>/<file>'."""
  path = pathlib.Path(path)
  return path.stem if path.parent.name == 'kinetics400' else f'{path.parent.name}/{path.stem}'


def row(path, time_runs):
  config = vc.load_config(path)
  vc.validate_config(config)
  d = config.dataset
  model = models.create_model(config.model, d.num_classes)
  if config.model.name == 'videomae':   # masked pretraining: the encoder, visible tokens.
    model = videomae.build(config.model, encoder_only=True)
  shape = (1, d.num_frames, d.crop_size, d.crop_size, 3)
  params = cost.abstract_params(model, shape)
  name = config_name(path)
  paper = cost.PAPER_NUMBERS.get(name, (None, None))
  return {
      'config': name,
      'input': f'{d.num_frames}x{d.crop_size}x{d.crop_size}',
      'params_m': cost.count_params(params) / 1e6,
      'gflops': cost.forward_gflops(model, shape, params),
      'paper_params_m': paper[1],
      'paper_gflops': paper[0],
      'cpu_forward_s': forward_seconds(model, params, shape, time_runs) if time_runs else None,
  }


def fmt(value, spec):
  return '-' if value is None else format(value, spec)


def main(argv):
  del argv
  paths = sorted(glob.glob(FLAGS.configs)) if FLAGS.configs else paper_configs()
  if not paths:
    raise app.UsageError(f'--configs={FLAGS.configs!r} matches no config file')
  print(f'jax {jax.__version__}, {jax.devices()[0].device_kind}, '
        f'{jax.device_count()} device(s)\n')
  print('| config | input | params (M) | paper | GFLOPs | paper | diff | CPU fwd (s) |')
  print('|---|---|---|---|---|---|---|---|')
  rows = []
  for path in paths:
    r = row(path, FLAGS.time_runs)
    rows.append(r)
    diff = (f"{100 * (r['gflops'] / r['paper_gflops'] - 1):+.1f}%"
            if r['paper_gflops'] else '-')
    print(f"| {r['config']} | {r['input']} | {r['params_m']:.2f} | "
          f"{fmt(r['paper_params_m'], '.1f')} | {r['gflops']:.1f} | "
          f"{fmt(r['paper_gflops'], '.1f')} | {diff} | {fmt(r['cpu_forward_s'], '.2f')} |",
          flush=True)
  if FLAGS.json:
    pathlib.Path(FLAGS.json).write_text(json.dumps(rows, indent=2))


if __name__ == '__main__':
  app.run(main)
