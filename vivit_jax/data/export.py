r"""Writes the synthetic dataset of a config out as real files: mp4 videos in class
folders (the 'video_files' source) and TFRecord shards (the 'tfrecord' source), so the
same task can be trained from every source.

  python -m vivit_jax.data.export --config=configs/synthetic/vivit_model1.py \
      --out_dir=/tmp/synthetic_files [--formats=mp4,tfrecord] [--workers=4] \
      [--config.dataset.num_train_examples=4096 ...]

Layout: OUT/videos/<split>/<label name>/<index>.mp4 and OUT/shards/<split>.tfrecord-*,
each with a label_names.json (the synthetic label order, not the folders' sorted one).
The label kinds of `dataset.synthetic_labels` other than 'class' write
OUT/videos/<split>/<index>.mp4 with an index OUT/videos/<split>.csv instead
(`path,verb,noun` or `path,labels` with ';'-separated names; label_names.json holds
{group: names} for groups), and shards with their label keys (tfrecord.py); train
from them with the same config plus the source's name and data_dir.
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
from vivit_jax.data.labels import LABEL_LIST_SEPARATOR, LabelSpec

def synthetic_split(config, split: str):
  """(uint8[N, L, S, S, 3] videos, labels) of a split of the synthetic dataset of
  `config`, as synthetic.build_dataset generates it (one process); labels as
  `synthetic.generate` returns them for config.dataset.synthetic_labels."""
  d = config.dataset
  frames, size, span = synthetic.video_shape(d)
  return synthetic.generate(synthetic.split_sizes(d)[split], num_frames=frames, size=size,
                            seed=synthetic.split_seed(int(d.get('seed', 0)), split),
                            clip_frames=span, labels=synthetic.label_kind(d))


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


def write_mp4_index(out_dir: str, split: str, videos: np.ndarray, labels: np.ndarray,
                    spec: LabelSpec, workers: int = 4, **write_kwargs) -> str:
  """OUT/<split>/<i>.mp4 for every video and the index OUT/<split>.csv: a header
  `path,<group>,...` (or `path,labels`) and each video's label names (';'-separated
  for multi-label); returns the index path."""
  os.makedirs(os.path.join(out_dir, split), exist_ok=True)
  rows = ['path,' + (','.join(spec.group_names) if spec.grouped else 'labels')]
  for i in range(len(videos)):
    _, names = tfrecord.example_label(spec, synthetic.parse_row(spec, labels[i]))
    names = ([names[g] for g in spec.group_names] if spec.grouped else
             [LABEL_LIST_SEPARATOR.join(names)])
    rows.append(','.join([f'{split}/{i:05d}.mp4'] + names))

  def write(i):
    video_files.write_video(os.path.join(out_dir, split, f'{i:05d}.mp4'), videos[i],
                            **write_kwargs)

  with concurrent.futures.ThreadPoolExecutor(max(workers, 1)) as pool:
    list(pool.map(write, range(len(videos))))
  path = os.path.join(out_dir, f'{split}.csv')
  with open(path, 'w') as f:
    f.write('\n'.join(rows) + '\n')
  return path


def _names_file_value(spec: LabelSpec):
  """What label_names.json holds for `spec`: the K names, or {group: names}."""
  names = dict(spec.names)
  return names if spec.grouped else names[spec.group_names[0]]


def write_shards(out_dir: str, split: str, videos: np.ndarray, labels: np.ndarray,
                 label_names, num_shards: int = 4, quality: int = 95) -> list[str]:
  """OUT/<split>.tfrecord-<k>-of-<n>: SequenceExamples of the videos, in order.
  `label_names`: the K class names of int labels, or the LabelSpec (with names) of
  `synthetic.generate`'s labels of another kind."""
  spec = (label_names if isinstance(label_names, LabelSpec) else
          tfrecord.plain_spec(label_names))
  os.makedirs(out_dir, exist_ok=True)
  paths = []
  for k, part in enumerate(np.array_split(np.arange(len(videos)), num_shards)):
    path = os.path.join(out_dir, f'{split}.tfrecord-{k:05d}-of-{num_shards:05d}')
    tfrecord.write_records(path, [
        tfrecord.encode_example(videos[i], *tfrecord.example_label(
            spec, synthetic.parse_row(spec, labels[i])), quality=quality) for i in part])
    paths.append(path)
  tfrecord.write_label_names(out_dir, _names_file_value(spec))
  return paths


def export(config, out_dir: str, formats: Sequence[str] = ('mp4', 'tfrecord'),
           workers: int = 4, splits: Sequence[str] = ('train', 'validation', 'test')):
  """Writes the synthetic splits of `config` in `formats` under out_dir; returns
  {split: number of videos}."""
  counts = {}
  kind = synthetic.label_kind(config.dataset)
  spec = synthetic.label_spec(kind)
  for split in splits:
    videos, labels = synthetic_split(config, split)
    counts[split] = len(videos)
    if 'mp4' in formats:
      if kind == 'class':
        write_mp4s(os.path.join(out_dir, 'videos', split), videos, labels,
                   synthetic.LABEL_NAMES, workers)
      else:
        write_mp4_index(os.path.join(out_dir, 'videos'), split, videos, labels, spec,
                        workers)
      tfrecord.write_label_names(os.path.join(out_dir, 'videos'), _names_file_value(spec))
    if 'tfrecord' in formats:
      write_shards(os.path.join(out_dir, 'shards'), split, videos, labels,
                   synthetic.LABEL_NAMES if kind == 'class' else spec)
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
