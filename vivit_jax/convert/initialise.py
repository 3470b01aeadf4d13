"""Initialise a model from another checkpoint: image ViT -> ViViT Models 1-4 or
TimeSformer, or a video checkpoint of the same family and factorisation (e.g. at another
resolution or clip length).

`initialise(params, restored, config, init_config, source_config=...)` maps every target
parameter onto the source:

  embedding        2D kernel -> tubelet kernel by `kernel_init` ('central_frame': the
                   kernel at t // 2, zeros elsewhere; 'average': kernel / t at every t).
  position emb.    the source grid (n_h x n_w, plus n_t for video) -> the target grid:
                   bilinear resize of the spatial grid when it differs, the image's grid
                   repeated over the target's temporal indices (time-major order), CLS
                   position kept.
  cls              `cls` (Model 1), `cls_SpatialTransformer` (Model 2) from the ViT's `cls`.
  encoder blocks   same names for Models 1, 2 (spatial encoder) and 4; Model 3 takes
                   LayerNorm_space / MultiHeadDotProductAttention_space / LayerNorm_mlp /
                   MlpBlock from the ViT's LayerNorm_0 / attention / LayerNorm_1 /
                   MlpBlock_0, and the temporal attention by `temporal_attention_init`:
                   'copy_spatial' (attention and LayerNorm_0 copied) or 'zeros' (fresh
                   query/key/value and LayerNorm, zero output projection, so every block
                   starts as the image model's block applied per frame).
  Model 2          the temporal encoder and its CLS are fresh unless the source is Model 2.
  Model 4          blocks shaped like the ViT's: loaded by name (the paper's init).
  VideoMAE         a masked-pretraining source (models/videomae.py) is a Model 1 without
                   class token: its encoder (`embedding`, `Transformer`) loads into ViViT
                   Models 1/3/4 (a 'token' classifier gets a fresh CLS and CLS position,
                   'gap_fc_norm' a fresh `fc_norm`, the encoder_norm unused as VideoMAE);
                   the decoder is left unused. A VideoMAE target takes its encoder the
                   same way and keeps a fresh decoder when the source has none.
  TimeSformer      see `_initialise_timesformer` (spatial parts by name, temporal
                   attention copied from the spatial one, temporal_fc and time_embed zero).
  head             `pre_logits` / `output_projection` restored when the shapes match
                   (`output_projection` only with `restore_head`), fresh otherwise.

Each target leaf gets an action: 'loaded', 'inflated', 'resized', 'zeroed' or 'fresh'
(kept from `params`); the summary is logged. A parameter that should come from the
source but cannot (missing, or a shape that no rule maps) raises ConversionError naming
it and both shapes.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any, Mapping, Optional

import ml_collections
import numpy as np
from absl import logging

from vivit_jax.convert import huggingface, inflate, scenic, vit_npz
from vivit_jax.convert.common import (ConversionError, Flat, flatten, load_converted,
                                      square_side, token_grid, unflatten, unwrap_params)

FORMATS = ('vit_npz', 'vivit_jax', 'scenic', 'huggingface')
TEMPORAL_ATTENTION_INITS = ('copy_spatial', 'zeros')
ACTIONS = ('loaded', 'inflated', 'resized', 'zeroed', 'fresh')

INIT_DEFAULTS = dict(path=None, format=None, checkpoint=None, kernel_init='central_frame',
                     temporal_attention_init='copy_spatial', restore_head=True,
                     scenic_config=None, source_num_frames=None, source_crop_size=None,
                     source_attention_type=None)

_JOINT = ('spatio_temporal', 'factorised_dot_product')   # blocks shaped like ViT's.
# VideoMAE's decoder (models/videomae.py): dropped from a pretraining source (unused),
# fresh in a VideoMAE target whose source has none (an image ViT, a ViViT Model 1).
_MAE_DECODER = ('decoder_embed', 'mask_token', 'Decoder', 'decoder_pred')
_FSA_FROM_JOINT = {  # Model 3 block <- ViT block (temporal entries by init mode).
    'LayerNorm_space': 'LayerNorm_0',
    'MultiHeadDotProductAttention_space': 'MultiHeadDotProductAttention_0',
    'LayerNorm_time': 'LayerNorm_0',
    'MultiHeadDotProductAttention_time': 'MultiHeadDotProductAttention_0',
    'LayerNorm_mlp': 'LayerNorm_1',
    'MlpBlock': 'MlpBlock_0',
}


@dataclasses.dataclass(frozen=True)
class _Spec:
  """What initialisation needs to know about one side."""
  kind: str                                   # 'image', or a ViViT attention_type.
  encoders: Mapping[str, tuple]               # encoder -> (has_cls, (n_t, n_h, n_w)|None).
  tubelet: Optional[int] = None               # temporal patch size of a 5D embedding.

  @property
  def block(self) -> str:
    return 'fsa' if self.kind == 'factorised_self_attention' else 'joint'


def _spec_from_config(config: ml_collections.ConfigDict) -> _Spec:
  m = config.model
  grid = token_grid(config)
  if m.name == 'vit':
    return _Spec('image', {'Transformer': (m.get('classifier', 'token') == 'token', grid)})
  if m.name == 'videomae':   # its encoder is ViViT Model 1's, without a class token.
    return _Spec('spatio_temporal', {'Transformer': (False, grid)}, m.temporal_patch_size)
  if m.name != 'vivit':
    raise ConversionError(f'config.model.name={m.name!r}: initialisation supports the '
                          "'vit', 'vivit', 'videomae' and 'timesformer' families.")
  tubelet = m.temporal_patch_size if m.embedding == 'tubelet' else None
  if m.attention_type == 'factorised_encoder':
    encoders = {'SpatialTransformer': (m.get('spatial_classifier', 'token') == 'token',
                                       (1,) + grid[1:])}
    if m.temporal_num_layers:
      encoders['TemporalTransformer'] = (m.classifier == 'token', (grid[0], 1, 1))
    return _Spec('factorised_encoder', encoders, tubelet)
  return _Spec(m.attention_type, {'Transformer': (m.classifier == 'token', grid)}, tubelet)


def _posemb_path(encoder):
  return f'{encoder}/posembed_input/pos_embedding'


def _infer_source_spec(source: Flat, target: _Spec, target_flat: Flat) -> _Spec:
  """A best guess at the source's kind and grid when no source config is given."""
  kernel = source.get('embedding/kernel')
  if kernel is None:
    raise ConversionError('The source has no embedding/kernel: not a ViT/ViViT checkpoint.')
  tubelet = kernel.shape[0] if kernel.ndim == 5 else None
  if 'SpatialTransformer/posembed_input/pos_embedding' in source:
    encoders = {}
    for enc, cls_name in (('SpatialTransformer', 'cls_SpatialTransformer'),
                          ('TemporalTransformer', 'cls_TemporalTransformer')):
      if _posemb_path(enc) in source:
        has_cls = cls_name in source
        n = source[_posemb_path(enc)].shape[1] - has_cls
        if enc == 'SpatialTransformer':
          side = square_side(n, 'source SpatialTransformer position embedding')
          grid = (1, side, side)
        else:
          grid = (n, 1, 1)
        encoders[enc] = (has_cls, grid)
    return _Spec('factorised_encoder', encoders, tubelet)
  has_cls = 'cls' in source
  pos = source.get(_posemb_path('Transformer'))
  if pos is None:
    raise ConversionError('The source has no Transformer/posembed_input/pos_embedding.')
  n = pos.shape[1] - has_cls
  if any('_space/' in p for p in source):
    kind = 'factorised_self_attention'
  elif kernel.ndim == 5:
    kind = target.kind if target.kind in _JOINT else 'spatio_temporal'
  else:
    kind = 'image'
    tgt_pos = target_flat.get(_posemb_path('Transformer'))
    if (target.kind in _JOINT and tgt_pos is not None and tgt_pos.shape == pos.shape
        and target.encoders['Transformer'][0] == has_cls):
      kind = target.kind     # a uniform-frame video checkpoint of the same shape.
  if kind == 'image':
    side = square_side(n, 'source position embedding (image ViT)')
    grid = (1, side, side)
  else:
    tgt_has_cls, tgt_grid = next(iter(target.encoders.values()))
    # Without a config only an unchanged grid is known.
    grid = tgt_grid if n == int(np.prod(tgt_grid)) else None
  return _Spec(kind, {'Transformer': (has_cls, grid)}, tubelet)


def _check_pairing(src: _Spec, tgt: _Spec):
  ok = (src.kind == 'image' or src.kind == tgt.kind
        or (src.kind in _JOINT and tgt.kind in _JOINT + ('factorised_self_attention',)))
  if tgt.kind == 'factorised_encoder' and src.kind not in ('image', 'factorised_encoder'):
    ok = False
  if not ok:
    raise ConversionError(
        f'Cannot initialise a {tgt.kind!r} model from a {src.kind!r} checkpoint: use an '
        'image ViT or a checkpoint of the same factorisation (Models 1 and 4 share '
        'their parameter structure).')


def _encoder_source(encoder: str, src: _Spec) -> Optional[str]:
  if encoder == 'TemporalTransformer':
    return encoder if 'TemporalTransformer' in src.encoders else None
  if src.kind == 'factorised_encoder':
    return 'SpatialTransformer' if encoder == 'SpatialTransformer' else None
  return 'Transformer'


def _cls_source(name: str, src: _Spec, source: Flat) -> Optional[str]:
  if name == 'cls_TemporalTransformer':
    candidates = ['cls_TemporalTransformer']
  elif src.kind == 'factorised_encoder':
    candidates = ['cls_SpatialTransformer']
  else:
    candidates = ['cls']
  return next((c for c in candidates if c in source), None)


def _block_source(sub: str, src: _Spec, tgt: _Spec, temporal_init: str):
  """(source sub-module or None, note) for a target block's sub-module `sub`."""
  if src.block == tgt.block:
    return sub, ''
  # Model 3 target from a ViT-shaped block.
  if sub not in _FSA_FROM_JOINT:
    return None, ''
  if sub.endswith('_time') and temporal_init == 'zeros':
    return None, 'zeros'
  return _FSA_FROM_JOINT[sub], ''


def _mismatch(tpath, spath, tshape, sshape, why=''):
  return ConversionError(
      f'Cannot initialise {tpath} {tuple(tshape)} from the source\'s {spath} '
      f'{tuple(sshape)}{": " + why if why else ""}.')


class _Init:
  """The new tree being filled: each target leaf gets a value and an action."""

  def __init__(self, target: Flat, source: Flat):
    self.target, self.source = target, source
    self.out: Flat = {}
    self.summary: list[tuple[str, str]] = []
    self.used: set[str] = set()
    self.notes: dict[str, str] = {}

  def take(self, tpath, spath, value, action='loaded', note=''):
    init = self.target[tpath]
    if value.shape != init.shape:
      raise _mismatch(tpath, spath, init.shape, value.shape)
    self.out[tpath] = np.asarray(value).astype(init.dtype)
    self.summary.append((tpath, action))
    self.used.add(spath)
    self.notes[tpath] = f'{action} from {spath}' + (f' ({note})' if note else '')

  def fresh(self, tpath, action='fresh', note=''):
    init = self.target[tpath]
    self.out[tpath] = np.zeros_like(init) if action == 'zeroed' else np.asarray(init)
    self.summary.append((tpath, action))
    self.notes[tpath] = action + (f' ({note})' if note else '')

  def require(self, tpath, spath):
    if spath not in self.source:
      raise ConversionError(f'Cannot initialise {tpath} {tuple(self.target[tpath].shape)}: '
                            f'the source has no {spath}.')
    return self.source[spath]

  def kernel(self, tpath, kernel_init):
    """The patch embedding kernel: loaded, or a 2D kernel inflated to a tubelet."""
    init, value = self.target[tpath], self.require(tpath, tpath)
    if value.shape == init.shape:
      return self.take(tpath, tpath, value)
    if value.ndim == 4 and init.ndim == 5 and value.shape == init.shape[1:]:
      return self.take(tpath, tpath, inflate.inflate_kernel(value, init.shape[0], kernel_init),
                       'inflated', kernel_init)
    if value.ndim == 5 and init.ndim == 4 and value.shape[0] == 1:
      return self.take(tpath, tpath, value[0], 'loaded', 'one-frame tubelet')
    raise _mismatch(tpath, tpath, init.shape, value.shape,
                    'patch sizes / channels / width must agree (only the temporal extent '
                    'of a 2D kernel is inflated)')

  def head(self, tpath, restore_head):
    """pre_logits / output_projection: restored when present with the same shape."""
    value = self.source.get(tpath)
    if tpath.startswith('output_projection') and not restore_head:
      self.fresh(tpath, note='restore_head=False')
    elif value is None:
      self.fresh(tpath, note='not in the source')
    elif value.shape != self.target[tpath].shape:
      self.fresh(tpath, note=f'source shape {tuple(value.shape)}, e.g. another class count')
    else:
      self.take(tpath, tpath, value)

  def finish(self) -> tuple[dict, list[tuple[str, str]]]:
    for tpath, _ in self.summary:
      logging.info('init_from: %s: %s', tpath, self.notes[tpath])
    unused = sorted(set(self.source) - self.used)
    if unused:
      logging.info('init_from: %d source parameters unused: %s', len(unused),
                   ', '.join(unused[:20]) + (' ...' if len(unused) > 20 else ''))
    counts = {a: sum(1 for _, b in self.summary if b == a) for a in ACTIONS}
    logging.info('init_from: %s', ', '.join(f'{n} {a}' for a, n in counts.items() if n))
    return unflatten(self.out), self.summary


def _init_options(config, init_config) -> dict:
  ic = dict(INIT_DEFAULTS)
  if init_config is None:
    init_config = config.get('init_from')
  if isinstance(init_config, ml_collections.ConfigDict):
    init_config = init_config.to_dict()
  if not isinstance(init_config, Mapping):   # None, or a bare path.
    init_config = {}
  ic.update({k: v for k, v in init_config.items() if v is not None})
  if ic['kernel_init'] not in inflate.KERNEL_INITS:
    raise ConversionError(f"init_from.kernel_init={ic['kernel_init']!r} is invalid: "
                          f'expected one of {inflate.KERNEL_INITS}.')
  if ic['temporal_attention_init'] not in TEMPORAL_ATTENTION_INITS:
    raise ConversionError(
        f"init_from.temporal_attention_init={ic['temporal_attention_init']!r} is invalid: "
        f'expected one of {TEMPORAL_ATTENTION_INITS}.')
  return ic


def initialise(params: Mapping[str, Any], restored: Mapping[str, Any],
               config: ml_collections.ConfigDict,
               init_config: Optional[Mapping[str, Any]] = None, *,
               source_config: Optional[ml_collections.ConfigDict] = None
               ) -> tuple[dict, list[tuple[str, str]]]:
  """Initialises `params` (the target model's fresh tree) from `restored`.

  Args:
    params: freshly initialised params of `create_model(config.model, num_classes)`.
    restored: the source params (an image ViT, or a video checkpoint), optionally inside a
      train state ({'params': ...}, {'optimizer': {'target': ...}}).
    config: the target's full ConfigDict (model and dataset: the token grid comes from
      dataset.num_frames / crop_size).
    init_config: `config.init_from`-like mapping: kernel_init ('central_frame' |
      'average'), temporal_attention_init ('copy_spatial' | 'zeros', Model 3 and
      TimeSformer), restore_head (bool). Defaults: INIT_DEFAULTS; None means
      `config.init_from`.
    source_config: the source's full ConfigDict (as the loaders return it). Without it the
      source's kind and grid are inferred from shapes (image ViT: square grid).

  Returns:
    (params, summary): the new tree (numpy arrays of the target's dtypes) and
    [(param path, action)] with actions in ACTIONS.
  """
  ic = _init_options(config, init_config)
  target = flatten(params)
  source = flatten(unwrap_params(restored))
  if config.model.name == 'timesformer':
    return _initialise_timesformer(target, source, config, ic, source_config)
  tgt = _spec_from_config(config)
  src = (_spec_from_config(source_config) if source_config is not None
         else _infer_source_spec(source, tgt, target))
  _check_pairing(src, tgt)
  st = _Init(target, source)

  for tpath, init in target.items():
    parts = tpath.split('/')
    head = parts[0]
    if tpath == 'embedding/kernel':
      st.kernel(tpath, ic['kernel_init'])
    elif head in ('cls', 'cls_SpatialTransformer', 'cls_TemporalTransformer'):
      spath = _cls_source(head, src, source)
      if spath is None:
        st.fresh(tpath, note='the source has no class token')
      else:
        st.take(tpath, spath, source[spath])
    elif head in ('pre_logits', 'output_projection'):
      st.head(tpath, ic['restore_head'])
    elif head in _MAE_DECODER and tpath not in source:
      st.fresh(tpath, note='masked-pretraining decoder not in the source')
    elif head == 'fc_norm' and tpath not in source:   # as VideoMAE's fine-tuning.
      st.fresh(tpath, note="'gap_fc_norm' head: a fresh LayerNorm after pooling")
    elif head in ('Transformer', 'SpatialTransformer', 'TemporalTransformer'):
      senc = _encoder_source(head, src)
      if senc is None:
        st.fresh(tpath, note='not in the source')
        continue
      rest = parts[1:]
      if rest[0] == 'posembed_input':
        spath = _posemb_path(senc)
        value = st.require(tpath, spath)
        tgt_cls, tgt_grid = tgt.encoders[head]
        src_cls, src_grid = src.encoders[senc]
        if value.shape == init.shape and (src_grid is None or src_grid == tgt_grid) and (
            src_cls == tgt_cls):
          st.take(tpath, spath, value)
          continue
        if src_grid is None:
          raise _mismatch(tpath, spath, init.shape, value.shape,
                          'the source grid is unknown: pass source_config')
        try:
          value, action = inflate.adapt_posemb(value, src_grid, tgt_grid, src_cls=src_cls,
                                               tgt_cls=tgt_cls, tgt_init=init)
        except ValueError as e:
          raise _mismatch(tpath, spath, init.shape, value.shape, str(e)) from None
        st.take(tpath, spath, value, action,
                f'grid {src_grid} -> {tgt_grid}, cls {src_cls} -> {tgt_cls}')
      elif rest[0].startswith('encoderblock_'):
        sub, note = _block_source(rest[1], src, tgt, ic['temporal_attention_init'])
        if sub is None:
          if note == 'zeros' and rest[1].startswith('MultiHeadDotProductAttention') and (
              rest[2] == 'out'):
            st.fresh(tpath, 'zeroed', 'temporal_attention_init=zeros')
          else:
            st.fresh(tpath, note='temporal_attention_init=zeros' if note else
                     'no counterpart in the source')
          continue
        spath = '/'.join([senc, rest[0], sub] + rest[2:])
        st.take(tpath, spath, st.require(tpath, spath))
      else:
        spath = '/'.join([senc] + rest)
        st.take(tpath, spath, st.require(tpath, spath))
    else:
      st.take(tpath, tpath, st.require(tpath, tpath))
  return st.finish()


# ---------------------------------------------------------------------------------
# TimeSformer.

def _timesformer_names(source: Flat) -> Flat:
  """An image ViT tree renamed to TimeSformer's flat names (a TimeSformer tree as is)."""
  out = {}
  for path, value in source.items():
    if path == 'Transformer/posembed_input/pos_embedding':
      path = 'pos_embed'
    elif path.startswith('Transformer/'):
      path = path[len('Transformer/'):]
    out[path] = value
  return out


def _spatial_grid(config, source: Flat) -> tuple[bool, tuple]:
  """(has CLS position, (1, n_h, n_w)) of a source's spatial position embedding."""
  pos = source['pos_embed']
  if config is not None and config.model.name in ('vit', 'timesformer'):
    has_cls = config.model.name == 'timesformer' or config.model.get(
        'classifier', 'token') == 'token'
    _, gh, gw = token_grid(config) if config.model.name == 'vit' else (
        1, *(config.dataset.crop_size // p for p in config.model.patch_size))
    return has_cls, (1, gh, gw)
  if config is not None:
    raise ConversionError(f'Cannot initialise a TimeSformer from a {config.model.name!r} '
                          "model: use an image ViT or a TimeSformer checkpoint.")
  has_cls = 'cls' in source
  side = square_side(pos.shape[1] - has_cls, 'source position embedding')
  return has_cls, (1, side, side)


def _initialise_timesformer(target: Flat, source: Flat, config, ic, source_config):
  """TimeSformer from an image ViT (the paper's ImageNet initialisation, as the original
  code does it) or from another TimeSformer:
    pos_embed      the ViT's position embedding, spatial grid resized bilinearly;
    time_embed     zeros (the original's init), or the source's resized linearly in time;
    LayerNorm_time / MultiHeadDotProductAttention_time   copied from the block's spatial
                   LayerNorm_0 / attention ('copy_spatial', the original's
                   load_pretrained) or fresh with a zero output ('zeros');
    temporal_fc    zeros (so every block starts as the image block applied per frame);
  everything else by name (blocks, encoder_norm, embedding, cls, head rules as ViViT's).
  """
  if 'embedding/kernel' not in source:
    raise ConversionError('The source has no embedding/kernel: not a ViT/TimeSformer '
                          'checkpoint.')
  source = _timesformer_names(source)
  if 'pos_embed' not in source:
    raise ConversionError('The source has no position embedding '
                          '(Transformer/posembed_input/pos_embedding or pos_embed).')
  st = _Init(target, source)
  gh, gw = (config.dataset.crop_size // p for p in config.model.patch_size)
  for tpath, init in target.items():
    parts = tpath.split('/')
    if tpath == 'embedding/kernel':
      st.kernel(tpath, ic['kernel_init'])
    elif parts[0] in ('pre_logits', 'output_projection'):
      st.head(tpath, ic['restore_head'])
    elif tpath == 'pos_embed':
      value = source['pos_embed']
      src_cls, src_grid = _spatial_grid(source_config, source)
      if value.shape == init.shape and src_cls:
        st.take(tpath, tpath, value)
        continue
      try:
        value, action = inflate.adapt_posemb(value, src_grid, (1, gh, gw), src_cls=src_cls,
                                             tgt_cls=True, tgt_init=init)
      except ValueError as e:
        raise _mismatch(tpath, tpath, init.shape, value.shape, str(e)) from None
      st.take(tpath, tpath, value, action, f'grid {src_grid[1:]} -> {(gh, gw)}')
    elif tpath == 'time_embed':
      value = source.get(tpath)
      if value is None:
        st.fresh(tpath, 'zeroed', 'the source has no temporal embedding')
      elif value.shape == init.shape:
        st.take(tpath, tpath, value)
      else:
        grid = inflate.resize_grid(value[0][:, None, None], (init.shape[1], 1, 1))
        st.take(tpath, tpath, grid.reshape(init.shape), 'resized',
                f'{value.shape[1]} -> {init.shape[1]} frames')
    elif len(parts) > 2 and parts[1] == 'temporal_fc':
      if tpath in source:
        st.take(tpath, tpath, source[tpath])
      else:
        st.fresh(tpath, 'zeroed', 'temporal_fc starts at zero')
    elif len(parts) > 2 and parts[1] in ('LayerNorm_time', 'MultiHeadDotProductAttention_time'):
      if tpath in source:
        st.take(tpath, tpath, source[tpath])
      elif ic['temporal_attention_init'] == 'zeros':
        zero = parts[1].startswith('Multi') and parts[2] == 'out'
        st.fresh(tpath, 'zeroed' if zero else 'fresh', 'temporal_attention_init=zeros')
      else:
        spatial = parts[1].replace('_time', '_0')
        spath = '/'.join([parts[0], spatial] + parts[2:])
        st.take(tpath, spath, st.require(tpath, spath), 'loaded', 'copy_spatial')
    elif parts[0] == 'cls' and 'cls' not in source:
      st.fresh(tpath, note='the source has no class token')
    else:
      st.take(tpath, tpath, st.require(tpath, tpath))
  return st.finish()


# ---------------------------------------------------------------------------------
# From config.init_from.

def init_config(value) -> ml_collections.ConfigDict:
  """`config.init_from` (a path string, a mapping or None) with INIT_DEFAULTS filled in."""
  if value is None or isinstance(value, str):
    value = {'path': value}
  ic = dict(INIT_DEFAULTS)
  ic.update({k: v for k, v in dict(value).items()})
  return ml_collections.ConfigDict(ic)


def detect_format(path: str) -> str:
  """Guesses the checkpoint format of `path` (see FORMATS)."""
  if os.path.isfile(path) and path.endswith('.npz'):
    return 'vit_npz'
  if os.path.isdir(path) and os.path.exists(os.path.join(path, 'config.json')):
    if any(os.path.exists(os.path.join(path, f)) for f in
           ('model.safetensors', 'model.safetensors.index.json', 'pytorch_model.bin')):
      return 'huggingface'
    return 'vivit_jax'
  if not os.path.exists(path):
    raise FileNotFoundError(f'config.init_from.path={path!r} does not exist.')
  return 'scenic'


def load_source(ic: Mapping[str, Any]) -> tuple[ml_collections.ConfigDict, dict]:
  """(source config, source params) named by an init config (see `init_config`)."""
  path = ic['path']
  fmt = ic.get('format') or detect_format(path)
  if fmt == 'vit_npz':
    return vit_npz.load_vit_npz(path)
  if fmt == 'huggingface':
    return huggingface.load_huggingface(path)
  if fmt == 'vivit_jax':
    return load_converted(path, ic.get('checkpoint'))
  if fmt == 'scenic':
    return scenic.load_scenic(path, ic.get('scenic_config'), num_frames=ic.get('source_num_frames'),
                       crop_size=ic.get('source_crop_size'),
                       attention_type=ic.get('source_attention_type'))
  raise ConversionError(f'config.init_from.format={fmt!r} is invalid: expected one of '
                        f'{FORMATS}.')


def init_from(config: ml_collections.ConfigDict, params: Mapping[str, Any]) -> dict:
  """The trainer's hook: `params` initialised from the checkpoint `config.init_from`
  names (see vivit_jax.config.init_from_config for its fields); `params` unchanged when
  `config.init_from.path` is None.
  """
  ic = init_config(config.get('init_from'))
  if not ic.path:
    return params
  source_config, restored = load_source(ic)
  m = source_config.model
  logging.info('init_from: %s (%s, %s %s)', ic.path, ic.get('format') or
               detect_format(ic.path), m.name,
               '' if m.name == 'vit' else m.get('attention_type', ''))
  new_params, _ = initialise(params, restored, config, ic, source_config=source_config)
  return new_params
