"""Shared pieces of the converters: flat parameter paths, configs, converted directories.

Parameter trees are handled as flat dicts `{'Transformer/encoderblock_0/.../kernel':
np.ndarray}` ('/'-joined paths), which keeps renaming rules one line each.

A converted checkpoint directory (written by `save_converted`, read by `load_converted`):
  DIR/config.json    the full ConfigDict as JSON (`vivit_jax.config.default_config()` shape)
  DIR/params/        the params tree, orbax (StandardSave), restorable with
                     `vivit_jax.train.checkpoint.load_params(DIR)`
  DIR/meta/          orbax JSON {'step': 0, 'source': ...}, so DIR is also a step directory
                     for `vivit_jax.train.checkpoint.resolve_checkpoint(..., checkpoint=DIR)`.
"""
from __future__ import annotations

import json
import math
import os
from typing import Any, Mapping, Optional

import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from vivit_jax import config as vc
from vivit_jax.convert import checkpoints
from vivit_jax.errors import ConversionError  # noqa: F401  (re-exported)

Flat = dict[str, np.ndarray]


# ---------------------------------------------------------------------------------
# Trees.

def flatten(tree: Mapping[str, Any], prefix: str = '') -> Flat:
  """Nested dicts -> {'a/b/c': np.ndarray}. Leaves go through np.asarray."""
  flat = {}
  for key, value in tree.items():
    path = f'{prefix}{key}'
    if isinstance(value, Mapping):
      flat.update(flatten(value, path + '/'))
    else:
      flat[path] = np.asarray(value)
  return flat


def unflatten(flat: Mapping[str, Any]) -> dict:
  """{'a/b/c': x} -> {'a': {'b': {'c': x}}}."""
  tree: dict = {}
  for path, value in flat.items():
    node = tree
    *parents, leaf = path.split('/')
    for p in parents:
      node = node.setdefault(p, {})
    node[leaf] = value
  return tree


# Train-state wrappers around the params of Scenic / flax / big_vision checkpoints, in the
# order they are tried: the first path present wins.
PARAM_WRAPPERS = (('optimizer', 'target'), ('opt', 'target'), ('params',), ('target',),
                  ('state', 'params'))
_PARAM_ROOTS = ('embedding', 'Transformer', 'SpatialTransformer')


def unwrap_params(tree: Mapping[str, Any]) -> Mapping[str, Any]:
  """The params inside a train state ({'optimizer': {'target': p}}, {'params': p}, ...).

  A tree that already holds params (an `embedding` or an encoder at its root) is
  returned as is.
  """
  if any(k in tree for k in _PARAM_ROOTS):
    return tree
  for wrapper in PARAM_WRAPPERS:
    node = tree
    for key in wrapper:
      if not isinstance(node, Mapping) or key not in node:
        break
      node = node[key]
    else:
      if isinstance(node, Mapping):
        return unwrap_params(node)
  raise ConversionError(
      f'No params found in the checkpoint: top-level keys are {sorted(tree)[:12]}; '
      f"expected params ('embedding', 'Transformer', ...) at the root or under one of "
      f"{['/'.join(w) for w in PARAM_WRAPPERS]}.")


def square_side(n: int, what: str) -> int:
  """The side of a square grid of n cells (error naming `what` when n is not square)."""
  side = math.isqrt(n)
  if side * side != n:
    raise ConversionError(f'{what}: {n} tokens do not form a square grid; pass the '
                          'crop size / number of frames explicitly.')
  return side


# ---------------------------------------------------------------------------------
# Configs.

def base_config() -> ml_collections.ConfigDict:
  """default_config() with the fields every imported checkpoint overrides."""
  config = vc.default_config()
  config.experiment_name = 'converted'
  return config


def token_grid(config: ml_collections.ConfigDict) -> tuple[int, int, int]:
  """(n_t, n_h, n_w) of the token grid `config` produces (n_t = 1 for the image ViT)."""
  m, d = config.model, config.dataset
  ph, pw = tuple(m.patch_size)
  gh, gw = d.crop_size // ph, d.crop_size // pw
  if m.name == 'vit':
    return 1, gh, gw
  if m.get('embedding') == 'tubelet':
    return d.num_frames // m.get('temporal_patch_size', 1), gh, gw
  return d.num_frames, gh, gw


def config_to_json(config: ml_collections.ConfigDict) -> str:
  return config.to_json_best_effort(indent=2, sort_keys=True)


def _tuples(value):
  if isinstance(value, list):
    return tuple(_tuples(v) for v in value)
  if isinstance(value, dict):
    return {k: _tuples(v) for k, v in value.items()}
  return value


def config_from_json(text: str) -> ml_collections.ConfigDict:
  """A ConfigDict from `config_to_json` output (JSON lists back to tuples, as in
  default_config)."""
  return ml_collections.ConfigDict(_tuples(json.loads(text)))


# ---------------------------------------------------------------------------------
# Converted checkpoint directories.

def save_converted(config: ml_collections.ConfigDict, params: Mapping[str, Any],
                   out_dir: str, source: str = '') -> str:
  """Writes `config` and `params` as a converted checkpoint directory (module docstring).

  Returns the absolute directory. Refuses to overwrite a non-empty directory.
  """
  out_dir = os.path.abspath(out_dir)
  if os.path.isdir(out_dir) and os.listdir(out_dir):
    raise FileExistsError(f'{out_dir} exists and is not empty; choose a new --out.')
  if os.path.isdir(out_dir):
    os.rmdir(out_dir)
  params = unflatten(flatten(params))   # numpy leaves, plain dicts.
  with ocp.Checkpointer(ocp.CompositeCheckpointHandler()) as ckptr:
    ckptr.save(out_dir, args=ocp.args.Composite(
        params=ocp.args.StandardSave(params),
        meta=ocp.args.JsonSave({'step': 0, 'source': source})))
  with open(os.path.join(out_dir, 'config.json'), 'w') as f:
    f.write(config_to_json(config))
  return out_dir


def load_converted(path: str, checkpoint: Optional[str] = None
                   ) -> tuple[ml_collections.ConfigDict, dict]:
  """(config, params) of a converted directory or of a training workdir.

  `path`: a directory written by `save_converted` / `python -m vivit_jax.convert`, or a
  `main.py` workdir (config.json + checkpoints/), whose newest checkpoint is read unless
  `checkpoint` names another ('best', a step directory).
  """
  path = os.path.abspath(path)
  config_path = os.path.join(path, 'config.json')
  if not os.path.isfile(config_path):
    raise FileNotFoundError(f'{config_path} not found: expected a converted checkpoint '
                            'directory or a vivit_jax workdir.')
  with open(config_path) as f:
    config = config_from_json(f.read())
  if checkpoint is None and os.path.isdir(os.path.join(path, 'params')):
    step_dir = path
  else:
    step_dir, _ = checkpoints.resolve_checkpoint(path, checkpoint)
  with ocp.StandardCheckpointer() as ckptr:
    params = ckptr.restore(os.path.join(step_dir, 'params'))
  return config, unflatten(flatten(params))
