r"""Input pipeline throughput: augmented, normalised clips per second for each source and
number of reading workers (threads, and with --processes worker processes too), against
the synthetic config's training step.

  python experiments/data_benchmark.py [--examples=256] [--batches=8] \
      [--workers=0,1,2,4] [--processes] [--large] [--train_step] [--augment]

Every source goes through the same dataset class (vivit_jax.data.pipeline.ClipDataset);
only the reader differs. Writes the synthetic set of configs/synthetic/vivit_model1.py
(videos of 24 frames at 36x36, crops 16x32x32) to a temporary folder as mp4 files and
TFRecord shards, then times `train_batches` (batch 32) of the 'synthetic' (arrays in
memory), 'video_files' and 'tfrecord' sources. --augment also times the synthetic
source with scale jitter, colour jitter and RandAugment on. --large also times 240x320
videos cut to 16x224x224 crops (short side to 256, scale jitter), closer to Kinetics
decoding costs. --train_step times the training step of the synthetic config for
comparison (the pipeline keeps up when its clips/s exceed the step's).
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np

from vivit_jax import config as config_lib
from vivit_jax import data
from vivit_jax.data import export, synthetic

CONFIG = os.path.join(os.path.dirname(__file__), '..', 'configs', 'synthetic',
                      'vivit_model1.py')


def clips_per_sec(config, batches: int, batch_size: int) -> float:
  """Clips/s of `batches` training batches after one warm-up batch."""
  ds = data.get_dataset(config, process_index=0, process_count=1)
  try:
    it = ds.train_batches(0, batch_size)
    next(it)   # also starts the workers.
    start = time.perf_counter()
    for _ in range(batches):
      next(it)
    return batches * batch_size / (time.perf_counter() - start)
  finally:
    if hasattr(ds, 'close'):
      ds.close()


def train_step_clips_per_sec(config, steps: int = 5) -> float:
  """Clips/s of the jitted training step of `config` (data excluded)."""
  import jax
  from vivit_jax.train import setup
  s = setup.setup(config, tempfile.mkdtemp())
  state = s.par.put_state(jax.jit(s.init_state)(s.root_rng))
  batch = s.par.put_batch(next(s.dataset.train_batches(0, config.trainer.batch_size)))
  rng = jax.random.PRNGKey(0)
  for _ in range(2):
    state, metrics = s.par.train_step(state, batch, rng)
  jax.block_until_ready(metrics)
  start = time.perf_counter()
  for _ in range(steps):
    state, metrics = s.par.train_step(state, batch, rng)
  jax.block_until_ready(metrics)
  return steps * config.trainer.batch_size / (time.perf_counter() - start)


def write_large(root: str, n: int) -> None:
  """n synthetic videos of 48 frames at 240x320 as mp4 files and shards."""
  videos, labels = synthetic.generate(n, num_frames=48, size=64, seed=0)
  from vivit_jax.data import augment
  big = np.stack([augment.resize_box(v, (0, 0, 64, 64), 240, 320) for v in videos])
  export.write_mp4s(os.path.join(root, 'videos', 'train'), big, labels,
                    synthetic.LABEL_NAMES, crf=23, pix_fmt='yuv420p', gop=16)
  export.write_shards(os.path.join(root, 'shards'), 'train', big, labels,
                      synthetic.LABEL_NAMES, quality=90)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--examples', type=int, default=256)
  parser.add_argument('--batches', type=int, default=8)
  parser.add_argument('--batch_size', type=int, default=32)
  parser.add_argument('--workers', default='0,1,2,4')
  parser.add_argument('--processes', action='store_true',
                      help="also time dataset.worker_type='process' (workers > 0)")
  parser.add_argument('--large', action='store_true')
  parser.add_argument('--train_step', action='store_true')
  parser.add_argument('--augment', action='store_true',
                      help='also time the synthetic source with the paper augmentations')
  args = parser.parse_args()
  workers = [int(w) for w in args.workers.split(',')]
  print(f'CPU cores visible: {os.cpu_count()} (shared with other jobs: numbers are noisy)')

  base = config_lib.load_config(CONFIG)
  base.dataset.num_train_examples = args.examples
  base.dataset.num_eval_examples = 8
  root = tempfile.mkdtemp(prefix='data_benchmark_')
  start = time.perf_counter()
  export.export(base, root, splits=('train',))
  print(f'wrote {args.examples} synthetic videos (24x36x36) as mp4 + shards in '
        f'{time.perf_counter() - start:.1f} s')

  def run(label, config_fn):
    kinds = ('thread', 'process') if args.processes else ('thread',)
    for kind in kinds:
      for w in workers:
        if kind == 'process' and w == 0:
          continue
        c = config_fn()
        c.dataset.num_workers, c.dataset.worker_type = w, kind
        rate = clips_per_sec(c, args.batches, args.batch_size)
        kind_label = 'threads' if kind == 'thread' else 'processes'
        print(f'{label:34s} {kind_label}={w}: {rate:8.1f} clips/s')

  def synthetic_config(name, data_dir=''):
    def make():
      c = config_lib.load_config(CONFIG)
      c.dataset.num_train_examples, c.dataset.num_eval_examples = args.examples, 8
      c.dataset.name, c.dataset.data_dir = name, data_dir
      return c
    return make

  print('source (16x32x32 clips)            workers  clips/s (batch '
        f'{args.batch_size})')
  run('synthetic (in memory)', synthetic_config('synthetic'))
  if args.augment:
    def augmented():
      c = synthetic_config('synthetic')()
      d = c.dataset
      d.scale_jitter, d.color_jitter, d.randaugment_layers = (0.9, 1.33), 0.4, 2
      return c
    run('synthetic + jitter/colour/RandAug', augmented)
  run('video_files (mp4, H.264 4:4:4)', synthetic_config('video_files',
                                                         os.path.join(root, 'videos')))
  run('tfrecord (JPEG q95)', synthetic_config('tfrecord', os.path.join(root, 'shards')))

  if args.large:
    large = tempfile.mkdtemp(prefix='data_benchmark_large_')
    write_large(large, 32)

    def large_config(name, sub):
      def make():
        c = synthetic_config(name, os.path.join(large, sub))()
        d = c.dataset
        d.num_frames, d.stride, d.crop_size, d.min_resize = 16, 2, 224, 256
        d.scale_jitter, d.random_flip = (0.9, 1.33), True
        return c
      return make
    print('source (16x224x224 clips from 240x320 videos, stride 2)')
    run('video_files (mp4, H.264 4:2:0)', large_config('video_files', 'videos'))
    run('tfrecord (JPEG q90)', large_config('tfrecord', 'shards'))

  if args.train_step:
    c = config_lib.load_config(CONFIG)
    c.dataset.num_train_examples, c.dataset.num_eval_examples = args.examples, 8
    rate = train_step_clips_per_sec(c)
    print(f'synthetic vivit_model1 train step (batch {c.trainer.batch_size}): '
          f'{rate:8.1f} clips/s')


if __name__ == '__main__':
  main()
