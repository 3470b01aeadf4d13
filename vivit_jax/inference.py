"""Load a trained or imported checkpoint and cut video files into its test views: what
every inference CLI (predict, and the tools that look inside or ship a model) shares.

A checkpoint is found from a training workdir (`checkpoints/`, newest or 'best') or a
directory written by `python -m vivit_jax.convert`; its config comes from --config, else
the workdir's or checkpoint directory's config.json. Views follow evaluation exactly
(data/pipeline.py): `dataset.num_test_clips` clips x `dataset.num_test_crops` crops,
normalised with `dataset.mean_rgb` / `std_rgb`.
"""
from __future__ import annotations

import json
import os
import sys
from typing import Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags

from vivit_jax import config as vc
from vivit_jax import models
from vivit_jax.convert.common import config_from_json
from vivit_jax.convert.resize import clip_config, resize_params
from vivit_jax.data import augment, pipeline, sampling, video_files
from vivit_jax.data.labels import LabelSpec
from vivit_jax.errors import ConfigError, DecodeError, config_error
from vivit_jax.train import checkpoint as ckpt_lib
from vivit_jax.train import setup as setup_lib
from vivit_jax.train import steps


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


def define_checkpoint_flags(clip_size: bool = True) -> None:
  """The flags every inference CLI takes: --workdir, --checkpoint, --config (and with
  `clip_size` --num_frames, --crop_size). Called only when a CLI runs as a program, so
  importing its module next to `vivit_jax.main` (own --workdir/--config) cannot clash."""
  flags.DEFINE_string('workdir', None, 'A training workdir (config.json + checkpoints/).')
  flags.DEFINE_string(
      'checkpoint', None, "'latest' (default), 'best', a step directory, or a directory "
      'written by `python -m vivit_jax.convert`.')
  flags.DEFINE_string('config', None, 'Config file (.py with get_config, or config.json); '
                      'default: the workdir/checkpoint config.json.')
  if clip_size:
    flags.DEFINE_integer('num_frames', None, "Frames per clip (default: the config's); "
                         'another size resizes the position embeddings.')
    flags.DEFINE_integer('crop_size', None, "Crop side in pixels (default: the config's).")


def check_checkpoint_flags(f) -> None:
  """ConfigError (one line) when the inference flags `f` name no checkpoint: neither
  --workdir nor --checkpoint, or a --workdir that is not a directory."""
  if not f.workdir and not f.checkpoint:
    raise ConfigError('Pass --workdir, or --checkpoint (with --config unless the '
                      'checkpoint directory holds config.json).')
  if f.workdir and not os.path.isdir(f.workdir):
    raise ConfigError(f'--workdir={f.workdir!r} is not a directory: expected a '
                      'training workdir (config.json + checkpoints/).')


def load_from_flags(f, clip_size: bool = True, pretraining: bool = False):
  """(config, model, params, step directory) of the classifier the inference flags `f`
  (define_checkpoint_flags) name, at --num_frames x --crop_size with `clip_size`; the
  config is the clip size's. A masked-pretraining run (no classifier) is a ConfigError
  unless `pretraining` (then the model is its `videomae` autoencoder)."""
  check_checkpoint_flags(f)
  config = load_config(f.config, f.workdir, f.checkpoint)
  if vc.is_pretraining(config) and not pretraining:
    raise config_error('task', config.task, "a classifier: a 'masked_pretraining' run "
                       'has none (fine-tune it with init_from first)')
  frames, crop = (f.num_frames, f.crop_size) if clip_size else (None, None)
  model, params, step_dir = load_model(config, f.workdir, f.checkpoint, frames, crop)
  return clip_config(config, frames, crop), model, params, step_dir


def report_failure(path: str, error: Exception) -> str:
  """Prints `ERROR <path>: <why>` (the error's first line) on stderr for a video that
  could not be read; returns '<path>: <why>'."""
  message = str(error).splitlines()[0] if str(error) else type(error).__name__
  if not message.startswith(path):
    message = f'{path}: {message}'
  print(f'ERROR {message}', file=sys.stderr, flush=True)
  return message


def load_model(config, workdir: Optional[str], checkpoint: Optional[str],
               num_frames: Optional[int] = None, crop_size: Optional[int] = None):
  """(model, params, step directory) of the checkpoint, restored into the config's
  model shapes (a config that does not match the checkpoint fails here).

  `num_frames` / `crop_size` (None: the config's) run it on clips of another size: the
  position embeddings and relative position tables are resized
  (convert/resize.py); cut the views with `clip_config(config, num_frames, crop_size)`.
  At the config's own size nothing is resized (the same params, bit for bit).
  """
  vc.validate_config(config)
  d = config.dataset
  model = models.create_model(config.model, d.num_classes)
  dummy = jnp.zeros((1, d.num_frames, d.crop_size, d.crop_size, 3), jnp.float32)
  abstract = jax.eval_shape(lambda: model.init(jax.random.key(0), dummy))['params']
  step_dir, _ = ckpt_lib.resolve_checkpoint(workdir or checkpoint or '.', checkpoint)
  params = ckpt_lib.load_params(step_dir, abstract)
  new = clip_config(config, num_frames, crop_size)
  if (new.dataset.num_frames, new.dataset.crop_size) != (d.num_frames, d.crop_size):
    params = resize_params(config, params, new)
  return model, params, step_dir


def label_names(config, num_classes: int, dirs: Sequence[Optional[str]]) -> list[str]:
  """The K class names in label order (see the module docstring); with label groups,
  'group:name' (default 'group:index')."""
  spec = setup_lib.label_spec(config)
  if spec.grouped:       # a {group: names} mapping, or K names split into the groups.
    candidates = [config.dataset.get('label_names')] + [
        os.path.join(d, 'label_names.json') for d in dirs if d]
    for value in candidates:
      if value and (not isinstance(value, str) or os.path.isfile(value)):
        return spec.with_names(video_files.load_group_names(value, spec)).flat_names()
    return spec.flat_names()
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
    self.label_spec = setup_lib.label_spec(config)
    self._probs = jax.jit(lambda p, v: steps.aggregate_views(
        model.apply({'params': p}, v, train=False)[None], method, self.label_spec)[0])
    self._params = params

  def __call__(self, path: str) -> np.ndarray:
    """float32[K]: the view-averaged class probabilities of the video at `path` (per
    group's block for label groups; per class, independent, for multi-label)."""
    return self.from_views(test_views(path, self.config))

  def from_views(self, views: np.ndarray) -> np.ndarray:
    """float32[K]: the aggregated class probabilities of views float32[V, T, S, S, 3]."""
    return np.asarray(self._probs(self._params, views))


# ---------------------------------------------------------------------------------
# Describing predictions.

def top_k(probs: np.ndarray, names: Sequence[str], k: int) -> list[dict]:
  """[{'index', 'label', 'prob'}] of the k most probable classes, most probable first."""
  order = np.argsort(-probs, kind='stable')[:k]
  return [{'index': int(i), 'label': names[i], 'prob': float(probs[i])} for i in order]


def top_actions(probs: np.ndarray, names: Sequence[str], spec: LabelSpec,
                k: int) -> list[dict]:
  """[{'labels': {group: name}, 'indices': {group: index}, 'prob'}] of the k most
  probable combinations of the groups' classes (the product of their probabilities, as
  action accuracy ranks them), most probable first."""
  joint = np.ones(())
  for s in spec.slices():
    joint = np.multiply.outer(joint, probs[s])
  sizes = [size for _, size in spec.groups]
  out = []
  for flat in np.argsort(-joint.ravel(), kind='stable')[:k]:
    idx = np.unravel_index(flat, sizes)
    out.append({'labels': {g: _short(names[s.start + i]) for (g, _), s, i in
                           zip(spec.groups, spec.slices(), idx)},
                'indices': {g: int(i) for (g, _), i in zip(spec.groups, idx)},
                'prob': float(joint.ravel()[flat])})
  return out


def _short(name: str) -> str:
  """'verb:open' -> 'open'."""
  return name.split(':', 1)[1] if ':' in name else name


def describe(probs: np.ndarray, names: Sequence[str], spec: LabelSpec, k: int) -> dict:
  """The printed prediction of one video: {'top': top_k} (plain; multi-label, whose
  probabilities are independent per class), or {'groups': {group: top_k},
  'actions': top_actions} for label groups."""
  if not spec.grouped:
    return {'top': top_k(probs, names, k)}
  groups = {g: [dict(r, label=_short(r['label']))
                for r in top_k(probs[s], names[s], k)]
            for (g, _), s in zip(spec.groups, spec.slices())}
  return {'groups': groups, 'actions': top_actions(probs, names, spec, k)}


def headline(probs: np.ndarray, names: Sequence[str], spec: LabelSpec) -> str:
  """One line naming the prediction: 'name (p)', or per group 'verb=open (p) noun=cup (q)'."""
  d = describe(probs, names, spec, 1)
  if 'groups' in d:
    return ' '.join(f"{g}={rows[0]['label']} ({rows[0]['prob']:.2f})"
                    for g, rows in d['groups'].items())
  return f"{d['top'][0]['label']} ({d['top'][0]['prob']:.2f})"
