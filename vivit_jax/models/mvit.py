"""MViT (Fan et al., ICCV 2021; arXiv 2104.11227) and MViTv2 (Li et al., CVPR 2022;
arXiv 2112.01526): multiscale transformers with pooling attention.

video: float32[B, T, H, W, C] -> logits float32[B, num_classes]:
  1. stem: a Conv3D (`patch_kernel` (3, 7, 7), `patch_stride` (2, 4, 4), `patch_padding`
     (1, 3, 3)) -> a token grid (t, h, w) = (T/2, H/4, W/4) of width `embed_dim`,
     flattened time-major, with a CLS token in front (`cls_embed`). v1 adds learned
     position embeddings (separate spatial / temporal / class tables with
     `sep_pos_embed`); v2 has none (`use_abs_pos=False`) and uses relative positions.
  2. `depth` multiscale blocks: x' = pool(x) + Attn(LN(x)); x'' = x' + MLP(LN(x')).
     Pooling attention (`PoolingAttentionLayout`): after the q/k/v projections, each of
     q, k, v is pooled per head by a depthwise Conv3D (shared by the heads, no bias) and
     a LayerNorm over the head dim; CLS is not pooled (it is normalised). A Q stride
     (1, 2, 2) at each stage change shrinks the grid (the skip path is max-pooled to
     match); K/V strides are adaptive: `pool_kv_stride_adaptive` (1, 8, 8) divided by
     every Q stride so far. Channels and heads double at the `dim_mul` / `head_mul`
     layers ([layer, factor] pairs). v1 widens in the MLP of the block before the stage
     change (its skip goes through `proj` = Linear(LN(x))); v2 (`dim_mul_in_att`) widens
     in the attention of the stage's first block, adds the decomposed relative position
     bias (`rel_pos_spatial`, `rel_pos_temporal`: query-dependent terms q . R_h[dh],
     q . R_w[dw], q . R_t[dt] added to the logits, handed to the attention kernel as a
     `ops.attention.DecomposedBias`, which the C++ CPU kernel adds row by row without building
     the [Lq, Lk] bias) and the residual pooling connection
     (`residual_pooling`: the pooled query is added to the attention output).
  3. LayerNorm, the CLS token (mean of the tokens without CLS), dropout, linear head.

The schedule of widths, heads, strides and kernels per block is `block_specs`, the
PySlowFast `MViT.__init__` rules (configs/Kinetics/MVIT_B_16x4_CONV.yaml,
MVITv2_S_16x4.yaml). Config fields (config.model): embed_dim, depth, num_heads (of the
first stage), mlp_ratio, dim_mul, head_mul, pool_q_stride ([layer, st, sh, sw] rows),
pool_kv_stride_adaptive, pool_kvq_kernel (None: kernel = stride + 1 where stride > 1),
patch_kernel, patch_stride, patch_padding, cls_embed, use_abs_pos, sep_pos_embed,
rel_pos_spatial, rel_pos_temporal, residual_pooling, dim_mul_in_att, stochastic_depth,
dropout_rate, attention_dropout_rate, head_dropout_rate, layer_norm_epsilon (1e-6),
gelu_approximate, dtype, param_dtype, attention_impl, remat.

Parameter tree (PySlowFast names on the right):
  patch_embed/{kernel [3, 7, 7, 3, C0], bias}      patch_embed.proj
  cls_token [1, 1, C0]                             cls_token
  pos_embed_{spatial,temporal,class}               same (v1, sep_pos_embed)
  block_i/                                         blocks.i.
    LayerNorm_0, LayerNorm_1                         norm1, norm2
    MultiHeadDotProductAttention_0/                  attn.
      {query,key,value}/kernel [C, heads, Dh]          qkv (split in three)
      out                                              proj
      layout/pool_{q,k,v}/kernel [kt, kh, kw, 1, Dh]   pool_{q,k,v} (depthwise Conv3d)
      layout/norm_{q,k,v}                              norm_{q,k,v}
      layout/rel_pos_{h,w,t} [2n-1, Dh]                rel_pos_{h,w,t} (v2)
    MlpBlock_0/Dense_{0,1}                           mlp.fc1, mlp.fc2
    proj                                             proj (where the width changes)
  encoder_norm, output_projection                  norm, head.projection
"""
from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple, Optional, Sequence

import einops
import flax.linen as nn
import jax.numpy as jnp
import ml_collections
import numpy as np

from vivit_jax.errors import config_error
from vivit_jax.models import checks, embeddings
from vivit_jax.models.layers import (AttendFn, DropPath, MlpBlock, MultiHeadAttention,
                                     TransformerConfig, layer_norm, shared_model_options)
from vivit_jax.ops import dense as dense_ops, pooling
from vivit_jax.ops.attention import DecomposedBias

Grid = tuple  # (t, h, w) token grid


class BlockSpec(NamedTuple):
  """One multiscale block: widths, heads, pooling (kernel () = not pooled), input grid."""
  dim: int
  dim_out: int
  num_heads: int
  q_kernel: tuple
  q_stride: tuple
  kv_kernel: tuple
  kv_stride: tuple
  grid: Grid


def round_width(width, multiplier, min_width=1, divisor=1):
  """PySlowFast `round_width`: width * multiplier rounded to a multiple of divisor."""
  if not multiplier:
    return width
  width *= multiplier
  min_width = min_width or divisor
  out = max(min_width, int(width + divisor / 2) // divisor * divisor)
  if out < 0.9 * width:
    out += divisor
  return int(out)


def pooled_grid(grid: Grid, kernel: tuple, stride: tuple) -> Grid:
  """Token grid after a pooling of `kernel`/`stride` with padding kernel // 2."""
  if not kernel:
    return tuple(grid)
  return tuple((n + 2 * (k // 2) - k) // s + 1 for n, k, s in zip(grid, kernel, stride))


def block_specs(arch, grid: Grid) -> list[BlockSpec]:
  """Per-block widths, heads, pooling kernels/strides and input grids (PySlowFast rules).

  `arch`: anything with the config fields (config.model or the MViT module); `grid`: the
  stem's token grid (t, h, w).
  """
  depth = arch.depth
  dim_mul, head_mul = np.ones(depth + 1), np.ones(depth + 1)
  for layer, factor in arch.dim_mul:
    dim_mul[layer] = factor
  for layer, factor in arch.head_mul:
    head_mul[layer] = factor
  kernel_of = lambda stride: (tuple(arch.pool_kvq_kernel) if arch.pool_kvq_kernel
                              else tuple(s + 1 if s > 1 else s for s in stride))
  q_stride = [()] * depth
  for layer, *stride in arch.pool_q_stride:
    q_stride[layer] = tuple(stride)
  kv_stride, stride = [()] * depth, arch.pool_kv_stride_adaptive
  for i in range(depth):
    if stride is not None:
      if q_stride[i]:
        stride = tuple(max(s // q, 1) for s, q in zip(stride, q_stride[i]))
      kv_stride[i] = tuple(stride)

  def pooling(stride):
    kernel = kernel_of(stride) if stride else ()
    if math.prod(kernel) == 1 and math.prod(stride or (1,)) == 1:
      return (), ()  # The original skips (1, 1, 1) pooling.
    return kernel, stride

  specs, dim, heads, grid = [], arch.embed_dim, arch.num_heads, tuple(grid)
  for i in range(depth):
    heads = round_width(heads, head_mul[i])
    if arch.dim_mul_in_att:
      dim_out = round_width(dim, dim_mul[i], divisor=round_width(heads, head_mul[i]))
    else:
      dim_out = round_width(dim, dim_mul[i + 1], divisor=round_width(heads, head_mul[i + 1]))
    qk, qs = pooling(q_stride[i])
    kvk, kvs = pooling(kv_stride[i])
    specs.append(BlockSpec(dim, dim_out, heads, qk, qs, kvk, kvs, grid))
    grid, dim = pooled_grid(grid, qk, qs), dim_out
  return specs


def relative_distances(q_size: int, k_size: int) -> np.ndarray:
  """int[q, k]: rows of a [2 max(q, k) - 1, Dh] table for query i, key j (PySlowFast
  `cal_rel_pos_*`: the coarser axis is scaled up to the finer one's positions)."""
  q_ratio, k_ratio = max(k_size / q_size, 1.0), max(q_size / k_size, 1.0)
  dist = (np.arange(q_size)[:, None] * q_ratio - np.arange(k_size)[None, :] * k_ratio
          + (k_size - 1) * k_ratio)
  return dist.astype(np.int64)


class DepthwiseConv3D(nn.Module):
  """`depthwise_conv3d` with its kernel as a parameter: x [N, t, h, w, C] ->
  [N, t', h', w', C]. `kernel: [kt, kh, kw, 1, C]` is the layout of
  `nn.Conv(C, feature_group_count=C)` (and of PyTorch's depthwise Conv3d, transposed)."""
  kernel_size: Sequence[int]
  strides: Sequence[int]
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    c = x.shape[-1]
    kernel = self.param('kernel', nn.initializers.lecun_normal(),
                        (*self.kernel_size, 1, c), self.param_dtype)
    return pooling.depthwise_conv3d(x.astype(self.dtype), kernel.astype(self.dtype),
                            tuple(self.strides))


class PoolingAttentionLayout(nn.Module):
  """Pooling attention as a `layout` of MultiHeadAttention (see the module docstring).

  query, key, value: [B, c + t*h*w, heads, Dh] (c = 1 with CLS), grid (t, h, w) ->
  [B, c + t'*h'*w', heads, Dh] on the query's pooled grid.
  """
  cfg: TransformerConfig
  grid: Grid
  q_kernel: tuple = ()
  q_stride: tuple = ()
  kv_kernel: tuple = ()
  kv_stride: tuple = ()
  has_cls: bool = True
  rel_pos_spatial: bool = False
  rel_pos_temporal: bool = False
  residual_pooling: bool = False

  def pool(self, x, kernel, stride, name):
    """x: [B, c + L, heads, Dh] -> pooled by `pool_<name>` and `norm_<name>`, new grid."""
    if not kernel:
      return x, tuple(self.grid)
    cfg, c = self.cfg, int(self.has_cls)
    t, h, w = self.grid
    dh = x.shape[-1]
    tokens = einops.rearrange(x[:, c:], 'b (t h w) n d -> (b n) t h w d', t=t, h=h, w=w)
    tokens = DepthwiseConv3D(kernel, stride, cfg.dtype, cfg.param_dtype,
                             name=f'pool_{name}')(tokens)
    grid = tokens.shape[1:4]
    tokens = einops.rearrange(tokens, '(b n) t h w d -> b (t h w) n d', b=x.shape[0])
    x = jnp.concatenate([x[:, :c], tokens], axis=1)
    return layer_norm(cfg, f'norm_{name}')(x), grid

  def relative_position_bias(self, query, q_grid, k_grid) -> DecomposedBias:
    """Decomposed relative position bias of [B, heads, Lq, Lk] logits (zero on CLS rows
    and columns): terms q . R_t[dt], q . R_h[dh], q . R_w[dw] per query and key grid
    index, float32 [B, heads, Lq, kt + kh + kw] (an axis turned off contributes zeros)."""
    c = int(self.has_cls)
    dh = query.shape[-1]
    q = einops.rearrange(query[:, c:], 'b (t h w) n d -> b n t h w d',
                         t=q_grid[0], h=q_grid[1], w=q_grid[2]).astype(jnp.float32)
    terms = []
    axes = (('t', self.rel_pos_temporal), ('h', self.rel_pos_spatial),
            ('w', self.rel_pos_spatial))
    for axis, (name, on) in enumerate(axes):
      if not on:
        terms.append(jnp.zeros((*q.shape[:5], k_grid[axis]), jnp.float32))
        continue
      size = 2 * max(q_grid[axis], k_grid[axis]) - 1
      table = self.param(f'rel_pos_{name}', nn.initializers.normal(0.02), (size, dh),
                         self.cfg.param_dtype)
      rel = table[relative_distances(q_grid[axis], k_grid[axis])].astype(jnp.float32)
      subscripts = 'bnthwd,' + {'t': 'tkd', 'h': 'hkd', 'w': 'wkd'}[name] + '->bnthwk'
      terms.append(jnp.einsum(subscripts, q, rel))   # [B, n, t, h, w, k_axis]
    terms = jnp.concatenate(terms, axis=-1)
    terms = terms.reshape(*terms.shape[:2], -1, terms.shape[-1])
    terms = jnp.pad(terms, [(0, 0), (0, 0), (c, 0), (0, 0)])   # CLS query rows: 0
    return DecomposedBias(terms, tuple(k_grid), skip=c)

  @nn.compact
  def __call__(self, query, key, value, attend: AttendFn):
    query, q_grid = self.pool(query, self.q_kernel, self.q_stride, 'q')
    key, k_grid = self.pool(key, self.kv_kernel, self.kv_stride, 'k')
    value, _ = self.pool(value, self.kv_kernel, self.kv_stride, 'v')
    bias = None
    if self.rel_pos_spatial or self.rel_pos_temporal:
      bias = self.relative_position_bias(query, q_grid, k_grid)
    out = attend(query, key, value, bias=bias)
    if self.residual_pooling:
      c = int(self.has_cls)
      out = jnp.concatenate([out[:, :c], out[:, c:] + query[:, c:]], axis=1)
    return out


class MViTBlock(nn.Module):
  """x: [B, c + prod(spec.grid), spec.dim] -> [B, c + prod(pooled grid), spec.dim_out].

  `cfg.hidden_size` is the attention width (dim_out with `dim_mul_in_att`, else dim).
  """
  cfg: TransformerConfig
  spec: BlockSpec
  drop_path: float = 0.0
  has_cls: bool = True
  dim_mul_in_att: bool = False
  rel_pos_spatial: bool = False
  rel_pos_temporal: bool = False
  residual_pooling: bool = False

  def skip(self, x):
    """Max-pool of the residual path when Q is strided (kernel stride + 1, CLS kept)."""
    s, c = self.spec, int(self.has_cls)
    if not s.q_stride or math.prod(s.q_stride) == 1:
      return x
    kernel = tuple(k + 1 if k > 1 else k for k in s.q_stride)
    t, h, w = s.grid
    tokens = einops.rearrange(x[:, c:], 'b (t h w) d -> b t h w d', t=t, h=h, w=w)
    tokens = pooling.max_pool(tokens, kernel, s.q_stride)
    return jnp.concatenate([x[:, :c], einops.rearrange(tokens, 'b t h w d -> b (t h w) d')],
                           axis=1)

  @nn.compact
  def __call__(self, x, deterministic: bool):
    cfg, s = self.cfg, self.spec
    layout = PoolingAttentionLayout(
        cfg, s.grid, s.q_kernel, s.q_stride, s.kv_kernel, s.kv_stride, self.has_cls,
        self.rel_pos_spatial, self.rel_pos_temporal, self.residual_pooling, parent=None)
    x_norm = layer_norm(cfg, 'LayerNorm_0')(x)
    y = MultiHeadAttention(cfg, layout, name='MultiHeadDotProductAttention_0')(
        x_norm, deterministic=deterministic)
    y = nn.Dropout(cfg.dropout_rate)(y, deterministic=deterministic)
    proj = None
    if s.dim != s.dim_out:
      proj = nn.Dense(s.dim_out, dtype=cfg.dtype, param_dtype=cfg.param_dtype,
                      dot_general=dense_ops.dot_general, name='proj')
    if proj and self.dim_mul_in_att:
      x = proj(x_norm)
    x = self.skip(x) + DropPath(self.drop_path, self.cfg.stochastic_depth_rescale)(y, deterministic=deterministic)
    x_norm = layer_norm(cfg, 'LayerNorm_1')(x)
    y = MlpBlock(cfg, out_dim=s.dim_out, name='MlpBlock_0')(x_norm,
                                                            deterministic=deterministic)
    if proj and not self.dim_mul_in_att:
      x = proj(x_norm)
    return x + DropPath(self.drop_path, self.cfg.stochastic_depth_rescale)(y, deterministic=deterministic)


class MViT(nn.Module):
  """MViT v1 / v2 over video [B, T, H, W, C]; see the module docstring.

  `cfg` carries the shared options (num_layers = depth for the drop-path schedule);
  each block uses it with its own width, heads and MLP width.
  """
  num_classes: int
  cfg: TransformerConfig
  embed_dim: int = 96
  depth: int = 16
  num_heads: int = 1
  mlp_ratio: float = 4.0
  dim_mul: Sequence[Sequence[float]] = ((1, 2.0), (3, 2.0), (14, 2.0))
  head_mul: Sequence[Sequence[float]] = ((1, 2.0), (3, 2.0), (14, 2.0))
  pool_q_stride: Sequence[Sequence[int]] = ((1, 1, 2, 2), (3, 1, 2, 2), (14, 1, 2, 2))
  pool_kv_stride_adaptive: Optional[Sequence[int]] = (1, 8, 8)
  pool_kvq_kernel: Optional[Sequence[int]] = (3, 3, 3)
  patch_kernel: Sequence[int] = (3, 7, 7)
  patch_stride: Sequence[int] = (2, 4, 4)
  patch_padding: Sequence[int] = (1, 3, 3)
  cls_embed: bool = True
  use_abs_pos: bool = True
  sep_pos_embed: bool = True
  rel_pos_spatial: bool = False
  rel_pos_temporal: bool = False
  residual_pooling: bool = False
  dim_mul_in_att: bool = False
  head_dropout_rate: float = 0.5

  def position_embedding(self, x, grid):
    """Learned absolute positions (v1) added to x: [B, c + t*h*w, C]."""
    init, dim = nn.initializers.normal(0.02), x.shape[-1]
    param = lambda name, n: self.param(name, init, (1, n, dim), self.cfg.param_dtype)
    if self.sep_pos_embed:
      t, h, w = grid
      pos = (jnp.tile(param('pos_embed_spatial', h * w), (1, t, 1))
             + jnp.repeat(param('pos_embed_temporal', t), h * w, axis=1))
      if self.cls_embed:
        pos = jnp.concatenate([param('pos_embed_class', 1), pos], axis=1)
    else:
      pos = param('pos_embed', x.shape[1])
    return x + pos.astype(x.dtype)

  @nn.compact
  def __call__(self, video, *, train: bool = False):
    cfg = dataclasses.replace(self.cfg, num_layers=self.depth)
    x = embeddings.PatchConv(
        self.embed_dim, tuple(self.patch_kernel), tuple(self.patch_stride),
        padding=[(p, p) for p in self.patch_padding], dtype=cfg.dtype,
        param_dtype=cfg.param_dtype, name='patch_embed')(video.astype(cfg.dtype))
    grid = x.shape[1:4]
    x = einops.rearrange(x, 'b t h w d -> b (t h w) d')
    if self.cls_embed:
      cls = self.param('cls_token', nn.initializers.normal(0.02), (1, 1, self.embed_dim),
                       cfg.param_dtype)
      x = jnp.concatenate([jnp.broadcast_to(cls.astype(x.dtype), (x.shape[0], 1, x.shape[2])),
                           x], axis=1)
    if self.use_abs_pos:
      x = self.position_embedding(x, grid)
    x = nn.Dropout(cfg.dropout_rate)(x, deterministic=not train)
    block = cfg.maybe_remat(MViTBlock)
    for i, spec in enumerate(block_specs(self, grid)):
      width = spec.dim_out if self.dim_mul_in_att else spec.dim
      block_cfg = dataclasses.replace(cfg, hidden_size=width, num_heads=spec.num_heads,
                                      mlp_dim=int(width * self.mlp_ratio))
      x = block(block_cfg, spec, cfg.drop_path_rate(i), self.cls_embed,
                self.dim_mul_in_att, self.rel_pos_spatial, self.rel_pos_temporal,
                self.residual_pooling, name=f'block_{i}')(x, not train)
    x = layer_norm(cfg, 'encoder_norm')(x)
    x = x[:, 0] if self.cls_embed else jnp.mean(x, axis=1)
    x = nn.Dropout(self.head_dropout_rate)(x, deterministic=not train)
    return embeddings.classifier_head(x, self.num_classes, dtype=cfg.dtype,
                                      param_dtype=cfg.param_dtype)


def model_config(variant: str = 'B') -> ml_collections.ConfigDict:
  """`config.model` of MViT-B ('B', v1) or MViTv2-S ('v2-S'), PySlowFast K400 configs
  (MVIT_B_16x4_CONV.yaml, MVITv2_S_16x4.yaml); the input size is the dataset's."""
  variants = ('B', 'v2-S')
  if variant not in variants:
    raise config_error('model variant', variant, f'one of {list(variants)}')
  v2 = variant == 'v2-S'
  m = ml_collections.ConfigDict()
  m.name = 'mvit'
  m.embed_dim, m.depth, m.num_heads, m.mlp_ratio = 96, 16, 1, 4.0
  m.dim_mul = m.head_mul = ((1, 2.0), (3, 2.0), (14, 2.0))
  if v2:  # Q pooled (stride 1) in every block, strided at the stage changes.
    m.pool_q_stride = tuple((i, 1, 2, 2) if i in (1, 3, 14) else (i, 1, 1, 1)
                            for i in range(16))
  else:
    m.pool_q_stride = ((1, 1, 2, 2), (3, 1, 2, 2), (14, 1, 2, 2))
  m.pool_kv_stride_adaptive = (1, 8, 8)
  m.pool_kvq_kernel = (3, 3, 3)
  m.patch_kernel, m.patch_stride, m.patch_padding = (3, 7, 7), (2, 4, 4), (1, 3, 3)
  m.cls_embed = True
  m.use_abs_pos, m.sep_pos_embed = not v2, not v2
  m.rel_pos_spatial = m.rel_pos_temporal = v2
  m.residual_pooling = m.dim_mul_in_att = v2
  m.stochastic_depth = 0.2
  m.dropout_rate = m.attention_dropout_rate = 0.0
  m.head_dropout_rate = 0.5
  return shared_model_options(m)


def validate(m, *, num_frames: int, crop_size: int) -> None:
  """Raises ConfigError for MViT fields of `config.model` that cannot work."""
  checks.options(m)
  for field in ('embed_dim', 'depth', 'num_heads'):
    checks.positive_int(f'model.{field}', m.get(field))
  for field in ('patch_kernel', 'patch_stride'):
    checks.int_tuple(f'model.{field}', m.get(field), 3, '(time, height, width)')
  checks.int_tuple('model.patch_padding', m.get('patch_padding'), 3,
                         '(time, height, width)', minimum=0)
  for field in ('pool_kv_stride_adaptive', 'pool_kvq_kernel'):
    if m.get(field) is not None:
      checks.int_tuple(f'model.{field}', m.get(field), 3,
                             '(time, height, width) or None')
  for field in ('dim_mul', 'head_mul'):
    for row in m.get(field) or ():
      if len(row) != 2 or not 0 <= row[0] <= m.depth or not row[1] > 0:
        raise config_error(f'model.{field}', m.get(field),
                           f'[layer, factor] rows with 0 <= layer <= depth={m.depth}')
  for row in m.get('pool_q_stride') or ():
    if len(row) != 4 or not 0 <= row[0] < m.depth or not all(
        isinstance(s, int) and s > 0 for s in row[1:]):
      raise config_error('model.pool_q_stride', m.get('pool_q_stride'),
                         f'[layer, st, sh, sw] rows with 0 <= layer < depth={m.depth}')
  grid = (num_frames, crop_size, crop_size)
  grid = tuple((n + 2 * p - k) // s + 1 for n, k, s, p in
               zip(grid, m.patch_kernel, m.patch_stride, m.patch_padding))
  if min(grid) < 1:
    raise config_error('model.patch_kernel', m.patch_kernel,
                       f'a stem that fits [num_frames={num_frames}, crop_size={crop_size}]')
  for i, spec in enumerate(block_specs(m, grid)):
    width = spec.dim_out if m.dim_mul_in_att else spec.dim
    if width % spec.num_heads:
      raise config_error('model.head_mul', m.head_mul,
                         f'heads that divide the width of every block (block {i}: '
                         f'{spec.num_heads} heads, width {width})')


def build(m, num_classes: int) -> MViT:
  """The MViT of `config.model` (see the module docstring for its fields)."""
  fields = ('embed_dim', 'depth', 'num_heads', 'mlp_ratio', 'cls_embed', 'use_abs_pos',
            'sep_pos_embed', 'rel_pos_spatial', 'rel_pos_temporal', 'residual_pooling',
            'dim_mul_in_att', 'head_dropout_rate')
  tuples = ('patch_kernel', 'patch_stride', 'patch_padding')
  nested = ('dim_mul', 'head_mul', 'pool_q_stride')
  optional = ('pool_kv_stride_adaptive', 'pool_kvq_kernel')
  kwargs = {f: m[f] for f in fields}
  kwargs.update({f: tuple(m[f]) for f in tuples})
  kwargs.update({f: tuple(tuple(r) for r in m[f]) for f in nested})
  kwargs.update({f: None if m[f] is None else tuple(m[f]) for f in optional})
  return MViT(num_classes=num_classes, cfg=TransformerConfig.from_shared_options(m), **kwargs)
