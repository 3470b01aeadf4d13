r"""Converts a video-file index into TFRecord shards of SequenceExamples (tfrecord.py).

  python -m vivit_jax.data.prepare --index=videos/train.csv --out_dir=shards \
      --split=train --num_shards=16 --workers=8 [--min_resize=256] [--jpeg_quality=90]

--index is a CSV/TSV/TXT index or a folder of class folders (see video_files.py).
Shards are written as OUT/<split>.tfrecord-<k>-of-<n> in parallel worker processes;
rerunning skips the shards that are complete (resumable). Files that cannot be read
are skipped and listed with the reason in OUT/<split>.summary.json, with the counts;
OUT/label_names.json holds the label names (in label order).

Label groups and multi-label indexes (video_files.py: `path,verb,noun` columns, or
`path,labels` with '3;17' lists) are written with the keys of tfrecord.py (one per
group, several values for multi-label):
  python -m vivit_jax.data.prepare --index=ek/train.csv --out_dir=shards \
      --label_groups=verb:97,noun:300 [--label_names=names.json]
  python -m vivit_jax.data.prepare --index=charades/train.csv --out_dir=shards \
      --multi_label --num_classes=157
(--label_names: a .json {group: names} or the K names; without it, integer labels.)
"""
from __future__ import annotations

import concurrent.futures
import json
import multiprocessing
import os
import time
from typing import Optional, Sequence

import ml_collections
import numpy as np
from absl import flags, logging

from vivit_jax import cli
from vivit_jax.data import augment, tfrecord, video_files
from vivit_jax.data import labels as labels_lib
from vivit_jax.data.labels import LabelSpec
from vivit_jax.errors import ConfigError, DecodeError


def shard_path(out_dir: str, split: str, k: int, n: int) -> str:
  return os.path.join(out_dir, f'{split}.tfrecord-{k:05d}-of-{n:05d}')


def _resize_short_side(video: np.ndarray, min_resize: Optional[int]) -> np.ndarray:
  """uint8 frames with the shorter side resized to min_resize (None/0: unchanged)."""
  if not min_resize:
    return video
  h, w = video.shape[1:3]
  scale = min_resize / min(h, w)
  return augment.resize_box(video, (0, 0, h, w), int(round(h * scale)),
                            int(round(w * scale)))


def write_shard(path: str, rows: Sequence[tuple],
                min_resize: Optional[int] = None, quality: int = 90) -> dict:
  """Writes the videos `rows` = (path, label, label name), label and name in
  `tfrecord.encode_example`'s forms, to the shard `path` and its summary next to it
  (path + '.json'); returns the summary
  {'written': n, 'skipped': [[file, reason], ...]}."""
  records, skipped = [], []
  for file, label, name in rows:
    try:
      video = video_files.decode_video(file, lambda n: np.arange(n))
    except DecodeError as e:
      logging.warning('Skipping %s: %s', file, e)
      skipped.append([file, str(e)])
      continue
    video = _resize_short_side(video, min_resize)
    records.append(tfrecord.encode_example(video, label, name, filename=file,
                                           quality=quality))
  tfrecord.write_records(path, records)
  summary = {'written': len(records), 'skipped': skipped}
  with open(path + '.json', 'w') as f:
    json.dump(summary, f)
  return summary


def _write_shard_job(args):
  path, rows, min_resize, quality = args
  return write_shard(path, rows, min_resize, quality)


def prepare(index: str, out_dir: str, split: str, *, num_shards: int = 1,
            workers: int = 1, min_resize: Optional[int] = None, quality: int = 90,
            label_names: Optional[Sequence[str]] = None,
            labels: Optional[LabelSpec] = None) -> dict:
  """Converts the videos of `index` into `num_shards` shards of split `split` in
  out_dir with `workers` processes; returns and writes the summary
  (OUT/<split>.summary.json): written, skipped (missing files, wrong labels and
  unreadable videos, each with its reason), shards_written / shards_reused.

  Labels: plain classes over `label_names` (default: the class folders, else the
  sorted labels of the index), or `labels`, the LabelSpec of label groups or
  multi-label data (with the class names it accepts besides indices, if any)."""
  start = time.time()
  rows = video_files.read_index(index)
  os.makedirs(out_dir, exist_ok=True)
  if labels is None or not (labels.grouped or labels.multi_label):
    if label_names is None:
      label_names = rows.classes if rows.classes is not None else sorted(set(rows.labels))
    labels = tfrecord.plain_spec(label_names)
  skipped, usable = [], []
  for file, raw in zip(rows.paths, rows.label_values(labels)):
    try:
      label = labels.parse(raw)
    except DecodeError as e:
      skipped.append([file, str(e)])
      continue
    if not os.path.isfile(file):
      skipped.append([file, 'file does not exist'])
    else:
      usable.append((file, *tfrecord.example_label(labels, label)))
  if labels.names:
    names = dict(labels.names)
    tfrecord.write_label_names(out_dir, names if labels.grouped else
                               names[labels.group_names[0]])
  jobs, reused = [], 0
  for k, part in enumerate(np.array_split(np.arange(len(usable)), num_shards)):
    path = shard_path(out_dir, split, k, num_shards)
    if os.path.isfile(path) and os.path.isfile(path + '.json'):
      reused += 1
      continue
    jobs.append((path, [usable[i] for i in part], min_resize, quality))
  if workers > 1 and len(jobs) > 1:
    context = multiprocessing.get_context('spawn')   # TensorFlow is not fork-safe.
    with concurrent.futures.ProcessPoolExecutor(min(workers, len(jobs)),
                                                mp_context=context) as pool:
      list(pool.map(_write_shard_job, jobs))
  else:
    for job in jobs:
      _write_shard_job(job)
  written = 0
  for k in range(num_shards):
    with open(shard_path(out_dir, split, k, num_shards) + '.json') as f:
      shard = json.load(f)
    written += shard['written']
    skipped += shard['skipped']
  summary = {'split': split, 'index': index, 'listed': len(rows.paths),
             'written': written, 'num_skipped': len(skipped), 'skipped': skipped,
             'num_shards': num_shards, 'shards_written': len(jobs),
             'shards_reused': reused, 'seconds': round(time.time() - start, 2)}
  with open(os.path.join(out_dir, f'{split}.summary.json'), 'w') as f:
    json.dump(summary, f, indent=1)
  return summary


def cli_labels(groups: Optional[Sequence[str]], multi_label: bool,
               num_classes: Optional[int], names: Optional[str]) -> Optional[LabelSpec]:
  """The LabelSpec (with names) of the label flags; None for plain labels. A bad flag
  is a ConfigError naming it."""
  if not groups and not multi_label:
    return None
  pairs = []
  for item in groups or ():
    name, _, size = item.rpartition(':')
    if not name or not size.isdigit():
      raise ConfigError(f"--label_groups={','.join(groups)!r} is invalid: expected "
                        "'name:classes' pairs, e.g. verb:97,noun:300.")
    pairs.append((name, int(size)))
  if multi_label and num_classes is None:
    num_classes = len(video_files.load_label_names(names) or []) or None
    if num_classes is None:
      raise ConfigError('--multi_label needs --num_classes or --label_names.')
  d = ml_collections.ConfigDict(dict(
      label_groups=tuple(pairs) or None, multi_label=multi_label,
      num_classes=sum(s for _, s in pairs) if pairs else num_classes))
  spec = labels_lib.label_spec(d)
  return spec.with_names(video_files.load_group_names(names, spec, '--label_names'))


def _cli():
  """Defines the flags (only when run as a program) and runs `prepare`."""
  index = flags.DEFINE_string('index', None, 'CSV/TSV/TXT index or class-folder tree.')
  out_dir = flags.DEFINE_string('out_dir', None, 'Output folder for the shards.')
  split = flags.DEFINE_string('split', 'train', 'Split name (shard file prefix).')
  num_shards = flags.DEFINE_integer('num_shards', 1, 'Number of shards.')
  workers = flags.DEFINE_integer('workers', os.cpu_count() or 1, 'Worker processes.')
  min_resize = flags.DEFINE_integer('min_resize', 0, 'Shorter side of stored frames '
                                    '(0: keep the decoded size).')
  quality = flags.DEFINE_integer('jpeg_quality', 90, 'JPEG quality of stored frames.')
  labels = flags.DEFINE_string('label_names', None, 'Label names (.txt/.json; with '
                               'label groups also a .json {group: names}); default: the '
                               'sorted labels of the index (plain labels) or indices.')
  groups = flags.DEFINE_list('label_groups', None, "Label groups 'name:classes' in "
                             "order, e.g. verb:97,noun:300 (a column per group).")
  multi_label = flags.DEFINE_bool('multi_label', False, "Multi-label index ('3;17' "
                                  'class lists); classes: --num_classes or the names.')
  num_classes = flags.DEFINE_integer('num_classes', None, 'Classes of --multi_label '
                                     'data (default: the number of --label_names).')
  flags.mark_flags_as_required(['index', 'out_dir'])

  def main(argv):
    del argv
    spec = cli_labels(groups.value, multi_label.value, num_classes.value, labels.value)
    summary = prepare(index.value, out_dir.value, split.value,
                      num_shards=num_shards.value, workers=workers.value,
                      min_resize=min_resize.value or None, quality=quality.value,
                      label_names=None if spec else video_files.load_label_names(
                          labels.value), labels=spec)
    print(f"{summary['split']}: {summary['written']} of {summary['listed']} videos "
          f"written to {summary['num_shards']} shards ({summary['shards_reused']} "
          f"reused) in {summary['seconds']} s; {summary['num_skipped']} skipped:")
    for file, reason in summary['skipped']:
      print(f'  {file}: {reason}')

  cli.run(main)


if __name__ == '__main__':
  _cli()
