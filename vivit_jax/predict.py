r"""Classify video files with a trained or imported checkpoint.

  python -m vivit_jax.predict --workdir=/tmp/run video1.mp4 video2.webm
  python -m vivit_jax.predict --checkpoint=/tmp/vivit_k400 --config=/tmp/vivit_k400/config.py \
      video.mp4 --json

Each file is decoded with PyAV (vivit_jax.data.video_files.decode_video, which reads
only the frames it needs) and cut into the config's test views exactly as evaluation
does (data/pipeline.py): `dataset.num_test_clips` clips (`dataset.temporal_sampling`,
`num_frames` every `stride` frames) x `dataset.num_test_crops` crops (1 centre or 3
along the longer side, after resizing the shorter side to `dataset.min_resize`),
normalised with `dataset.mean_rgb` / `std_rgb`. The class probabilities aggregate the
views as evaluation does (`trainer.view_aggregation`: the mean of the views' softmaxes,
or the softmax of their mean logits); the top-5 are printed (`--json`: one JSON object
on stdout). Label names: config.dataset.label_names, else label_names.json in the
workdir or the checkpoint directory, else the `label_names` of the workdir's
eval_results.json, else `class_<i>`.

A missing, corrupt or unsupported file prints one `ERROR <path>: <why>` line on stderr
and the other files still run; the exit status is 1 if any file failed.
"""
from __future__ import annotations

import json
import os
import sys
from typing import Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from vivit_jax import cli, models
from vivit_jax import config as vc
from vivit_jax.convert.common import config_from_json
from vivit_jax.data import augment, pipeline, sampling, video_files
from vivit_jax.errors import ConfigError, DecodeError
from vivit_jax.train import checkpoint as ckpt_lib
from vivit_jax.train import setup as setup_lib
from vivit_jax.train import steps


def _define_flags():
  """The CLI flags, defined only when run as a program (so importing this module next to
  `vivit_jax.main`, which has its own --workdir/--config, cannot clash)."""
  flags.DEFINE_string('workdir', None, 'A training workdir (config.json + checkpoints/).')
  flags.DEFINE_string(
      'checkpoint', None, "'latest' (default), 'best', a step directory, or a directory "
      'written by `python -m vivit_jax.convert`.')
  flags.DEFINE_string('config', None, 'Config file (.py with get_config, or config.json); '
                      'default: the workdir/checkpoint config.json.')
  flags.DEFINE_integer('top_k', 5, 'Classes printed per video.')
  flags.DEFINE_bool('json', False, 'Print one JSON object instead of text.')


# ---------------------------------------------------------------------------------
# Loading.

def load_config(config_path: Optional[str], workdir: Optional[str],
                checkpoint: Optional[str]):
  """The ConfigDict from --config, else the workdir's or the checkpoint dir's config.json."""
  candidates = [config_path] if config_path else [
      os.path.join(d, 'config.json') for d in (workdir, checkpoint) if d]
  for path in candidates:
    if path and os.path.isfile(path):
      if path.endswith('.json'):
        with open(path) as f:
          return config_from_json(f.read())
      return vc.load_config(path)
  raise ConfigError(f'No config found (tried {candidates}): pass --config or a '
                          '--workdir / --checkpoint directory holding config.json.')


def load_model(config, workdir: Optional[str], checkpoint: Optional[str]):
  """(model, params, step directory) of the checkpoint, restored into the config's
  model shapes (a config that does not match the checkpoint fails here)."""
  vc.validate_config(config)
  d = config.dataset
  model = models.create_model(config.model, d.num_classes)
  dummy = jnp.zeros((1, d.num_frames, d.crop_size, d.crop_size, 3), jnp.float32)
  abstract = jax.eval_shape(lambda: model.init(jax.random.key(0), dummy))['params']
  step_dir, _ = ckpt_lib.resolve_checkpoint(workdir or checkpoint or '.', checkpoint)
  return model, ckpt_lib.load_params(step_dir, abstract), step_dir


def label_names(config, num_classes: int, dirs: Sequence[Optional[str]]) -> list[str]:
  """Names of the classes in label order (see the module docstring)."""
  names = video_files.load_label_names(config.dataset.get('label_names'))
  for d in dirs:
    if names or not d:
      continue
    path = os.path.join(d, 'label_names.json')
    if os.path.isfile(path):
      names = video_files.load_label_names(path)
    elif os.path.isfile(os.path.join(d, 'eval_results.json')):
      with open(os.path.join(d, 'eval_results.json')) as f:
        names = json.load(f).get('label_names') or None
  if not names or len(names) != num_classes:
    return [f'class_{i}' for i in range(num_classes)]
  return list(names)


# ---------------------------------------------------------------------------------
# Views and predictions.

def test_views(path: str, config) -> np.ndarray:
  """float32[V, T, S, S, 3]: the normalised test views of one video file, clip-major
  (V = num_test_clips x num_test_crops), as evaluation cuts them. Raises
  vivit_jax.errors.DecodeError naming the file when it cannot be read."""
  o = pipeline.clip_options(config)
  if o.num_test_crops not in (1, 3):
    raise ValueError(f'config.dataset.num_test_crops={o.num_test_crops} is invalid: '
                     'expected 1 or 3.')
  if not os.path.isfile(path):
    raise DecodeError(f'{path}: no such file.')
  frames = video_files.decode_video(path, lambda length: sampling.eval_clip_indices(
      o.temporal_sampling, length, o.num_frames, o.stride, o.num_test_clips))
  boxes = augment.eval_view_boxes(frames.shape[2], frames.shape[3], o.crop_size,
                                  o.num_test_crops, o.min_resize)
  views = np.stack([augment.resize_box(clip, box, o.crop_size, o.crop_size)
                    for clip in frames for box in boxes])
  return augment.normalize(views, o.mean_rgb, o.std_rgb)


class Predictor:
  """Class probabilities of video files: views -> jitted forward -> the config's view
  aggregation (`trainer.view_aggregation`, as evaluation)."""

  def __init__(self, config, model, params):
    self.config = config
    method = setup_lib.view_aggregation(config)
    self._probs = jax.jit(lambda p, v: steps.aggregate_views(
        model.apply({'params': p}, v, train=False)[None], method)[0])
    self._params = params

  def __call__(self, path: str) -> np.ndarray:
    """float32[K]: the view-averaged class probabilities of the video at `path`."""
    return np.asarray(self._probs(self._params, test_views(path, self.config)))


def top_k(probs: np.ndarray, names: Sequence[str], k: int) -> list[dict]:
  """[{'index', 'label', 'prob'}] of the k most probable classes, most probable first."""
  order = np.argsort(-probs, kind='stable')[:k]
  return [{'index': int(i), 'label': names[i], 'prob': float(probs[i])} for i in order]


def main(argv):
  FLAGS = flags.FLAGS
  videos = argv[1:]
  if not videos:
    raise app.UsageError('Pass one or more video files.')
  if not FLAGS.workdir and not FLAGS.checkpoint:
    raise app.UsageError('Pass --workdir, or --checkpoint (with --config unless the '
                         'checkpoint directory holds config.json).')
  config = load_config(FLAGS.config, FLAGS.workdir, FLAGS.checkpoint)
  model, params, step_dir = load_model(config, FLAGS.workdir, FLAGS.checkpoint)
  names = label_names(config, config.dataset.num_classes,
                      [FLAGS.workdir, FLAGS.checkpoint, step_dir])
  predict = Predictor(config, model, params)
  results, failed = [], 0
  for path in videos:
    try:
      result = {'path': path, 'top': top_k(predict(path), names, FLAGS.top_k)}
    except (DecodeError, OSError, ValueError) as e:
      failed += 1
      message = str(e).splitlines()[0] if str(e) else type(e).__name__
      if not message.startswith(path):
        message = f'{path}: {message}'
      print(f'ERROR {message}', file=sys.stderr, flush=True)
      result = {'path': path, 'error': message}
    results.append(result)
    if not FLAGS.json and 'top' in result:
      print(path)
      for r in result['top']:
        print(f'  {r["prob"]:.4f}  {r["label"]}')
  if FLAGS.json:
    print(json.dumps({'checkpoint': step_dir, 'num_views':
                      int(config.dataset.get('num_test_clips', 1)) *
                      int(config.dataset.get('num_test_crops', 1)),
                      'results': results}, indent=2))
  return 1 if failed else 0


if __name__ == '__main__':
  _define_flags()
  cli.run(lambda argv: sys.exit(main(argv)))
