"""Image ViT checkpoints as .npz: google-research/vision_transformer and big_vision.

vision_transformer (the ViT paper's and AugReg's files) stores flat keys:
  embedding/{kernel [ph, pw, C, D], bias}, cls [1, 1, D],
  Transformer/posembed_input/pos_embedding [1, (1+) N, D]  (CLS position first),
  Transformer/encoderblock_i/{LayerNorm_0, MultiHeadDotProductAttention_1, LayerNorm_2,
      MlpBlock_3/Dense_{0,1}}, Transformer/encoder_norm, pre_logits (in21k), head.
big_vision checkpoints use `params/` prefixes (next to optimizer state under `opt/`),
block names LayerNorm_0, MultiHeadDotProductAttention_0, LayerNorm_1, MlpBlock_0, a
top-level `pos_embedding` [1, N, D] added *before* the CLS token is prepended (so the CLS
token has no position embedding), and `Transformer/encoderblock/...` stacked over layers
in `scan` checkpoints.

Both become this project's ViT tree (`create_model` with model.name='vit'): blocks
renamed to LayerNorm_0 / MultiHeadDotProductAttention_0 / LayerNorm_1 / MlpBlock_0,
`head` -> `output_projection`, and a big_vision position embedding gets a zero CLS
position (the same function). Both codebases use flax's default GELU (tanh
approximation) and LayerNorm epsilon 1e-6, and feed pixels in [-1, 1].
"""
from __future__ import annotations

import re

import ml_collections
import numpy as np
from absl import logging

from vivit_jax.convert.common import (ConversionError, Flat, base_config, square_side,
                                      unflatten)

_VIT_BLOCK = {'LayerNorm_0': 'LayerNorm_0', 'MultiHeadDotProductAttention_1':
              'MultiHeadDotProductAttention_0', 'LayerNorm_2': 'LayerNorm_1',
              'MlpBlock_3': 'MlpBlock_0'}
_BV_BLOCK = {'LayerNorm_0': 'LayerNorm_0', 'MultiHeadDotProductAttention_0':
             'MultiHeadDotProductAttention_0', 'LayerNorm_1': 'LayerNorm_1',
             'MlpBlock_0': 'MlpBlock_0'}
_KNOWN_TOP = ('embedding', 'cls', 'Transformer', 'pos_embedding', 'pre_logits', 'head',
              'MAPHead_0')


def _select_params(flat: Flat) -> Flat:
  """The params among the npz keys (optimizer state and step counters dropped)."""
  for prefix in ('params/', 'opt/target/', 'optimizer/target/'):
    selected = {k[len(prefix):]: v for k, v in flat.items() if k.startswith(prefix)}
    if selected:
      dropped = len(flat) - len(selected)
      if dropped:
        logging.info('vit_npz: using the %d arrays under %r, ignoring %d others '
                     '(optimizer state, ...).', len(selected), prefix, dropped)
      return selected
  return dict(flat)


def _unstack_scan(flat: Flat) -> Flat:
  """big_vision `scan` checkpoints: Transformer/encoderblock/... [L, ...] -> per layer."""
  stacked = {k: v for k, v in flat.items() if k.startswith('Transformer/encoderblock/')}
  if not stacked:
    return flat
  out = {k: v for k, v in flat.items() if k not in stacked}
  for k, v in stacked.items():
    rest = k[len('Transformer/encoderblock/'):]
    for i in range(v.shape[0]):
      out[f'Transformer/encoderblock_{i}/{rest}'] = v[i]
  return out


def vit_params_from_npz(flat: Flat) -> tuple[Flat, dict]:
  """Renames a ViT npz's arrays to this project's ViT tree.

  Returns (flat params, facts) with facts {'cls_posemb': bool (position embedding had a
  CLS row), 'map_head': bool}.
  """
  flat = _unstack_scan(_select_params(flat))
  unknown = sorted({k.split('/')[0] for k in flat} - set(_KNOWN_TOP))
  if unknown:
    raise ConversionError(f'vit_npz: unsupported parameters {unknown} (hybrid ResNet '
                          'stems and other variants are not ViT models this project builds).')
  out: Flat = {}
  facts = {'cls_posemb': True, 'map_head': False}
  for key, value in flat.items():
    parts = key.split('/')
    if parts[0] == 'MAPHead_0':
      facts['map_head'] = True
      continue
    if parts[0] == 'head':
      parts[0] = 'output_projection'
    elif parts[0] == 'pos_embedding' or parts[:2] == ['Transformer', 'pos_embedding']:
      parts = ['Transformer', 'posembed_input', 'pos_embedding']
      facts['cls_posemb'] = False   # big_vision: added before the CLS token.
    elif parts[0] == 'Transformer' and re.fullmatch(r'encoderblock_\d+', parts[1]):
      names = _VIT_BLOCK if parts[2] in ('MultiHeadDotProductAttention_1', 'LayerNorm_2',
                                         'MlpBlock_3') else _BV_BLOCK
      if parts[2] not in names:
        raise ConversionError(f'vit_npz: unexpected block parameter {key}.')
      parts[2] = names[parts[2]]
    out['/'.join(parts)] = value
  if facts['map_head']:
    logging.warning('vit_npz: the checkpoint pools with a MAP head, which this project '
                    'does not build: the MAP head and the classifier are dropped and the '
                    "model uses classifier='gap' (fine for init_from, not for evaluation).")
    out = {k: v for k, v in out.items() if not k.startswith('output_projection/')}
  return out, facts


def load_vit_npz(path: str) -> tuple[ml_collections.ConfigDict, dict]:
  """(config, params) of a vision_transformer / big_vision ViT .npz (module docstring).

  The config is `default_config()` with model.name='vit' and the sizes read from the
  arrays (hidden size, layers, heads, MLP width, patch size, token vs GAP classifier,
  pre-logits), dataset.crop_size from the (square) position-embedding grid,
  dataset.num_classes from the head. Arrays are read with allow_pickle=False.
  """
  with np.load(path, allow_pickle=False) as npz:
    flat = {k: npz[k] for k in npz.files}
  params, facts = vit_params_from_npz(flat)
  for required in ('embedding/kernel', 'Transformer/posembed_input/pos_embedding'):
    if required not in params:
      raise ConversionError(f'vit_npz: {path} has no {required} (a sin-cos position '
                            'embedding or a non-ViT checkpoint is not supported).')
  kernel = params['embedding/kernel']
  if kernel.ndim != 4:
    raise ConversionError(f'vit_npz: embedding/kernel {kernel.shape} is not a 2D patch '
                          'kernel [ph, pw, C, D].')
  ph, pw, _, hidden = kernel.shape
  if ph != pw:
    raise ConversionError(f'vit_npz: non-square patches {(ph, pw)} are not supported.')
  has_cls = 'cls' in params
  layers = sorted({int(m.group(1)) for k in params
                   if (m := re.match(r'Transformer/encoderblock_(\d+)/', k))})
  if layers != list(range(len(layers))) or not layers:
    raise ConversionError(f'vit_npz: encoder blocks {layers} are not 0..L-1.')
  block = 'Transformer/encoderblock_0/'
  heads = params[block + 'MultiHeadDotProductAttention_0/query/kernel'].shape[1]
  mlp_dim = params[block + 'MlpBlock_0/Dense_0/kernel'].shape[1]

  pos = params['Transformer/posembed_input/pos_embedding']
  if has_cls and not facts['cls_posemb']:
    # big_vision: the posemb covers patches only; old big_vision files combined it with
    # the CLS position (N = side^2 + 1), which is already our layout.
    n = pos.shape[1]
    if square_side_or_none(n) is not None:
      pos = np.concatenate([np.zeros_like(pos[:, :1]), pos], axis=1)
      params['Transformer/posembed_input/pos_embedding'] = pos
  side = square_side(pos.shape[1] - has_cls, f'vit_npz: position embedding {pos.shape}')

  config = base_config()
  m, d = config.model, config.dataset
  m.name = 'vit'
  m.patch_size = (int(ph), int(pw))
  m.hidden_size, m.num_layers, m.num_heads, m.mlp_dim = (int(hidden), len(layers),
                                                          int(heads), int(mlp_dim))
  m.classifier = 'token' if has_cls else 'gap'
  m.representation_size = (int(params['pre_logits/kernel'].shape[1])
                           if 'pre_logits/kernel' in params else None)
  m.gelu_approximate = True       # flax nn.gelu (tanh approximation) in both codebases.
  m.layer_norm_epsilon = 1e-6
  d.num_frames = 1
  d.crop_size = int(side * ph)
  d.mean_rgb, d.std_rgb = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)   # pixels in [-1, 1].
  if 'output_projection/kernel' in params:
    d.num_classes = int(params['output_projection/kernel'].shape[1])
  else:
    width = m.representation_size or m.hidden_size
    params['output_projection/kernel'] = np.zeros((width, d.num_classes), np.float32)
    params['output_projection/bias'] = np.zeros((d.num_classes,), np.float32)
    logging.warning('vit_npz: %s has no classifier head: a zero head with %d classes is '
                    'added.', path, d.num_classes)
  logging.info('vit_npz: %s: ViT %dx%d, width %d, %d layers, %d heads, %s, %d px, '
               '%d classes.', path, ph, pw, hidden, len(layers), heads, m.classifier,
               d.crop_size, d.num_classes)
  return config, unflatten(params)


def square_side_or_none(n: int):
  side = int(round(n ** 0.5))
  return side if side * side == n else None
