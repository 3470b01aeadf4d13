"""Run a checkpoint on another clip size: its size-dependent parameters resized.

`clip_config(config, num_frames, crop_size)` is the config for the new size and
`resize_params(config, params, new_config)` adapts the parameters whose shapes depend on
the token grid, by name:

  absolute position embeddings (ViT / ViViT `posembed_input/pos_embedding`, TimeSformer
      `pos_embed` / `time_embed`, VTN's backbone and temporal ones, MViT v1
      `pos_embed[_spatial|_temporal]`): the token grid resized by
      `inflate.adapt_posemb` (bilinear in space, linear in time; CLS kept);
  MViTv2 relative position tables `rel_pos_{t,h,w}` [2 n - 1, Dh]: linear
      interpolation along the table (as PySlowFast's `interpolate_rel_pos`).
Video Swin has none (its bias tables belong to the configured window, which shrinks to
small maps by itself). Every other parameter keeps its shape; a leaf that changes shape
and is not one of these raises ConfigError naming it.
"""
from __future__ import annotations

import math

import flax
import jax
import numpy as np

from vivit_jax import config as vc
from vivit_jax import models
from vivit_jax.convert.common import token_grid
from vivit_jax.convert.inflate import adapt_posemb, resize_grid
from vivit_jax.errors import ConfigError


def clip_config(config, num_frames=None, crop_size=None):
  """A copy of `config` for clips of `num_frames` x `crop_size`^2 (None keeps the
  config's), validated (ConfigError naming the field when the model cannot take it).
  A set `dataset.min_resize` scales with the crop, so the crop sees the same field."""
  new = config.copy_and_resolve_references()
  d = new.dataset
  if num_frames is not None:
    d.num_frames = int(num_frames)
  if crop_size is not None:
    if d.get('min_resize'):
      d.min_resize = int(round(d.min_resize * int(crop_size) / d.crop_size))
    d.crop_size = int(crop_size)
  vc.validate_config(new)
  return new


def _grid(config) -> tuple:
  """The token grid (t, h, w) of the model's first layer for `config`'s clips."""
  m, d = config.model, config.dataset
  if m.name == 'mvit':
    size = (d.num_frames, d.crop_size, d.crop_size)
    return tuple((n + 2 * p - k) // s + 1 for n, k, s, p in
                 zip(size, m.patch_kernel, m.patch_stride, m.patch_padding))
  if m.name in ('timesformer', 'vtn'):   # one token per frame and patch.
    return (d.num_frames,) + tuple(token_grid(config)[1:])
  return token_grid(config)


def _leaf_grid(path: str, grid: tuple, family: str) -> tuple:
  """The sub-grid a position embedding at `path` covers: the full (t, h, w), the
  spatial (1, h, w) or the temporal (t, 1, 1) one."""
  t, h, w = grid
  name = path.split('/')[-1]
  if (path.startswith(('SpatialTransformer/', 'backbone/')) or name == 'pos_embed_spatial'
      or (family == 'timesformer' and name == 'pos_embed')):
    return 1, h, w
  if path.startswith('TemporalTransformer/') or name in ('time_embed', 'pos_embed_temporal'):
    return t, 1, 1
  return grid


POSEMB_NAMES = ('pos_embedding', 'pos_embed', 'time_embed', 'pos_embed_spatial',
                'pos_embed_temporal')


def resize_params(config, params, new_config):
  """params (for `config`'s clip size) -> params for `new_config`'s (see the module
  docstring); leaves whose shapes do not change are returned as they are."""
  d = new_config.dataset
  model = models.create_model(new_config.model, d.num_classes)
  dummy = jax.ShapeDtypeStruct((1, d.num_frames, d.crop_size, d.crop_size, 3), np.float32)
  # Tuple keys: some module names hold a '/' (Video Swin's 'stage_0/block_0').
  flat = lambda tree: flax.traverse_util.flatten_dict(flax.core.unfreeze(tree))
  target = flat(jax.eval_shape(model.init, jax.random.key(0), dummy)['params'])
  source = flat(params)
  old_grid, new_grid = _grid(config), _grid(new_config)
  out = {}
  for key, value in source.items():
    shape = tuple(target[key].shape)
    if tuple(value.shape) == shape:
      out[key] = value
      continue
    path, name = '/'.join(key), key[-1]
    value = np.asarray(value)
    if name in POSEMB_NAMES:
      family = config.model.name
      src, tgt = _leaf_grid(path, old_grid, family), _leaf_grid(path, new_grid, family)
      cls = value.shape[1] - math.prod(src)
      out[key], _ = adapt_posemb(value, src, tgt, src_cls=bool(cls), tgt_cls=bool(cls))
    elif name.startswith('rel_pos_'):
      out[key] = resize_grid(value[:, None, None, :], (shape[0], 1, 1))[:, 0, 0]
    else:
      raise ConfigError(f'parameter {path} of shape {value.shape} is invalid for clips '
                        f'of {d.num_frames} x {d.crop_size}^2: expected {shape}, and it '
                        'is not a position embedding that can be resized.')
    if tuple(out[key].shape) != shape:
      raise ConfigError(f'parameter {path} resized to {out[key].shape} is invalid: '
                        f'expected {shape}.')
  return flax.traverse_util.unflatten_dict(out)
