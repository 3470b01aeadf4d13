"""Video Swin Transformer (Liu et al., CVPR 2022; arXiv 2106.13230).

video: float32[B, T, H, W, C] -> logits float32[B, num_classes]:
  1. 3D patch partition: non-overlapping tubes of temporal_patch_size x patch_size
     (2 x 4 x 4) through one linear map (`embedding`, a Conv3D), then LayerNorm
     (`embedding_norm`) -> tokens [B, T/2, H/4, W/4, C0];
  2. len(depths) stages; stage s has depths[s] blocks of width C0 * 2^s with
     num_heads[s] heads. Each block is pre-norm window attention + MLP; the blocks
     alternate regular windows and windows shifted by window // 2 (`shifted_window_layout`
     below: cyclic roll, the attention mask that keeps the rolled-in tokens apart, a
     learned relative position bias per head). Between stages, patch merging
     concatenates 2x2 spatial neighbours (4C) -> LayerNorm -> Linear(2C, no bias);
  3. LayerNorm, average over all tokens (`classifier='gap'`, the paper; or the max,
     'gmp', or the sum, 'gsp'), dropout, linear classifier.

Windows follow the original (SwinTransformer/Video-Swin-Transformer): a window side
larger than the feature map shrinks to the map and that side is not shifted; the map is
zero-padded (after the block's first LayerNorm) to a multiple of the window and cropped
back after attention.

Config fields (config.model): embed_dim C0 (96), depths ((2, 2, 6, 2)), num_heads
((3, 6, 12, 24)), window_size ((8, 7, 7), time/height/width), patch_size ((4, 4)),
temporal_patch_size (2), mlp_ratio (4.0), stochastic_depth (drop-path of the last block,
linear over all blocks), dropout_rate, attention_dropout_rate, head_dropout_rate (0.5),
classifier (the token pooling: 'gap', the paper's mean; 'gmp' max; 'gsp' sum),
layer_norm_epsilon (1e-5, PyTorch's default), gelu_approximate, dtype, param_dtype,
attention_impl, remat.

Parameter tree (original mmaction `SwinTransformer3D` names on the right):
  embedding/{kernel [t, ph, pw, 3, C0], bias}       patch_embed.proj
  embedding_norm                                    patch_embed.norm
  stage_s/block_j/                                  layers.s.blocks.j.
    LayerNorm_0                                       norm1
    MultiHeadDotProductAttention_0/                   attn.
      {query,key,value}/kernel [C, heads, Dh]           qkv (split in three)
      out/kernel [heads, Dh, C]                          proj
      layout/relative_position_bias_table               relative_position_bias_table
        [(2Wd-1)(2Wh-1)(2Ww-1), heads]
    LayerNorm_1, MlpBlock_0/Dense_{0,1}               norm2, mlp.fc1 / mlp.fc2
  stage_s/merge/{LayerNorm_0, reduction}            layers.s.downsample.{norm, reduction}
  encoder_norm                                      norm
  output_projection                                 cls_head.fc_cls
"""
from __future__ import annotations

import dataclasses
import itertools
import math
from typing import Sequence

import einops
import flax.linen as nn
import jax.numpy as jnp
import ml_collections
import numpy as np

from vivit_jax.errors import config_error
from vivit_jax.models import checks, embeddings
from vivit_jax.models.layers import (AttendFn, DropPath, MlpBlock, MultiHeadAttention,
                                     TransformerConfig, layer_norm, shared_model_options)
from vivit_jax.ops import dense as dense_ops

# (embed_dim, depths, num_heads) of the paper's variants.
VARIANTS = {
    'T': (96, (2, 2, 6, 2), (3, 6, 12, 24)),
    'S': (96, (2, 2, 18, 2), (3, 6, 12, 24)),
    'B': (128, (2, 2, 18, 2), (4, 8, 16, 32)),
    'L': (192, (2, 2, 18, 2), (6, 12, 24, 48)),
}


def window_and_shift(grid: Sequence[int], window: Sequence[int],
                     shift: Sequence[int]) -> tuple[tuple[int, ...], tuple[int, ...]]:
  """The window and shift used on a feature map of `grid` (t, h, w) tokens: a side that
  covers the whole map shrinks to it and is not shifted (original `get_window_size`)."""
  used_window, used_shift = list(window), list(shift)
  for i, size in enumerate(grid):
    if size <= window[i]:
      used_window[i], used_shift[i] = size, 0
  return tuple(used_window), tuple(used_shift)


def relative_position_index(window: Sequence[int], table_window: Sequence[int]) -> np.ndarray:
  """int[N, N], N = prod(window): row of the bias table holding the relative position of
  token j seen from token i, in a table built for `table_window` (sides >= window's)."""
  coords = np.stack(np.meshgrid(*[np.arange(w) for w in window], indexing='ij'))
  coords = coords.reshape(3, -1)
  rel = coords[:, :, None] - coords[:, None, :] + (np.asarray(table_window) - 1)[:, None, None]
  strides = np.array([(2 * table_window[1] - 1) * (2 * table_window[2] - 1),
                      2 * table_window[2] - 1, 1])
  return np.einsum('cij,c->ij', rel, strides).astype(np.int32)


def shifted_window_regions(grid: Sequence[int], window: Sequence[int],
                           shift: Sequence[int]) -> np.ndarray:
  """int[nW, N]: for each window of the rolled map of `grid` (multiples of `window`),
  the region each token came from; tokens attend only within their region, i.e. to
  their neighbours in the unrolled video. Regions along a side: [0, G-w), [G-w, G-s),
  [G-s, G) (one region when that side is not shifted)."""
  region = np.zeros(tuple(grid), np.int32)
  for axis, (g, w, s) in enumerate(zip(grid, window, shift)):
    ids = np.zeros(g, np.int32)
    if s > 0:
      ids[g - w:] = 1
      ids[g - s:] = 2
    shape = [1, 1, 1]
    shape[axis] = g
    region = region * 3 + ids.reshape(shape)
  return einops.rearrange(region, '(nd wd) (nh wh) (nw ww) -> (nd nh nw) (wd wh ww)',
                          wd=window[0], wh=window[1], ww=window[2])


class ShiftedWindowLayout(nn.Module):
  """Window attention over a token map, as a `layout` of MultiHeadAttention.

  query, key, value: [B, D, H, W, heads, Dh] with D, H, W multiples of `window` ->
  [B, D, H, W, heads, Dh]. The map is rolled by -shift, cut into windows of
  prod(window) tokens that attend only among themselves (plus the shifted-window mask
  when shifted), with the relative position bias `relative_position_bias_table`
  ([(2Wd-1)(2Wh-1)(2Ww-1), heads] for the configured `table_window`) added to the logits,
  and rolled back.
  """
  window: Sequence[int]
  shift: Sequence[int]
  table_window: Sequence[int]
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, query, key, value, attend: AttendFn):
    batch, *grid, heads, _ = query.shape
    wd, wh, ww = self.window
    shifted = any(s > 0 for s in self.shift)
    size = math.prod(2 * w - 1 for w in self.table_window)
    table = self.param('relative_position_bias_table', nn.initializers.normal(0.02),
                       (size, heads), self.param_dtype)
    index = relative_position_index(self.window, self.table_window)
    bias = einops.rearrange(table[index], 'q k h -> 1 h q k')

    def to_windows(a):
      if shifted:
        a = jnp.roll(a, [-s for s in self.shift], axis=(1, 2, 3))
      return einops.rearrange(
          a, 'b (nd wd) (nh wh) (nw ww) h c -> (b nd nh nw) (wd wh ww) h c',
          wd=wd, wh=wh, ww=ww)

    mask = None
    if shifted:  # [B*nW, 1, N, N], batch-major like the windows; built in the graph.
      regions = jnp.asarray(shifted_window_regions(grid, self.window, self.shift))
      regions = einops.repeat(regions, 'w n -> (b w) 1 n', b=batch)
      mask = regions[..., :, None] == regions[..., None, :]
    out = attend(to_windows(query), to_windows(key), to_windows(value),
                 bias=bias.astype(query.dtype), mask=mask)
    out = einops.rearrange(
        out, '(b nd nh nw) (wd wh ww) h c -> b (nd wd) (nh wh) (nw ww) h c',
        b=batch, nd=grid[0] // wd, nh=grid[1] // wh, wd=wd, wh=wh, ww=ww)
    if shifted:
      out = jnp.roll(out, list(self.shift), axis=(1, 2, 3))
    return out


class SwinBlock(nn.Module):
  """x + WindowAttn(LN(x)), then x + MLP(LN(x)). x: [B, D, H, W, C] -> same shape.

  `window`/`shift` are the configured ones; they shrink to the map (window_and_shift).
  """
  cfg: TransformerConfig
  window: Sequence[int]
  shift: Sequence[int]
  drop_path: float = 0.0

  @nn.compact
  def __call__(self, x, deterministic: bool):
    cfg = self.cfg
    grid = x.shape[1:4]
    window, shift = window_and_shift(grid, self.window, self.shift)
    y = layer_norm(cfg, 'LayerNorm_0')(x)
    pads = [(0, -g % w) for g, w in zip(grid, window)]
    y = jnp.pad(y, [(0, 0), *pads, (0, 0)])
    layout = ShiftedWindowLayout(window, shift, tuple(self.window), cfg.param_dtype,
                                 parent=None)
    y = MultiHeadAttention(cfg, layout, name='MultiHeadDotProductAttention_0')(
        y, deterministic=deterministic)
    y = y[:, :grid[0], :grid[1], :grid[2]]
    y = nn.Dropout(cfg.dropout_rate)(y, deterministic=deterministic)
    x = x + DropPath(self.drop_path, self.cfg.stochastic_depth_rescale)(y, deterministic=deterministic)
    y = layer_norm(cfg, 'LayerNorm_1')(x)
    y = MlpBlock(cfg, name='MlpBlock_0')(y, deterministic=deterministic)
    return x + DropPath(self.drop_path, self.cfg.stochastic_depth_rescale)(y, deterministic=deterministic)


class PatchMerging(nn.Module):
  """2x2 spatial neighbours concatenated, LayerNorm, Linear(2C, no bias).

  x: [B, D, H, W, C] -> [B, D, ceil(H/2), ceil(W/2), 2C] (odd sides zero-padded). The
  concatenation order is the original's: (h, w) offsets (0,0), (1,0), (0,1), (1,1).
  """
  cfg: TransformerConfig

  @nn.compact
  def __call__(self, x):
    cfg = self.cfg
    _, _, h, w, c = x.shape
    x = jnp.pad(x, [(0, 0), (0, 0), (0, h % 2), (0, w % 2), (0, 0)])
    x = einops.rearrange(x, 'b d (h i) (w j) c -> b d h w (j i c)', i=2, j=2)
    x = layer_norm(cfg, 'LayerNorm_0')(x)
    return nn.Dense(2 * c, use_bias=False, dtype=cfg.dtype, param_dtype=cfg.param_dtype,
                    dot_general=dense_ops.dot_general, name='reduction')(x)


class VideoSwin(nn.Module):
  """Video Swin Transformer; see the module docstring for shapes and names.

  `cfg` carries the shared options (LayerNorm epsilon, GELU, dtypes, dropout, attention
  impl, remat, stochastic_depth); each stage uses it with its own width and heads.
  """
  num_classes: int
  cfg: TransformerConfig
  embed_dim: int = 96
  depths: Sequence[int] = (2, 2, 6, 2)
  num_heads: Sequence[int] = (3, 6, 12, 24)
  window_size: Sequence[int] = (8, 7, 7)
  patch_size: Sequence[int] = (4, 4)
  temporal_patch_size: int = 2
  mlp_ratio: float = 4.0
  head_dropout_rate: float = 0.5
  classifier: str = 'gap'   # token pooling: embeddings.POOLED_CLASSIFIERS.

  @nn.compact
  def __call__(self, video, *, train: bool = False):
    cfg = dataclasses.replace(self.cfg, num_layers=sum(self.depths))
    x = embeddings.embed_tokens(video, 'tubelet', self.embed_dim, self.patch_size,
                                self.temporal_patch_size, cfg.dtype, cfg.param_dtype)
    x = layer_norm(cfg, 'embedding_norm')(x)
    x = nn.Dropout(cfg.dropout_rate)(x, deterministic=not train)
    shift = tuple(w // 2 for w in self.window_size)
    block = cfg.maybe_remat(SwinBlock)
    index = itertools.count()
    for s, (depth, heads) in enumerate(zip(self.depths, self.num_heads)):
      width = self.embed_dim * 2 ** s
      stage_cfg = dataclasses.replace(cfg, hidden_size=width, num_heads=heads,
                                      mlp_dim=int(width * self.mlp_ratio))
      for j in range(depth):
        x = block(stage_cfg, tuple(self.window_size), shift if j % 2 else (0, 0, 0),
                  cfg.drop_path_rate(next(index)), name=f'stage_{s}/block_{j}')(
                      x, not train)
      if s < len(self.depths) - 1:
        x = PatchMerging(stage_cfg, name=f'stage_{s}/merge')(x)
    x = layer_norm(cfg, 'encoder_norm')(x)
    x = embeddings.pool_tokens(einops.rearrange(x, 'b t h w c -> b (t h w) c'),
                               self.classifier)
    x = nn.Dropout(self.head_dropout_rate)(x, deterministic=not train)
    return embeddings.classifier_head(x, self.num_classes, dtype=cfg.dtype,
                                      param_dtype=cfg.param_dtype)


def model_config(variant: str = 'T') -> ml_collections.ConfigDict:
  """`config.model` of Video Swin-`variant` ('T', 'S', 'B', 'L'), K400 settings."""
  if variant not in VARIANTS:
    raise config_error('model variant', variant, f'one of {list(VARIANTS)}')
  embed_dim, depths, heads = VARIANTS[variant]
  m = ml_collections.ConfigDict()
  m.name = 'video_swin'
  m.embed_dim, m.depths, m.num_heads = embed_dim, depths, heads
  m.window_size = (8, 7, 7)
  m.patch_size, m.temporal_patch_size = (4, 4), 2
  m.mlp_ratio = 4.0
  m.dropout_rate = 0.0
  m.attention_dropout_rate = 0.0
  m.stochastic_depth = {'T': 0.1, 'S': 0.2, 'B': 0.3, 'L': 0.3}[variant]
  m.head_dropout_rate = 0.5
  m.classifier = 'gap'   # mean over the last stage's tokens; 'gmp' max, 'gsp' sum.
  return shared_model_options(m, layer_norm_epsilon=1e-5)


def validate(m, *, num_frames: int, crop_size: int) -> None:
  """Raises ConfigError for Video Swin fields of `config.model` that cannot work."""
  checks.options(m)
  checks.positive_int('model.embed_dim', m.get('embed_dim'))
  depths, heads = tuple(m.get('depths') or ()), tuple(m.get('num_heads') or ())
  if not depths or not all(isinstance(d, int) and d > 0 for d in depths):
    raise config_error('model.depths', m.get('depths'),
                       'a non-empty tuple of positive block counts per stage')
  if len(heads) != len(depths):
    raise config_error('model.num_heads', m.get('num_heads'),
                       f'one head count per stage ({len(depths)} stages in model.depths)')
  for s, h in enumerate(heads):
    width = m.embed_dim * 2 ** s
    if not isinstance(h, int) or h < 1 or width % h:
      raise config_error('model.num_heads', m.num_heads,
                         f'positive divisors of the stage widths {m.embed_dim}*2^s '
                         f'(stage {s} has width {width})')
  checks.int_tuple('model.window_size', m.get('window_size'), 3,
                         '(time, height, width)')
  t = m.get('temporal_patch_size')
  checks.positive_int('model.temporal_patch_size', t)
  checks.patches(m, crop_size=crop_size, num_frames=num_frames, temporal_size=t)
  if m.get('classifier', 'gap') not in embeddings.POOLED_CLASSIFIERS:
    raise config_error('model.classifier', m.classifier,
                       f'one of {embeddings.POOLED_CLASSIFIERS} (Video Swin pools its '
                       'tokens; it has no CLS token)')


def build(m, num_classes: int) -> VideoSwin:
  """The Video Swin of `config.model` (see the module docstring for its fields)."""
  cfg = TransformerConfig.from_shared_options(m)
  return VideoSwin(num_classes=num_classes, cfg=cfg, embed_dim=m.embed_dim,
                   depths=tuple(m.depths), num_heads=tuple(m.num_heads),
                   window_size=tuple(m.window_size), patch_size=tuple(m.patch_size),
                   temporal_patch_size=m.temporal_patch_size,
                   mlp_ratio=m.get('mlp_ratio', 4.0),
                   head_dropout_rate=m.get('head_dropout_rate', 0.5),
                   classifier=m.get('classifier', 'gap'))
