r"""Per-video features of a trained or imported checkpoint, for probing and retrieval.

  python -m vivit_jax.extract --workdir=/tmp/run --index=videos.csv --out=features.npz
  python -m vivit_jax.extract --workdir=/tmp/run --index=/data/val --out=f.npz --tokens

--index is what the video-file pipeline reads (`data.video_files.read_index`): a CSV /
TSV / TXT of `path,label` rows (relative paths from the index's folder) or a folder of
class folders. Each video is cut into the config's test views (`inference.test_views`:
num_test_clips x num_test_crops) and every view goes through the model once; features
are averaged over the views. Which features (`models.features`): the pre-logits, the
input of the final class projection (logits = features @ kernel + bias of
`output_projection`); with --tokens also the final encoder's normalised token sequence.

OUT (.npz), rows in index order, failed videos left out:
  paths          str[N]            the videos' paths as the index resolves them
  features       float32[N, D]     view-averaged pre-logits
  tokens         float32[N, L, D'] (--tokens) view-averaged final tokens (CLS first
                                   where the family has one; see models/features.py)
  labels         str[N]            the index's labels, as written
  label_ids      int32[N]          their class indices in the model's label names (-1:
                                   unknown)
  failed         str[F]            videos that could not be decoded (once each)
  failed_reasons str[F]            why, one line each
  num_views      int               views averaged per video
  checkpoint     str               the step directory the features come from

Resumable: every --save_every videos (and when stopped by an exception or Ctrl-C) the
work so far is written atomically to OUT.partial.npz; a rerun with the same arguments
skips the videos done (failed ones included) and ends with the same OUT as an
uninterrupted run, then deletes the partial file. `--max_videos=N` stops after N new
videos (to split a long job across time-limited runs). A corrupt or missing video prints
one `ERROR <path>: <why>` line on stderr and is recorded in `failed`; a progress line
`[done/total] path` goes to stderr per video.
"""
from __future__ import annotations

import os
import sys
import time
from typing import Callable

import jax
import numpy as np
from absl import app, flags

from vivit_jax import cli
from vivit_jax.data import video_files
from vivit_jax.data.labels import LabelSpec
from vivit_jax.errors import ConfigError, DecodeError
from vivit_jax.inference import (check_checkpoint_flags, define_checkpoint_flags,
                                 label_names, load_from_flags, test_views)
from vivit_jax.models import features as features_lib
from vivit_jax.train import setup as setup_lib


def _define_flags():
  """The CLI flags, defined only when run as a program (see predict.py)."""
  define_checkpoint_flags(clip_size=True)
  flags.DEFINE_string('index', None, 'CSV/TSV/TXT index of `path,label` rows, or a '
                      'folder of class folders.')
  flags.DEFINE_string('out', None, 'Output .npz file.')
  flags.DEFINE_bool('tokens', False, "Also store the final encoder's token sequence.")
  flags.DEFINE_integer('save_every', 16, 'Write OUT.partial.npz every this many videos.')
  flags.DEFINE_integer('max_videos', None, 'Stop after this many new videos (the partial '
                       'file keeps them; rerun to continue).')


def label_ids(rows, spec: LabelSpec, names) -> np.ndarray:
  """Each (path, raw label values) row's label as `spec.parse` reads it with the model's
  class `names` (flat, 'group:name' with label groups): int32[N] (plain), int32[N, G]
  (groups) or float32[N, K] (multi-label); -1 where a label is not a class."""
  by_group = {g: [n.split(':', 1)[-1] if spec.grouped else n for n in names[s]]
              for g, s in zip(spec.group_names, spec.slices())}
  named = spec.with_names(by_group)
  out = []
  for path, values in rows:
    try:
      out.append(named.parse(values, path))
    except DecodeError:
      out.append(np.full_like(np.asarray(named.empty()), -1))
  return np.stack([np.asarray(x) for x in out]) if out else np.zeros((0,), np.int32)


def partial_path(out: str) -> str:
  """Where the work in progress of `out` is kept."""
  return (out[:-4] if out.endswith('.npz') else out) + '.partial.npz'


def _save_npz(path: str, arrays: dict) -> None:
  """np.savez to `path` atomically (a temporary file, then a rename)."""
  tmp = path + '.tmp.npz'
  np.savez(tmp, **arrays)
  os.replace(tmp, path)


class Extractor:
  """View-averaged features of one video file: `(pre_logits float32[D], tokens
  float32[L, D'] or None)`."""

  def __init__(self, config, model, params, tokens: bool):
    self.config = config
    self._params = params

    def fn(p, views):
      _, pre_logits, toks = features_lib.representations(model, p, views)
      return pre_logits.mean(0), (toks.mean(0) if tokens else None)
    self._fn = jax.jit(fn)

  def __call__(self, path: str):
    feats, toks = self._fn(self._params, test_views(path, self.config))
    return np.asarray(feats), None if toks is None else np.asarray(toks)


class Progress:
  """The per-video results so far, loaded from and saved to the partial file."""

  KEYS = ('paths', 'features', 'tokens', 'failed', 'failed_reasons')

  def __init__(self, fingerprint: str):
    self.fingerprint = fingerprint
    self.done = {}      # path -> (features, tokens or None)
    self.failed = {}    # path -> reason

  @classmethod
  def load(cls, path: str, fingerprint: str) -> 'Progress':
    progress = cls(fingerprint)
    if not os.path.isfile(path):
      return progress
    with np.load(path) as f:
      if str(f['fingerprint']) != fingerprint:
        raise ConfigError(f'{path} was written by another extraction ({f["fingerprint"]}, '
                          f'now {fingerprint}): delete it to start over.')
      tokens = f['tokens'] if 'tokens' in f else None
      for i, p in enumerate(f['paths']):
        progress.done[str(p)] = (f['features'][i], None if tokens is None else tokens[i])
      progress.failed = dict(zip(map(str, f['failed']), map(str, f['failed_reasons'])))
    return progress

  def arrays(self, order) -> dict:
    """The .npz arrays of the rows of `order` (paths) whose video is done or failed."""
    paths = [p for p in order if p in self.done]
    failed = [p for p in dict.fromkeys(order) if p in self.failed]
    out = {'paths': np.array(paths, dtype=str),
           'failed': np.array(failed, dtype=str),
           'failed_reasons': np.array([self.failed[p] for p in failed], dtype=str)}
    out['features'] = (np.stack([self.done[p][0] for p in paths]).astype(np.float32)
                       if paths else np.zeros((0, 0), np.float32))
    if paths and self.done[paths[0]][1] is not None:
      out['tokens'] = np.stack([self.done[p][1] for p in paths]).astype(np.float32)
    return out

  def save(self, path: str, order) -> None:
    _save_npz(path, {**self.arrays(list(dict.fromkeys(order))),
                     'fingerprint': np.array(self.fingerprint)})


def extract_videos(extract: Callable, progress: Progress, todo, order, partial: str,
                   save_every: int, first: int, total: int) -> None:
  """Extracts the videos `todo` into `progress` (a corrupt one: one ERROR line, recorded
  as failed), one progress line each, saving `partial` every `save_every` videos and on
  any exception. `first` videos of `total` were done before."""
  start = time.time()
  try:
    for new, path in enumerate(todo, 1):
      try:
        progress.done[path] = extract(path)
      except (DecodeError, OSError, ValueError) as e:
        progress.failed[path] = _error_line(path, e)
        print(f'ERROR {progress.failed[path]}', file=sys.stderr, flush=True)
      print(f'[{first + new}/{total}] {path} ({new / (time.time() - start):.2f} videos/s)',
            file=sys.stderr, flush=True)
      if new % save_every == 0:
        progress.save(partial, order)
  except BaseException:   # Ctrl-C included: keep what is done.
    progress.save(partial, order)
    raise


def _error_line(path: str, e: BaseException) -> str:
  message = str(e).splitlines()[0] if str(e) else type(e).__name__
  return message if message.startswith(path) else f'{path}: {message}'


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  FLAGS = flags.FLAGS
  if not FLAGS.index or not FLAGS.out:
    raise ConfigError('Pass --index (a CSV/TSV/TXT index or a folder of class folders) '
                      'and --out (the .npz to write).')
  check_checkpoint_flags(FLAGS)
  if FLAGS.save_every < 1:
    raise ConfigError(f'--save_every={FLAGS.save_every} is invalid: expected >= 1.')
  index = video_files.read_index(FLAGS.index)
  config, model, params, step_dir = load_from_flags(FLAGS)
  num_views = (int(config.dataset.get('num_test_clips', 1)) *
               int(config.dataset.get('num_test_crops', 1)))
  fingerprint = (f'checkpoint={step_dir} tokens={FLAGS.tokens} '
                 f'clip={config.dataset.num_frames}x{config.dataset.crop_size}')
  partial = partial_path(FLAGS.out)
  progress = Progress.load(partial, fingerprint)
  extract = Extractor(config, model, params, FLAGS.tokens)
  order = index.paths   # rows; a video listed twice is extracted once.
  unique = list(dict.fromkeys(order))
  pending = [p for p in unique if p not in progress.done and p not in progress.failed]
  todo = pending if FLAGS.max_videos is None else pending[:FLAGS.max_videos]
  extract_videos(extract, progress, todo, order, partial, FLAGS.save_every,
                 first=len(unique) - len(pending), total=len(unique))
  if len(todo) < len(pending):
    progress.save(partial, order)
    print(f'stopped after {len(todo)} new videos; {partial} holds the '
          f'{len(unique) - len(pending) + len(todo)} done: rerun the same command to '
          'continue.', file=sys.stderr)
    return 0
  names = label_names(config, config.dataset.num_classes,
                      [FLAGS.workdir, FLAGS.checkpoint, step_dir])
  arrays = progress.arrays(order)
  spec = setup_lib.label_spec(config)
  rows = [(p, values) for p, values in zip(index.paths, index.label_values(spec))
          if p in progress.done]
  arrays['labels'] = np.array([','.join(map(str, values)) for _, values in rows], dtype=str)
  arrays['label_ids'] = label_ids(rows, spec, names)
  arrays['num_views'] = np.array(num_views)
  arrays['checkpoint'] = np.array(step_dir)
  os.makedirs(os.path.dirname(os.path.abspath(FLAGS.out)), exist_ok=True)
  _save_npz(FLAGS.out, arrays)
  if os.path.exists(partial):
    os.remove(partial)
  print(f'wrote {FLAGS.out}: {len(arrays["paths"])} videos, {len(arrays["failed"])} '
        f'failed, features {arrays["features"].shape}', file=sys.stderr)
  return 0


if __name__ == '__main__':
  _define_flags()
  cli.run(lambda argv: sys.exit(main(argv)))
