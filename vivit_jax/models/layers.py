"""Shared transformer blocks: attention, MLP, stochastic depth, encoder blocks.

Every model family builds on these; nothing here knows about video. Parameter names
follow Scenic / big_vision (`LayerNorm_0`, `MultiHeadDotProductAttention_0`,
`LayerNorm_1`, `MlpBlock_0/Dense_{0,1}`, `query/key/value/out`) so that checkpoints map
onto this tree by name. Attention kernels have the Flax layout: query/key/value
`kernel: [D, heads, head_dim]`, out `kernel: [heads, head_dim, D]`.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Mapping, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from vivit_jax.models.embeddings import AddPositionEmbedding

ATTENTION_IMPLS = ('xla', 'cudnn', 'explicit')


@dataclasses.dataclass(frozen=True)
class TransformerConfig:
  """Hyper-parameters shared by every transformer encoder in the zoo.

  `stochastic_depth` is the drop-path rate of the last block; block i of L gets
  `i / (L - 1) * stochastic_depth` (Scenic/timm convention).
  """
  hidden_size: int = 768
  num_layers: int = 12
  num_heads: int = 12
  mlp_dim: int = 3072
  dropout_rate: float = 0.0
  attention_dropout_rate: float = 0.0
  stochastic_depth: float = 0.0
  layer_norm_epsilon: float = 1e-6
  gelu_approximate: bool = False
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  attention_impl: str = 'xla'
  remat: bool = False

  @classmethod
  def from_model_config(cls, model_config, **overrides) -> 'TransformerConfig':
    """Builds the config from a `config.model` ConfigDict (fields of the same name)."""
    m = model_config
    kwargs = dict(
        hidden_size=m.hidden_size, num_layers=m.num_layers, num_heads=m.num_heads,
        mlp_dim=m.mlp_dim, dropout_rate=m.get('dropout_rate', 0.0),
        attention_dropout_rate=m.get('attention_dropout_rate', 0.0),
        stochastic_depth=m.get('stochastic_depth', 0.0),
        layer_norm_epsilon=m.get('layer_norm_epsilon', 1e-6),
        gelu_approximate=m.get('gelu_approximate', False),
        dtype=jnp.dtype(m.get('dtype', 'float32')),
        param_dtype=jnp.dtype(m.get('param_dtype', 'float32')),
        attention_impl=m.get('attention_impl', 'xla'), remat=m.get('remat', False))
    kwargs.update(overrides)
    return cls(**kwargs)

  def drop_path_rate(self, layer: int) -> float:
    return layer / max(self.num_layers - 1, 1) * self.stochastic_depth


def layer_norm(cfg: TransformerConfig, name: Optional[str] = None) -> nn.LayerNorm:
  return nn.LayerNorm(epsilon=cfg.layer_norm_epsilon, dtype=cfg.dtype,
                      param_dtype=cfg.param_dtype, name=name)


def dot_product_attention(query, key, value, *, bias=None, mask=None, impl: str = 'xla',
                          dropout_rate: float = 0.0, dropout_rng=None,
                          deterministic: bool = True):
  """Softmax attention over the key axis, heads kept separate.

  query: [B, Lq, H, Dh]; key, value: [B, Lk, H, Dh] -> [B, Lq, H, Dh].
  `bias` (optional) is added to the scaled logits and `mask` (optional, bool, True = may
  attend) removes logits; both broadcast to [B, H, Lq, Lk] (e.g. a relative position
  bias [1, H, Lq, Lk], a window mask [B, 1, Lq, Lk]); they go to
  `jax.nn.dot_product_attention`'s `bias`/`mask`, or are applied in the explicit path.
  `impl`: 'xla' / 'cudnn' go through `jax.nn.dot_product_attention` (cuDNN flash attention
  on GPU); 'explicit' is the plain einsum/softmax path. Attention-probability dropout
  needs the explicit path, which is taken automatically when it is active. Softmax
  statistics are computed in float32 whatever the input dtype.
  """
  if impl not in ATTENTION_IMPLS:
    raise ValueError(f'attention impl {impl!r} is invalid: expected one of {ATTENTION_IMPLS}.')
  use_dropout = dropout_rate > 0.0 and not deterministic
  if impl != 'explicit' and not use_dropout:
    if mask is not None:
      mask = jnp.asarray(mask, bool)
    return jax.nn.dot_product_attention(query, key, value, bias=bias, mask=mask,
                                        implementation=impl)
  scale = query.shape[-1] ** -0.5
  logits = jnp.einsum('bqhd,bkhd->bhqk', query, key,
                      preferred_element_type=jnp.float32) * scale
  if bias is not None:
    logits = logits + jnp.asarray(bias, jnp.float32)
  if mask is not None:
    logits = jnp.where(mask, logits, jnp.finfo(jnp.float32).min)
  probs = jax.nn.softmax(logits, axis=-1)
  if use_dropout:
    keep = jax.random.bernoulli(dropout_rng, 1.0 - dropout_rate, probs.shape)
    probs = jnp.where(keep, probs / (1.0 - dropout_rate), 0.0)
  return jnp.einsum('bhqk,bkhd->bqhd', probs.astype(value.dtype), value)


# `attend(q, k, v, *, bias=None, mask=None) -> out` for q/k/v [B, L, H, Dh] (see
# `dot_product_attention`); a layout receives it and decides which tokens attend to which
# (joint, factorised over a token grid, windowed, pooled). A layout is a function, or a
# Linen module when it owns parameters (a relative position table, pooling convolutions).
AttendFn = Callable[[jax.Array, jax.Array, jax.Array], jax.Array]
LayoutFn = Callable[[jax.Array, jax.Array, jax.Array, AttendFn], jax.Array]


def joint_layout(query, key, value, attend: AttendFn):
  """Every token attends to every token of its sequence: q/k/v [B, L, H, Dh]."""
  return attend(query, key, value)


class MultiHeadAttention(nn.Module):
  """Multi-head self-attention with query/key/value/out projections.

  x: [B, ..., D] -> [B, ..., D]. The token layout of the leading axes is the business of
  `layout` (default: `joint_layout` over x: [B, L, D]); see vivit.py for the factorised
  dot-product layout (Model 4), which splits the heads between space and time.
  """
  cfg: TransformerConfig
  layout: LayoutFn = joint_layout

  @nn.compact
  def __call__(self, x, *, deterministic: bool):
    cfg = self.cfg
    head_dim = cfg.hidden_size // cfg.num_heads
    dense = functools.partial(
        nn.DenseGeneral, dtype=cfg.dtype, param_dtype=cfg.param_dtype,
        kernel_init=nn.initializers.xavier_uniform())
    q, k, v = (dense(features=(cfg.num_heads, head_dim), name=n)(x)
               for n in ('query', 'key', 'value'))
    rng = None
    if cfg.attention_dropout_rate > 0.0 and not deterministic:
      rng = self.make_rng('dropout')
    attend = functools.partial(
        dot_product_attention, impl=cfg.attention_impl,
        dropout_rate=cfg.attention_dropout_rate, dropout_rng=rng,
        deterministic=deterministic)
    out = self.layout(q, k, v, attend)
    return dense(features=cfg.hidden_size, axis=(-2, -1), name='out')(out)


class MlpBlock(nn.Module):
  """Dense -> GELU -> dropout -> Dense -> dropout. x: [..., D] -> [..., out_dim or D]."""
  cfg: TransformerConfig
  out_dim: Optional[int] = None

  @nn.compact
  def __call__(self, x, *, deterministic: bool):
    cfg = self.cfg
    dense = functools.partial(
        nn.Dense, dtype=cfg.dtype, param_dtype=cfg.param_dtype,
        kernel_init=nn.initializers.xavier_uniform(),
        bias_init=nn.initializers.normal(stddev=1e-6))
    y = dense(cfg.mlp_dim, name='Dense_0')(x)
    y = nn.gelu(y, approximate=cfg.gelu_approximate)
    y = nn.Dropout(cfg.dropout_rate)(y, deterministic=deterministic)
    y = dense(self.out_dim or x.shape[-1], name='Dense_1')(y)
    return nn.Dropout(cfg.dropout_rate)(y, deterministic=deterministic)


class DropPath(nn.Module):
  """Stochastic depth: drops the whole residual branch per example, rescaling the rest.

  x: [B, ...]; uses the 'dropout' rng when training and `rate > 0`.
  """
  rate: float

  @nn.compact
  def __call__(self, x, *, deterministic: bool):
    if deterministic or self.rate == 0.0:
      return x
    keep_prob = 1.0 - self.rate
    shape = (x.shape[0],) + (1,) * (x.ndim - 1)
    keep = jax.random.bernoulli(self.make_rng('dropout'), keep_prob, shape)
    return jnp.where(keep, x / keep_prob, 0.0).astype(x.dtype)


class EncoderBlock(nn.Module):
  """Pre-norm transformer block: x + Attn(LN(x)), then x + MLP(LN(x)).

  x: [B, L, D] for joint attention; any shape `layout` understands otherwise.
  """
  cfg: TransformerConfig
  drop_path: float = 0.0
  layout: LayoutFn = joint_layout

  @nn.compact
  def __call__(self, x, deterministic: bool):
    cfg = self.cfg
    y = layer_norm(cfg, 'LayerNorm_0')(x)
    y = MultiHeadAttention(cfg, self.layout, name='MultiHeadDotProductAttention_0')(
        y, deterministic=deterministic)
    y = nn.Dropout(cfg.dropout_rate)(y, deterministic=deterministic)
    x = x + DropPath(self.drop_path)(y, deterministic=deterministic)
    y = layer_norm(cfg, 'LayerNorm_1')(x)
    y = MlpBlock(cfg, name='MlpBlock_0')(y, deterministic=deterministic)
    return x + DropPath(self.drop_path)(y, deterministic=deterministic)


class Encoder(nn.Module):
  """Position embedding, dropout, `num_layers` blocks, final LayerNorm.

  x: [B, L, D] -> [B, L, D]. `block` is the block class (EncoderBlock or a factorised
  one) called as `block(cfg, drop_path=..., name='encoderblock_i', **block_kwargs)`.
  The learned position embedding covers all L tokens (`posembed_input/pos_embedding`).
  """
  cfg: TransformerConfig
  block: Callable[..., nn.Module] = EncoderBlock
  block_kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict)

  @nn.compact
  def __call__(self, x, *, train: bool):
    cfg = self.cfg
    x = AddPositionEmbedding(cfg.param_dtype, name='posembed_input')(x)
    x = nn.Dropout(cfg.dropout_rate)(x, deterministic=not train)
    block = nn.remat(self.block, static_argnums=(2,)) if cfg.remat else self.block
    for i in range(cfg.num_layers):
      x = block(cfg, drop_path=cfg.drop_path_rate(i), name=f'encoderblock_{i}',
                **self.block_kwargs)(x, not train)
    return layer_norm(cfg, 'encoder_norm')(x)
