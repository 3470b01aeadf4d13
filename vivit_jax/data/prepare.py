r"""Converts a video-file index into TFRecord shards of SequenceExamples (tfrecord.py).

  python -m vivit_jax.data.prepare --index=videos/train.csv --out_dir=shards \
      --split=train --num_shards=16 --workers=8 [--min_resize=256] [--jpeg_quality=90]

--index is a CSV/TSV/TXT index or a folder of class folders (see video_files.py).
Shards are written as OUT/<split>.tfrecord-<k>-of-<n> in parallel worker processes;
rerunning skips the shards that are complete (resumable). Files that cannot be read
are skipped and listed with the reason in OUT/<split>.summary.json, with the counts;
OUT/label_names.json holds the label names (in label order).
"""
from __future__ import annotations

import concurrent.futures
import json
import multiprocessing
import os
import time
from typing import Optional, Sequence

import numpy as np
from absl import flags, logging

from vivit_jax import cli
from vivit_jax.data import augment, tfrecord, video_files
from vivit_jax.errors import DecodeError


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


def write_shard(path: str, rows: Sequence[tuple[str, int, str]],
                min_resize: Optional[int] = None, quality: int = 90) -> dict:
  """Writes the videos `rows` = (path, label, label name) to the shard `path` and
  its summary next to it (path + '.json'); returns the summary
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
            label_names: Optional[Sequence[str]] = None) -> dict:
  """Converts the videos of `index` into `num_shards` shards of split `split` in
  out_dir with `workers` processes; returns and writes the summary
  (OUT/<split>.summary.json): written, skipped (missing files, unknown labels and
  unreadable videos, each with its reason), shards_written / shards_reused."""
  start = time.time()
  rows = video_files.read_index(index)
  os.makedirs(out_dir, exist_ok=True)
  if label_names is None:
    label_names = rows.classes if rows.classes is not None else sorted(set(rows.labels))
  names = list(label_names)
  codes = video_files.label_indices(rows.labels, names)
  skipped, usable = [], []
  for file, raw, code in zip(rows.paths, rows.labels, codes):
    if code < 0:
      skipped.append([file, f'unknown label {raw!r}'])
    elif not os.path.isfile(file):
      skipped.append([file, 'file does not exist'])
    else:
      usable.append((file, int(code), names[code]))
  tfrecord.write_label_names(out_dir, names)
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
  labels = flags.DEFINE_string('label_names', None, 'Label names (.txt/.json); '
                               'default: the sorted labels of the index.')
  flags.mark_flags_as_required(['index', 'out_dir'])

  def main(argv):
    del argv
    summary = prepare(index.value, out_dir.value, split.value,
                      num_shards=num_shards.value, workers=workers.value,
                      min_resize=min_resize.value or None, quality=quality.value,
                      label_names=video_files.load_label_names(labels.value))
    print(f"{summary['split']}: {summary['written']} of {summary['listed']} videos "
          f"written to {summary['num_shards']} shards ({summary['shards_reused']} "
          f"reused) in {summary['seconds']} s; {summary['num_skipped']} skipped:")
    for file, reason in summary['skipped']:
      print(f'  {file}: {reason}')

  cli.run(main)


if __name__ == '__main__':
  _cli()
