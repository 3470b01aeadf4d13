"""Scenic ViViT checkpoints (google-research/scenic, scenic/projects/vivit/model.py).

Reads flax msgpack checkpoints (`checkpoint_<step>` files of flax.training.checkpoints,
train state {'optimizer': {'target': params}, ...} or {'params': ...}) and orbax
directories, without pickle, and builds this project's config + params.

This project's ViViT tree uses Scenic's names, so most parameters map one to one:
  embedding (Conv [t, ph, pw, C, D] for '3d_conv', [ph, pw, C, D] for
  'temporal_sampling'), cls, Transformer/{posembed_input, encoderblock_i, encoder_norm},
  SpatialTransformer / TemporalTransformer / cls_SpatialTransformer /
  cls_TemporalTransformer (Model 2), LayerNorm_{space,time,mlp} /
  MultiHeadDotProductAttention_{space,time} / MlpBlock (Model 3), pre_logits,
  output_projection. Scenic attention types -> ours:
    spacetime -> spatio_temporal, factorized_encoder -> factorised_encoder,
    factorized_self_attention_block -> factorised_self_attention,
    factorized_dot_product_attention -> factorised_dot_product.
Model 4: Scenic's `factorized_dot_product_attention` gives the FIRST half of the heads
to time and the second to space; ours the other way round, so query/key/value/out are
re-ordered by head halves. Model 3: Scenic's `attention_config.attention_order`
('time_space', its default: temporal attention first; or 'space_time') becomes
`config.model.attention_order`, so the imported model computes Scenic's function.

What the arrays do not say (the clip length / crop size when both are folded into one
position embedding, Model 4 vs Model 1, Model 3's attention order) comes from the Scenic
config (a config file, `scenic_config`) or the `num_frames` / `crop_size` /
`attention_type` / `attention_order` arguments; without either, Model 3 gets Scenic's
default 'time_space' (logged).
Models without CLS tokens pool with Scenic's `classifier` ('gap', 'gmp' max or 'gsp' sum,
from the config or the `classifier` argument; 'gap' if neither says). Multi-head models
(Scenic's `ViViTMultiHeadClassificationModel`, e.g. Epic-Kitchens noun/verb) become
label groups from the config's `class_splits` / `split_names` (or `label_groups`).
Scenic uses flax's defaults: tanh-approximate GELU, LayerNorm epsilon 1e-6, and pixels
in [-1, 1] (mean_rgb = std_rgb = 0.5).
"""
from __future__ import annotations

import os
import re
from typing import Optional, Sequence

import ml_collections
import orbax.checkpoint as ocp
from absl import logging
from flax import serialization

from vivit_jax.config import load_config
from vivit_jax.convert import inflate
from vivit_jax.convert.common import (ConversionError, Flat, base_config, flatten,
                                      square_side, unflatten, unwrap_params)
from vivit_jax.models.vivit import ATTENTION_ORDERS

ATTENTION_TYPES = {
    'spacetime': 'spatio_temporal', 'factorized_encoder': 'factorised_encoder',
    'factorized_self_attention_block': 'factorised_self_attention',
    'factorized_dot_product_attention': 'factorised_dot_product',
}


# ---------------------------------------------------------------------------------
# Reading checkpoints.

def _step_of(name: str) -> int:
  m = re.search(r'(\d+)$', name)
  return int(m.group(1)) if m else -1


def read_checkpoint(path: str) -> dict:
  """The nested dict in a flax msgpack file, an orbax directory, or the newest
  `checkpoint_<step>` in a Scenic workdir / checkpoint directory."""
  if not os.path.exists(path):
    raise FileNotFoundError(f'Scenic checkpoint {path!r} does not exist.')
  if os.path.isdir(path):
    entries = [e for e in os.listdir(path) if re.fullmatch(r'checkpoint_\d+', e)]
    if entries:
      return read_checkpoint(os.path.join(path, max(entries, key=_step_of)))
    with ocp.PyTreeCheckpointer() as ckptr:
      return dict(ckptr.restore(os.path.abspath(path)))
  with open(path, 'rb') as f:
    data = f.read()
  try:
    return serialization.msgpack_restore(data)
  except Exception as e:   # not msgpack: name the file and what was expected.
    raise ConversionError(f'{path} is not a flax msgpack checkpoint ({e}); expected a '
                          'Scenic checkpoint_<step> file or an orbax directory.') from None


# ---------------------------------------------------------------------------------
# Facts from a Scenic config.

def _facts_from_scenic_config(scenic_config) -> dict:
  if scenic_config is None:
    return {}
  if isinstance(scenic_config, str):
    scenic_config = load_config(scenic_config)
  m = scenic_config.get('model') or {}
  dc = scenic_config.get('dataset_configs') or {}
  attention = (m.get('attention_config') or {})
  splits, names = dc.get('class_splits'), dc.get('split_names')
  groups = (tuple(zip(names or [str(i + 1) for i in range(len(splits))], splits))
            if splits else None)
  facts = {'attention_type': attention.get('type'),
           'attention_order': attention.get('attention_order'),
           'classifier': m.get('classifier'), 'label_groups': groups,
           'num_frames': dc.get('num_frames'), 'crop_size': dc.get('crop_size')}
  return {k: v for k, v in facts.items() if v is not None}


# ---------------------------------------------------------------------------------
# Building the config.

def _count_blocks(flat: Flat, encoder: str) -> int:
  return len({m.group(1) for k in flat
              if (m := re.match(rf'{encoder}/encoderblock_(\d+)/', k))})


def _block_sizes(flat: Flat, encoder: str) -> tuple[int, int]:
  """(num_heads, mlp_dim) of an encoder's first block."""
  block = f'{encoder}/encoderblock_0/'
  attn = next(k for k in flat if k.startswith(block + 'MultiHeadDotProductAttention')
              and k.endswith('query/kernel'))
  mlp = next(k for k in flat if k.startswith(block + 'MlpBlock') and
             k.endswith('Dense_0/kernel'))
  return int(flat[attn].shape[1]), int(flat[mlp].shape[1])


def scenic_config_and_params(flat: Flat, *, attention_type: Optional[str] = None,
                             num_frames: Optional[int] = None,
                             crop_size: Optional[int] = None,
                             classifier: Optional[str] = None,
                             attention_order: Optional[str] = None,
                             label_groups: Optional[Sequence] = None
                             ) -> tuple[ml_collections.ConfigDict, Flat]:
  """This project's config and flat params for a Scenic ViViT params tree.

  classifier: Scenic's `model.classifier` where the arrays cannot say it: a model
  without CLS tokens pools with 'gap' (default), 'gmp' or 'gsp'. label_groups: Scenic's
  multi-head `class_splits` with their `split_names`, ((name, size), ...), whose sizes
  must add up to the output projection's width."""
  kernel = flat.get('embedding/kernel')
  if kernel is None:
    raise ConversionError('The Scenic checkpoint has no embedding/kernel: not a ViViT '
                          f'model (top-level keys {sorted({k.split("/")[0] for k in flat})}).')
  tubelet = kernel.shape[0] if kernel.ndim == 5 else None
  ph, pw, _, hidden = kernel.shape[-4:]
  if 'SpatialTransformer/posembed_input/pos_embedding' in flat:
    kind = 'factorised_encoder'
  elif any('/MultiHeadDotProductAttention_space/' in k for k in flat):
    kind = 'factorised_self_attention'
  else:
    kind = ATTENTION_TYPES.get(attention_type, attention_type) or 'spatio_temporal'
    if kind not in ('spatio_temporal', 'factorised_dot_product'):
      raise ConversionError(f'attention_type={attention_type!r} does not match the '
                            'checkpoint (blocks shaped like Model 1 / Model 4).')
  if classifier is not None and classifier not in ('token', '0', 'gap', 'gmp', 'gsp'):
    raise ConversionError(f"Scenic classifier={classifier!r} is invalid: expected one of "
                          "'token', 'gap', 'gmp', 'gsp'.")

  config = base_config()
  config.experiment_name = 'scenic_vivit'
  m, d = config.model, config.dataset
  m.name, m.attention_type = 'vivit', kind
  m.embedding = 'tubelet' if tubelet else 'uniform_frame'
  m.temporal_patch_size = int(tubelet or 1)
  m.patch_size = (int(ph), int(pw))
  m.hidden_size = int(hidden)
  m.gelu_approximate, m.layer_norm_epsilon = True, 1e-6
  m.representation_size = (int(flat['pre_logits/kernel'].shape[1])
                           if 'pre_logits/kernel' in flat else None)
  d.num_classes = int(flat['output_projection/kernel'].shape[1])
  if label_groups:
    d.label_groups = tuple((str(name), int(size)) for name, size in label_groups)
    if sum(size for _, size in d.label_groups) != d.num_classes:
      raise ConversionError(f'label_groups={d.label_groups} add up to '
                            f'{sum(size for _, size in d.label_groups)} classes, but the '
                            f'output projection has {d.num_classes}.')
  d.mean_rgb, d.std_rgb = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)
  t = m.temporal_patch_size

  if kind == 'factorised_encoder':
    enc = 'SpatialTransformer'
    has_cls = 'cls_SpatialTransformer' in flat
    m.classifier = m.spatial_classifier = 'token' if has_cls else 'gap'
    n = flat[f'{enc}/posembed_input/pos_embedding'].shape[1] - has_cls
    side = square_side(n, 'Scenic SpatialTransformer position embedding')
    m.temporal_num_layers = _count_blocks(flat, 'TemporalTransformer')
    if m.temporal_num_layers:
      temporal_cls = 'cls_TemporalTransformer' in flat
      m.classifier = 'token' if temporal_cls else 'gap'
      nt = flat['TemporalTransformer/posembed_input/pos_embedding'].shape[1] - temporal_cls
      if _block_sizes(flat, 'TemporalTransformer') != _block_sizes(flat, enc):
        raise ConversionError(
            'The Scenic temporal encoder has (heads, mlp_dim) '
            f'{_block_sizes(flat, "TemporalTransformer")} but the spatial one '
            f'{_block_sizes(flat, enc)}: this project\'s Model 2 shares them.')
      frames = nt * t
    elif num_frames is None:
      raise ConversionError('A Model 2 average-pool checkpoint does not say its clip '
                            'length: pass num_frames (or a Scenic config).')
    else:
      frames = num_frames
    crop = side * ph
  else:
    enc = 'Transformer'
    has_cls = 'cls' in flat
    m.classifier = 'token' if has_cls else 'gap'
    n = flat[f'{enc}/posembed_input/pos_embedding'].shape[1] - has_cls
    if crop_size is not None:
      nt = n // ((crop_size // ph) * (crop_size // pw))
      frames, crop = nt * t, crop_size
    elif num_frames is not None:
      side = square_side(n // (num_frames // t), 'Scenic position embedding per time index')
      frames, crop = num_frames, side * ph
    else:
      raise ConversionError(
          f'The Scenic position embedding holds {n} tokens = n_t x n_h x n_w, which does '
          'not say the clip length and the crop size apart: pass num_frames or crop_size '
          '(init_from.source_num_frames / source_crop_size, or a Scenic config).')
    if frames // t * (crop // ph) * (crop // pw) != n:
      raise ConversionError(f'num_frames={frames}, crop_size={crop} give '
                            f'{frames // t}x{crop // ph}x{crop // pw} tokens, but the '
                            f'position embedding holds {n}.')
  pooled = classifier if classifier in ('gap', 'gmp', 'gsp') else None
  if has_cls and pooled:
    raise ConversionError(f'classifier={classifier!r} does not match the checkpoint, which '
                          "has CLS tokens: expected 'token'.")
  if pooled:          # Scenic pools both of Model 2's encoders the same way.
    m.classifier = pooled
    if kind == 'factorised_encoder':
      m.spatial_classifier = pooled
  m.num_layers = _count_blocks(flat, enc)
  m.num_heads, m.mlp_dim = _block_sizes(flat, enc)
  d.num_frames, d.crop_size = int(frames), int(crop)

  flat = dict(flat)
  if kind == 'factorised_dot_product':   # Scenic: heads [time | space]; ours [space | time].
    for k in list(flat):
      if '/MultiHeadDotProductAttention_0/' in k:
        part = k.split('/')[-2]
        axis = 0 if part == 'out' or k.endswith('bias') else 1
        if part == 'out' and k.endswith('bias'):
          continue
        flat[k] = inflate.swap_head_halves(flat[k], axis)
  if kind == 'factorised_self_attention':
    if attention_order is None:
      attention_order = 'time_space'
      logging.info("scenic: no attention_order given for the Model 3 checkpoint; using "
                   "Scenic's default 'time_space' (temporal attention first).")
    if attention_order not in ATTENTION_ORDERS:
      raise ConversionError(f'Scenic attention_order={attention_order!r} is invalid: '
                            f'expected one of {list(ATTENTION_ORDERS)}.')
    m.attention_order = attention_order
  return config, flat


def load_scenic(path: str, scenic_config=None, *, num_frames: Optional[int] = None,
                crop_size: Optional[int] = None, attention_type: Optional[str] = None,
                attention_order: Optional[str] = None, classifier: Optional[str] = None,
                label_groups: Optional[Sequence] = None
                ) -> tuple[ml_collections.ConfigDict, dict]:
  """(config, params) of a Scenic ViViT checkpoint (module docstring).

  scenic_config: the run's Scenic config (a path to its config file, or a ConfigDict);
  num_frames / crop_size / attention_type ('spacetime', 'factorized_dot_product_attention'
  or this project's names) / attention_order (Model 3: 'time_space' or 'space_time') /
  classifier ('gap', 'gmp', 'gsp' for models without CLS tokens) / label_groups (a
  multi-head model's ((split_name, class_split), ...), e.g. Epic-Kitchens'
  (('noun', 300), ('verb', 97))) override or replace what it says.
  """
  facts = _facts_from_scenic_config(scenic_config)
  given = dict(num_frames=num_frames, crop_size=crop_size, attention_type=attention_type,
               attention_order=attention_order, classifier=classifier,
               label_groups=label_groups)
  facts.update({k: v for k, v in given.items() if v is not None})
  tree = unwrap_params(read_checkpoint(path))
  config, flat = scenic_config_and_params(flatten(tree), **facts)
  logging.info('scenic: %s: ViViT %s, %s, %d layers, width %d, %d frames at %d px, '
               '%d classes.', path, config.model.attention_type, config.model.embedding,
               config.model.num_layers, config.model.hidden_size, config.dataset.num_frames,
               config.dataset.crop_size, config.dataset.num_classes)
  return config, unflatten(flat)
