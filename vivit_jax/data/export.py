r"""Writes the synthetic dataset of a config out as real files: mp4 videos in class
folders (the 'video_files' source) and TFRecord shards (the 'tfrecord' source), so the
same task can be trained from every source.

  python -m vivit_jax.data.export --config=configs/synthetic/vivit_model1.py \
      --out_dir=/tmp/synthetic_files [--formats=mp4,tfrecord] [--workers=4] \
      [--config.dataset.num_train_examples=4096 ...]

Layout: OUT/videos/<split>/<label name>/<index>.mp4 and OUT/shards/<split>.tfrecord-*,
each with a label_names.json (the synthetic label order, not the folders' sorted one).
The videos are the ones `synthetic.build_dataset` generates for the config (same seed,
length, size and example counts). Train with
  --config.dataset.name=video_files --config.dataset.data_dir=OUT/videos
  --config.dataset.name=tfrecord --config.dataset.data_dir=OUT/shards
"""
from __future__ import annotations

import concurrent.futures
import os
from typing import Sequence

import numpy as np
from absl import flags
from ml_collections import config_flags

from vivit_jax import cli
from vivit_jax.data import synthetic, tfrecord, video_files

def synthetic_split(config, split: str):
  """(uint8[N, L, S, S, 3] videos, int32[N] labels) of a split of the synthetic
  dataset of `config`, as synthetic.build_dataset generates it (one process)."""
  d = config.dataset
  frames, size, span = synthetic.video_shape(d)
  return synthetic.generate(synthetic.split_sizes(d)[split], num_frames=frames, size=size,
                            seed=synthetic.split_seed(int(d.get('seed', 0)), split),
                            clip_frames=span)


def write_mp4s(out_dir: str, videos: np.ndarray, labels: np.ndarray,
               label_names: Sequence[str], workers: int = 4, **write_kwargs) -> None:
  """OUT/<label name>/<i>.mp4 for every video (threads: encoding releases the GIL)."""
  for name in label_names:
    os.makedirs(os.path.join(out_dir, name), exist_ok=True)

  def write(i):
    path = os.path.join(out_dir, label_names[labels[i]], f'{i:05d}.mp4')
    video_files.write_video(path, videos[i], **write_kwargs)

  with concurrent.futures.ThreadPoolExecutor(max(workers, 1)) as pool:
    list(pool.map(write, range(len(videos))))


def write_shards(out_dir: str, split: str, videos: np.ndarray, labels: np.ndarray,
                 label_names: Sequence[str], num_shards: int = 4,
                 quality: int = 95) -> list[str]:
  """OUT/<split>.tfrecord-<k>-of-<n>: SequenceExamples of the videos, in order."""
  os.makedirs(out_dir, exist_ok=True)
  paths = []
  for k, part in enumerate(np.array_split(np.arange(len(videos)), num_shards)):
    path = os.path.join(out_dir, f'{split}.tfrecord-{k:05d}-of-{num_shards:05d}')
    tfrecord.write_records(path, [
        tfrecord.encode_example(videos[i], int(labels[i]), label_names[labels[i]],
                                quality=quality) for i in part])
    paths.append(path)
  tfrecord.write_label_names(out_dir, label_names)
  return paths


def export(config, out_dir: str, formats: Sequence[str] = ('mp4', 'tfrecord'),
           workers: int = 4, splits: Sequence[str] = ('train', 'validation', 'test')):
  """Writes the synthetic splits of `config` in `formats` under out_dir; returns
  {split: number of videos}."""
  counts = {}
  for split in splits:
    videos, labels = synthetic_split(config, split)
    counts[split] = len(videos)
    if 'mp4' in formats:
      write_mp4s(os.path.join(out_dir, 'videos', split), videos, labels,
                 synthetic.LABEL_NAMES, workers)
      tfrecord.write_label_names(os.path.join(out_dir, 'videos'), synthetic.LABEL_NAMES)
    if 'tfrecord' in formats:
      write_shards(os.path.join(out_dir, 'shards'), split, videos, labels,
                   synthetic.LABEL_NAMES)
  return counts


def _cli():
  """Defines the flags (only when run as a program) and runs `export`."""
  config = config_flags.DEFINE_config_file(
      'config', None, "Config file, as for vivit_jax.main: --config=FILE[:arg] and "
      "--config.dataset.<field>=... overrides (e.g. num_train_examples).",
      lock_config=True)
  out_dir = flags.DEFINE_string('out_dir', None, 'Output folder.')
  formats = flags.DEFINE_list('formats', ['mp4', 'tfrecord'], 'mp4 and/or tfrecord.')
  workers = flags.DEFINE_integer('workers', 4, 'Encoding threads.')
  flags.mark_flags_as_required(['config', 'out_dir'])

  def main(argv):
    del argv
    counts = export(config.value, out_dir.value, formats.value, workers.value)
    print(f'Wrote {counts} synthetic videos ({",".join(formats.value)}) to '
          f'{out_dir.value}.')

  cli.run(main)


if __name__ == '__main__':
  _cli()
