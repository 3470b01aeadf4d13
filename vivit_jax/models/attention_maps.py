"""Attention weights of any model on request, and attention rollout back to the pixels.

`attention_maps(model, params, video)` runs the model once with the `ATTENTION_WEIGHTS`
collection mutable (models/layers.py): every attention call takes the explicit path and
records its softmax probabilities. The default `model.apply` is untouched (the fast
kernels still run and build no weights).

`rollout(model_config, maps, video_shape)` is attention rollout (Abnar & Zuidema 2020):
per attention layer the heads' mean A, plus the identity for the residual, rows
renormalised ((A + I) / 2), multiplied through the layers; read from the prediction's
token back to the input tokens. It propagates the readout row vector backwards through
the layers (never a [L, L] product), in float64 numpy. The readout is the CLS token for
'token' classifiers and the uniform mean over the tokens for the pooled ones ('gap'; also
used for 'gmp' / 'gsp', which it approximates). Per family:

  vit, vivit Model 1, timesformer joint_space_time: plain rollout over all tokens.
  vivit Model 3 (factorised self-attention): spatial sub-layers act within each frame,
      temporal ones across frames at one position; both are rolled out, in block order.
  vivit Model 4 (factorised dot-product): each layer's mean over heads is half the
      spatial heads' mean (within a frame) plus half the temporal heads' (across frames).
  timesformer divided_space_time: temporal attention over patches (CLS untouched), then
      spatial attention per frame with CLS, CLS's per-frame outputs averaged.
  timesformer space_only: per-frame rollout from each frame's CLS, frames averaged.
  vivit Model 2 (factorised encoder) and vtn: the temporal encoder's rollout from its CLS
      gives a weight per frame index; each index's spatial encoder is rolled out from its
      readout; the map is their product.
  mvit: pooling attention maps output (query-grid) tokens to pooled keys; a pooled key
      (or a max-pooled skip token) spreads its mass uniformly over the input tokens in
      its pooling window (kernel, stride, padding kernel // 2), so the product reaches
      the stem's token grid. Residual pooling (v2) is not modelled.
  video_swin: window attention is rolled out exactly (roll by the shift, windows,
      roll back; the padding's share is dropped); patch merging spreads a merged
      token's mass over its 2x2 source tokens. This is a global rollout through all
      stages (products of windowed maps mix across windows).
For the factorised models (2, 3, 4, divided TimeSformer, VTN) `Rollout.spatial` is the
rollout through the spatial attention alone (temporal sub-layers taken as identity;
Model 2 / VTN: the spatial encoders) and `Rollout.temporal` the mass per temporal
index of the rollout through the temporal attention alone (spatial sub-layers as
identity, read out from the mean of the patch tokens for TimeSformer, whose CLS only
reads through spatial attention; Model 2 / VTN: the temporal encoder's).

Token maps go to pixels with `to_pixels`: each token's mass spread evenly over the
pixels of its footprint (tubelet / patch; for MViT's overlapping stem, its stride).
"""
from __future__ import annotations

import math
from typing import NamedTuple, Optional

import flax
import numpy as np

from vivit_jax.models import mvit as mvit_lib
from vivit_jax.models import video_swin as swin_lib
from vivit_jax.models.layers import ATTENTION_WEIGHTS


def attention_maps(model, params, video, *, train: bool = False):
  """(logits, maps): the model's output and its attention weights.

  video: float32[B, T, H, W, C] (images [B, H, W, C] for 'vit'). maps: {module path
  ('Transformer/encoderblock_0/MultiHeadDotProductAttention_0'): tuple of
  float32[B', heads', Lq, Lk] softmax probabilities, one per attention call of that
  module in call order} (B' and heads' follow the module's layout: see
  layers.MultiHeadAttention). The logits equal `model.apply`'s up to float32 rounding
  (the weights come from the explicit attention path).
  """
  logits, state = model.apply({'params': params}, video, train=train,
                              mutable=[ATTENTION_WEIGHTS])
  flat = flax.traverse_util.flatten_dict(
      flax.core.unfreeze(state.get(ATTENTION_WEIGHTS, {})), sep='/')
  maps = {path[:-len('/weights')]: tuple(w) for path, w in flat.items()}
  return logits, maps


class Rollout(NamedTuple):
  """Attention rollout of a batch onto its input token grid (t, h, w), rows summing to 1.

  tokens: float[B, t, h, w]; spatial: float[B, t, h, w] or None (each frame index's map,
  summing to 1 per index); temporal: float[B, t] or None (see the module docstring);
  footprint: (frames, rows, cols) of video pixels one token stands for.
  """
  tokens: np.ndarray
  spatial: Optional[np.ndarray]
  temporal: Optional[np.ndarray]
  footprint: tuple


# ---------------------------------------------------------------------------------
# Building blocks: v is the readout row vector over a layer's output tokens.

def _mean_heads(weights):
  return np.asarray(weights, np.float64).mean(axis=1)   # [B', Lq, Lk]


def _mix(v, weights):
  """v: [B', Lq] through attention weights [B', H, Lq, Lk] (heads averaged) -> [B', Lk]."""
  return np.einsum('bq,bqk->bk', v, _mean_heads(weights))


def _joint_layers(v, layers):
  """Rollout of v [B', L] back through joint attention layers (forward order)."""
  for weights in reversed(layers):
    v = 0.5 * (v + _mix(v, weights))
  return v


def _readout(batch: int, length: int, cls: bool) -> np.ndarray:
  """float[B', L]: one-hot on token 0 (CLS), or uniform over the L tokens."""
  if cls:
    v = np.zeros((batch, length))
    v[:, 0] = 1.0
    return v
  return np.full((batch, length), 1.0 / length)


def _normalise(x, axes):
  return x / np.maximum(x.sum(axis=axes, keepdims=True), 1e-30)


def _layers(maps, prefix: str, count: int, name: str = 'MultiHeadDotProductAttention_0',
            call: int = 0):
  return [maps[f'{prefix}encoderblock_{i}/{name}'][call] for i in range(count)]


def _count(maps, prefix: str) -> int:
  return len({p.split('/')[len(prefix.split('/')) - 1] for p in maps
              if p.startswith(prefix + 'encoderblock_')})


def _space(v, weights):
  """v: [B, T, S] through within-frame weights [B*T, H, S, S] -> [B, T, S]."""
  b, t, s = v.shape
  return _mix(v.reshape(b * t, s), weights).reshape(b, t, s)


def _time(v, weights):
  """v: [B, T, S] through across-frame weights [B*S, H, T, T] -> [B, T, S]."""
  b, t, s = v.shape
  u = _mix(v.transpose(0, 2, 1).reshape(b * s, t), weights)
  return u.reshape(b, s, t).transpose(0, 2, 1)


# ---------------------------------------------------------------------------------
# Families.

def _grid(m, video_shape):
  """(token grid (t, h, w), footprint) of the patch / tubelet embedding."""
  t, h, w = video_shape[1:4]
  ph, pw = m.patch_size
  pt = m.get('temporal_patch_size', 1) if m.get('embedding', 'tubelet') == 'tubelet' else 1
  if m.name in ('timesformer', 'vtn', 'vit'):
    pt = 1
  return (t // pt, h // ph, w // pw), (pt, ph, pw)


def _encoder_rollout(maps, prefix, batch, cls):
  """Joint-encoder rollout: [B', L] over the encoder's input tokens (CLS included)."""
  layers = _layers(maps, prefix, _count(maps, prefix))
  return _joint_layers(_readout(batch, layers[0].shape[-1], cls), layers)


def _vit(m, maps, video_shape):
  (t, h, w), fp = _grid(m, video_shape)
  cls = m.get('classifier', 'token') == 'token'
  v = _encoder_rollout(maps, 'Transformer/', video_shape[0], cls)[:, int(cls):]
  return Rollout(_normalise(v.reshape(-1, t, h, w), (1, 2, 3)), None, None, fp)


def _two_level(spatial_v, temporal_v, grid, fp):
  """Model 2 / VTN: per-index spatial maps [B*T, S] and temporal weights [B, T]."""
  t, h, w = grid
  spatial = _normalise(spatial_v.reshape(-1, t, h, w), (2, 3))
  temporal = _normalise(temporal_v, (1,))
  return Rollout(spatial * temporal[:, :, None, None], spatial, temporal, fp)


def _vivit_model2(m, maps, video_shape):
  grid, fp = _grid(m, video_shape)
  b, t = video_shape[0], grid[0]
  s_cls = m.get('spatial_classifier', 'token') == 'token'
  spatial = _encoder_rollout(maps, 'SpatialTransformer/', b * t, s_cls)[:, int(s_cls):]
  if m.temporal_num_layers == 0:
    temporal = np.full((b, t), 1.0 / t)
  else:
    t_cls = m.classifier == 'token'
    temporal = _encoder_rollout(maps, 'TemporalTransformer/', b, t_cls)[:, int(t_cls):]
  return _two_level(spatial, temporal, grid, fp)


def _vtn(m, maps, video_shape):
  grid, fp = _grid(m, video_shape)
  b, t = video_shape[0], grid[0]
  s_cls = m.get('classifier', 'token') == 'token'
  spatial = _encoder_rollout(maps, 'backbone/Transformer/', b * t, s_cls)[:, int(s_cls):]
  temporal = _encoder_rollout(maps, 'TemporalTransformer/', b, True)[:, 1:]
  return _two_level(spatial, temporal, grid, fp)


def _factorised(steps, v, kinds):
  """Rollout of v [B, T, S] back through `steps` (forward order): each step is a list of
  (kind, share, fn) whose shares sum to 1; kinds outside `kinds` are left out (their
  shares renormalised; a step with none left is the identity)."""
  for step in reversed(steps):
    parts = [(share, fn) for kind, share, fn in step if kind in kinds]
    total = sum(share for share, _ in parts)
    if total:
      v = 0.5 * (v + sum(share / total * fn(v) for share, fn in parts))
  return v


def _vivit_factorised(m, maps, video_shape):
  """Models 3 and 4 (no CLS: mean readout)."""
  (t, h, w), fp = _grid(m, video_shape)
  b, prefix = video_shape[0], 'Transformer/'
  steps = []
  for i in range(m.num_layers):
    block = f'{prefix}encoderblock_{i}/'
    if m.attention_type == 'factorised_self_attention':
      order = m.get('attention_order', 'space_time').split('_')
      for name in order:
        weights = maps[f'{block}MultiHeadDotProductAttention_{name}'][0]
        fn = _space if name == 'space' else _time
        steps.append([(name, 1.0, lambda v, fn=fn, a=weights: fn(v, a))])
    else:
      spatial, temporal = maps[f'{block}MultiHeadDotProductAttention_0']
      steps.append([('space', 0.5, lambda v, a=spatial: _space(v, a)),
                    ('time', 0.5, lambda v, a=temporal: _time(v, a))])
  v0 = np.full((b, t, h * w), 1.0 / (t * h * w))
  tokens = _factorised(steps, v0, {'space', 'time'})
  spatial = _factorised(steps, v0, {'space'})
  temporal = _factorised(steps, v0, {'time'}).sum(-1)
  shape = (b, t, h, w)
  return Rollout(_normalise(tokens.reshape(shape), (1, 2, 3)),
                 _normalise(spatial.reshape(shape), (2, 3)),
                 _normalise(temporal, (1,)), fp)


def _timesformer(m, maps, video_shape):
  (t, h, w), fp = _grid(m, video_shape)
  b, s = video_shape[0], h * w
  if m.attention_type == 'joint_space_time':
    v = _encoder_rollout(maps, '', b, True)[:, 1:]
    return Rollout(_normalise(v.reshape(b, t, h, w), (1, 2, 3)), None, None, fp)
  if m.attention_type == 'space_only':
    layers = _layers(maps, '', m.num_layers)
    v = _joint_layers(_readout(b * t, 1 + s, True), layers)[:, 1:]
    tokens = _normalise(v.reshape(b, t, h, w), (1, 2, 3))
    return Rollout(tokens, None, None, fp)

  def space_step(v, weights):   # v: (cls [B], patches [B, T, S]).
    cls, patches = v
    am = _mean_heads(weights).reshape(b, t, 1 + s, 1 + s)
    rows = np.concatenate([np.repeat(cls[:, None, None] / t, t, axis=1), patches], -1)
    r = np.einsum('btq,btqk->btk', rows, am)
    return r[:, :, 0].sum(1), r[:, :, 1:]

  def rollout(v, kinds):
    for i in reversed(range(m.num_layers)):
      block = f'encoderblock_{i}/'
      for kind in ('space', 'time'):   # backwards: the spatial step came second.
        if kind not in kinds:
          continue
        if kind == 'space':
          u = space_step(v, maps[f'{block}MultiHeadDotProductAttention_0'][0])
        else:
          u = (v[0], _time(v[1], maps[f'{block}MultiHeadDotProductAttention_time'][0]))
        v = (0.5 * (v[0] + u[0]), 0.5 * (v[1] + u[1]))
    return v[1]

  cls_readout = (np.ones(b), np.zeros((b, t, s)))
  tokens = rollout(cls_readout, {'space', 'time'}).reshape(b, t, h, w)
  spatial = rollout(cls_readout, {'space'}).reshape(b, t, h, w)
  temporal = rollout((np.zeros(b), np.full((b, t, s), 1.0 / (t * s))), {'time'}).sum(-1)
  return Rollout(_normalise(tokens, (1, 2, 3)), _normalise(spatial, (2, 3)),
                 _normalise(temporal, (1,)), fp)


def _spread_matrix(n_in: int, kernel: int, stride: int) -> np.ndarray:
  """float[n_out, n_in]: output position o of a pooling (padding kernel // 2) spreads
  its mass evenly over the in-range inputs of its window."""
  pad = kernel // 2
  n_out = (n_in + 2 * pad - kernel) // stride + 1
  out = np.zeros((n_out, n_in))
  for o in range(n_out):
    idx = [i for i in range(o * stride - pad, o * stride - pad + kernel) if 0 <= i < n_in]
    out[o, idx] = 1.0 / len(idx)
  return out


def _spread(v, c, grid, kernel, stride):
  """v: [B, c + t'h'w'] on a pooled grid -> [B, c + t*h*w] on `grid` (CLS kept)."""
  if not kernel:
    return v
  mats = [_spread_matrix(n, k, s) for n, k, s in zip(grid, kernel, stride)]
  b = v.shape[0]
  pooled = v[:, c:].reshape(b, *(mat.shape[0] for mat in mats))
  full = np.einsum('bxyz,xt,yh,zw->bthw', pooled, *mats)
  return np.concatenate([v[:, :c], full.reshape(b, -1)], axis=1)


def _mvit(m, maps, video_shape):
  t, h, w = video_shape[1:4]
  grid = tuple((n + 2 * p - k) // s + 1 for n, k, s, p in
               zip((t, h, w), m.patch_kernel, m.patch_stride, m.patch_padding))
  c = int(m.cls_embed)
  specs = mvit_lib.block_specs(m, grid)
  out_grid = mvit_lib.pooled_grid(specs[-1].grid, specs[-1].q_kernel, specs[-1].q_stride)
  v = _readout(video_shape[0], c + math.prod(out_grid), bool(c))
  for i in reversed(range(len(specs))):
    spec = specs[i]
    u = _mix(v, maps[f'block_{i}/MultiHeadDotProductAttention_0'][0])
    u = _spread(u, c, spec.grid, spec.kv_kernel, spec.kv_stride)
    skip_kernel = ()
    if spec.q_stride and math.prod(spec.q_stride) > 1:
      skip_kernel = tuple(k + 1 if k > 1 else k for k in spec.q_stride)
    v = 0.5 * (_spread(v, c, spec.grid, skip_kernel, spec.q_stride) + u)
  tokens = _normalise(v[:, c:].reshape(-1, *grid), (1, 2, 3))
  return Rollout(tokens, None, None, tuple(m.patch_stride))


def _swin(m, maps, video_shape):
  b = video_shape[0]
  t, h, w = video_shape[1:4]
  ph, pw = m.patch_size
  grids = [(t // m.temporal_patch_size, h // ph, w // pw)]
  for _ in m.depths[1:]:
    d, gh, gw = grids[-1]
    grids.append((d, -(-gh // 2), -(-gw // 2)))
  shift_all = tuple(x // 2 for x in m.window_size)
  v = np.full((b, *grids[-1]), 1.0 / math.prod(grids[-1]))
  for s in reversed(range(len(m.depths))):
    grid = grids[s]
    if s < len(m.depths) - 1:   # patch merging: spread over the 2x2 sources, crop pads.
      v = np.repeat(np.repeat(v, 2, axis=2), 2, axis=3) / 4.0
      v = v[:, :, :grid[1], :grid[2]]
    for j in reversed(range(m.depths[s])):
      window, shift = swin_lib.window_and_shift(
          grid, m.window_size, shift_all if j % 2 else (0, 0, 0))
      weights = maps[f'stage_{s}/block_{j}/MultiHeadDotProductAttention_0'][0]
      v = 0.5 * (v + _swin_window_step(v, weights, window, shift))
  tokens = _normalise(v, (1, 2, 3))
  return Rollout(tokens, None, None, (m.temporal_patch_size, ph, pw))


def _swin_window_step(v, weights, window, shift):
  """v: [B, D, H, W] through windowed weights [B*nW, heads, N, N] -> [B, D, H, W]."""
  b, *grid = v.shape
  padded = [g + (-g % wi) for g, wi in zip(grid, window)]
  x = np.zeros((b, *padded))
  x[:, :grid[0], :grid[1], :grid[2]] = v
  x = np.roll(x, [-s for s in shift], axis=(1, 2, 3))
  n = [p // wi for p, wi in zip(padded, window)]
  wd, wh, ww = window
  x = x.reshape(b, n[0], wd, n[1], wh, n[2], ww).transpose(0, 1, 3, 5, 2, 4, 6)
  u = _mix(x.reshape(-1, wd * wh * ww), weights)
  u = u.reshape(b, n[0], n[1], n[2], wd, wh, ww).transpose(0, 1, 4, 2, 5, 3, 6)
  u = np.roll(u.reshape(b, *padded), list(shift), axis=(1, 2, 3))
  return u[:, :grid[0], :grid[1], :grid[2]]


def rollout(model_config, maps, video_shape) -> Rollout:
  """Attention rollout of `attention_maps`' `maps` for video of `video_shape`
  (B, T, H, W, C) (images (B, H, W, C) for 'vit'); see the module docstring."""
  m = model_config
  if m.name == 'vit':
    video_shape = (video_shape[0], 1, *video_shape[1:])
    return _vit(m, maps, video_shape)
  if m.name == 'vivit':
    if m.attention_type == 'spatio_temporal':
      return _vit(m, maps, video_shape)
    if m.attention_type == 'factorised_encoder':
      return _vivit_model2(m, maps, video_shape)
    return _vivit_factorised(m, maps, video_shape)
  family = {'timesformer': _timesformer, 'vtn': _vtn, 'mvit': _mvit,
            'video_swin': _swin}.get(m.name)
  if family is None:
    raise ValueError(f'model.name={m.name!r} has no attention rollout.')
  return family(m, maps, video_shape)


def to_pixels(tokens: np.ndarray, footprint, frames: int, height: int,
              width: int) -> np.ndarray:
  """float[B, T, H, W] mass per pixel: each token of tokens [B, t, h, w] spread evenly
  over its footprint's pixels (pixels past the last whole token get the nearest)."""
  out = tokens
  for axis, (n, size, step) in enumerate(zip(tokens.shape[1:], (frames, height, width),
                                             footprint), start=1):
    index = np.minimum(np.arange(size) // step, n - 1)
    counts = np.bincount(index, minlength=n).astype(np.float64)
    out = np.take(out / np.expand_dims(counts, tuple(i for i in range(out.ndim)
                                                     if i != axis)), index, axis=axis)
  return out


def heat_overlay(frames: np.ndarray, heat: np.ndarray, alpha: float = 0.6) -> np.ndarray:
  """uint8[..., H, W, 3]: frames uint8[..., H, W, 3] under heat float[..., H, W] (scaled
  from its minimum to its maximum over all frames: rollout keeps a uniform floor from the
  residual identities) in a black-red-yellow-white ramp, blended with `alpha` times the
  scaled heat (so cold pixels show the frame)."""
  h = np.asarray(heat, np.float64)
  h = (h - h.min()) / max(float(h.max() - h.min()), 1e-30)
  colour = np.stack([np.clip(3 * h, 0, 1), np.clip(3 * h - 1, 0, 1),
                     np.clip(3 * h - 2, 0, 1)], axis=-1) * 255
  weight = alpha * h[..., None]
  out = (1 - weight) * np.asarray(frames, np.float64) + weight * colour
  return np.clip(out + 0.5, 0, 255).astype(np.uint8)
