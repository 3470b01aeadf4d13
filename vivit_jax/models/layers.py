"""Shared transformer blocks: attention, MLP, stochastic depth, encoder blocks.

Every model family builds on these; nothing here knows about video or backends (the
kernels are `vivit_jax.ops`'s). Parameter names
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
from vivit_jax.ops import dense as dense_ops
from vivit_jax.ops.attention import (attend_with_probs, attention_probs,
                                     canonical_attention_impl, dot_product_attention)
from vivit_jax.ops.gelu import gelu
from vivit_jax.ops.layer_norm import layer_norm_rows

# What `nn.remat` keeps from the forward pass of a block (config.model.remat_policy);
# everything else is recomputed in the backward pass.
REMAT_POLICIES = {
    'nothing_saveable': jax.checkpoint_policies.nothing_saveable,   # least memory.
    'dots_saveable': jax.checkpoint_policies.dots_saveable,   # matmul outputs kept.
    'dots_with_no_batch_dims_saveable':   # dense-layer outputs kept, attention recomputed.
        jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
    'everything_saveable': jax.checkpoint_policies.everything_saveable,   # = no remat.
}


# The variable collection attention weights are sown into when it is mutable (see
# MultiHeadAttention); the default forward pass never builds them.
ATTENTION_WEIGHTS = 'attention_weights'


# The numerics/memory options every family shares, with their defaults (config.model
# fields of the same name; `shared_model_options` writes them into a model config).
SHARED_OPTIONS = {
    'layer_norm_epsilon': 1e-6,
    'gelu_approximate': False,      # False: exact erf GELU; True: tanh approximation.
    'dtype': 'float32',             # compute dtype ('float32' or 'bfloat16').
    'param_dtype': 'float32',
    'attention_impl': 'auto',       # see vivit_jax.ops.attention.
    'remat': False,                 # nn.remat each block (less memory, more compute).
    'remat_policy': 'nothing_saveable',   # what remat keeps: REMAT_POLICIES.
    # Stochastic depth: True divides a kept residual branch by its keep probability
    # (timm, PySlowFast, Video Swin); False keeps it as is (Scenic's droplayer, ViViT).
    'stochastic_depth_rescale': True,
}


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
  layer_norm_epsilon: float = SHARED_OPTIONS['layer_norm_epsilon']
  gelu_approximate: bool = SHARED_OPTIONS['gelu_approximate']
  dtype: Any = jnp.dtype(SHARED_OPTIONS['dtype'])
  param_dtype: Any = jnp.dtype(SHARED_OPTIONS['param_dtype'])
  attention_impl: str = SHARED_OPTIONS['attention_impl']
  remat: bool = SHARED_OPTIONS['remat']
  remat_policy: str = SHARED_OPTIONS['remat_policy']
  stochastic_depth_rescale: bool = SHARED_OPTIONS['stochastic_depth_rescale']

  def __post_init__(self):
    # 'xla' (deprecated) -> 'auto', with a FutureWarning; unknown names are refused.
    object.__setattr__(self, 'attention_impl', canonical_attention_impl(self.attention_impl))

  @classmethod
  def from_model_config(cls, model_config, **overrides) -> 'TransformerConfig':
    """Builds the config from a `config.model` ConfigDict (fields of the same name)."""
    m = model_config
    kwargs = {f.name: m[f.name] for f in dataclasses.fields(cls) if f.name in m}
    for field in ('dtype', 'param_dtype'):
      if field in kwargs:
        kwargs[field] = jnp.dtype(kwargs[field])
    kwargs.update(overrides)
    return cls(**kwargs)

  @classmethod
  def from_shared_options(cls, model_config) -> 'TransformerConfig':
    """The shared options of `config.model` (dropout, stochastic depth, LayerNorm
    epsilon, GELU, dtypes, attention impl, remat) for families whose sizes vary per
    stage: hidden_size/num_layers/num_heads/mlp_dim are placeholders (1) that the family
    replaces per stage or block."""
    sizes = {'hidden_size': 1, 'num_layers': 1, 'num_heads': 1, 'mlp_dim': 1}
    return cls.from_model_config(model_config, **sizes)

  def drop_path_rate(self, layer: int) -> float:
    return layer / max(self.num_layers - 1, 1) * self.stochastic_depth

  def maybe_remat(self, block: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """`block` wrapped in `nn.remat` with `remat_policy` when `remat` is on.

    The block is called as `block(...)(x, deterministic)`: `deterministic` (argument 2
    counting the module) is static.
    """
    if not self.remat:
      return block
    if self.remat_policy not in REMAT_POLICIES:
      raise ValueError(f'remat_policy {self.remat_policy!r} is invalid: expected one of '
                       f'{sorted(REMAT_POLICIES)}.')
    return nn.remat(block, static_argnums=(2,), policy=REMAT_POLICIES[self.remat_policy])


class LayerNorm(nn.Module):
  """LayerNorm over the last axis: x [..., C] -> x's shape, `dtype` (default: x's).

  `nn.LayerNorm`'s parameters (`scale`, `bias`) and arithmetic (float32 statistics,
  var = E[x^2] - E[x]^2 clipped at 0, y = (x - mean) * rsqrt(var + eps) * scale + bias),
  computed on a [rows, C] view by `ops.layer_norm.layer_norm_rows`. Why not
  `nn.LayerNorm` itself: XLA:CPU parallelises a reduction over its outer axis only, so on
  a [1, N, C] input (a batch-1 step) the backward pass's row reductions ran on one
  thread, about 10x slower.
  """
  epsilon: float = 1e-6
  dtype: Optional[Any] = None
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    c = x.shape[-1]
    scale = self.param('scale', nn.initializers.ones, (c,), self.param_dtype)
    bias = self.param('bias', nn.initializers.zeros, (c,), self.param_dtype)
    y = layer_norm_rows(x.reshape(-1, c), scale, bias, self.epsilon)
    dtype = nn.dtypes.canonicalize_dtype(x, scale, dtype=self.dtype)
    return y.astype(dtype).reshape(x.shape)


def shared_model_options(model, *, layer_norm_epsilon: float = 1e-6):
  """Sets `SHARED_OPTIONS` in the model ConfigDict `model` (with this LayerNorm epsilon:
  1e-6 for ViT-style models, 1e-5 for the PyTorch-born ones); returns it."""
  model.update(SHARED_OPTIONS)
  model.layer_norm_epsilon = layer_norm_epsilon
  return model


def layer_norm(cfg: TransformerConfig, name: Optional[str] = None) -> LayerNorm:
  return LayerNorm(epsilon=cfg.layer_norm_epsilon, dtype=cfg.dtype,
                   param_dtype=cfg.param_dtype, name=name)


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

  Attention weights on request: when the `ATTENTION_WEIGHTS` collection is mutable
  (`apply(..., mutable=[ATTENTION_WEIGHTS])`, see models/attention_maps.py), every call
  of the layout's `attend` takes the explicit path (`ops.attention.attention_probs`) and
  sows its softmax probabilities float32[B', heads', Lq, Lk] as `weights`, one entry per
  call in call order (B' and heads' are the layout's: e.g. (B*T, heads) for a spatial
  layout, two calls over half the heads each for Model 4). Otherwise nothing changes:
  the configured kernel runs and no weights are built (also in `init`, where every
  collection is mutable).
  """
  cfg: TransformerConfig
  layout: LayoutFn = joint_layout

  def _attend_and_record(self, query, key, value, *, bias=None, mask=None,
                         dropout_rate=0.0, dropout_rng=None):
    probs = attention_probs(query, key, bias=bias, mask=mask)
    self.sow(ATTENTION_WEIGHTS, 'weights', probs)
    return attend_with_probs(probs, value, dropout_rate=dropout_rate,
                             dropout_rng=dropout_rng)

  @nn.compact
  def __call__(self, x, *, deterministic: bool):
    cfg = self.cfg
    head_dim = cfg.hidden_size // cfg.num_heads
    dense = functools.partial(
        nn.DenseGeneral, dtype=cfg.dtype, param_dtype=cfg.param_dtype,
        dot_general=dense_ops.dot_general,
        kernel_init=nn.initializers.xavier_uniform())
    q, k, v = (dense(features=(cfg.num_heads, head_dim), name=n)(x)
               for n in ('query', 'key', 'value'))
    rng = None
    if cfg.attention_dropout_rate > 0.0 and not deterministic:
      rng = self.make_rng('dropout')
    dropout_rate = 0.0 if deterministic else cfg.attention_dropout_rate
    if self.is_mutable_collection(ATTENTION_WEIGHTS) and not self.is_initializing():
      attend = functools.partial(self._attend_and_record, dropout_rate=dropout_rate,
                                 dropout_rng=rng)
    else:
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
        dot_general=dense_ops.dot_general,
        kernel_init=nn.initializers.xavier_uniform(),
        bias_init=nn.initializers.normal(stddev=1e-6))
    y = dense(cfg.mlp_dim, name='Dense_0')(x)
    y = gelu(y, cfg.gelu_approximate)
    y = nn.Dropout(cfg.dropout_rate)(y, deterministic=deterministic)
    y = dense(self.out_dim or x.shape[-1], name='Dense_1')(y)
    return nn.Dropout(cfg.dropout_rate)(y, deterministic=deterministic)


class DropPath(nn.Module):
  """Stochastic depth: drops the whole residual branch per example.

  x: [B, ...]; uses the 'dropout' rng when training and `rate > 0`. `rescale`: a kept
  branch is divided by the keep probability 1 - rate (timm's drop_path; expected value
  unchanged), or kept as is (Scenic's droplayer, which ViViT's reference uses).
  """
  rate: float
  rescale: bool = True

  @nn.compact
  def __call__(self, x, *, deterministic: bool):
    if deterministic or self.rate == 0.0:
      return x
    keep_prob = 1.0 - self.rate
    shape = (x.shape[0],) + (1,) * (x.ndim - 1)
    keep = jax.random.bernoulli(self.make_rng('dropout'), keep_prob, shape)
    kept = x / keep_prob if self.rescale else x
    return jnp.where(keep, kept, 0.0).astype(x.dtype)


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
    x = x + DropPath(self.drop_path, self.cfg.stochastic_depth_rescale)(y, deterministic=deterministic)
    y = layer_norm(cfg, 'LayerNorm_1')(x)
    y = MlpBlock(cfg, name='MlpBlock_0')(y, deterministic=deterministic)
    return x + DropPath(self.drop_path, self.cfg.stochastic_depth_rescale)(y, deterministic=deterministic)


class Encoder(nn.Module):
  """Position embedding, dropout, `num_layers` blocks, final LayerNorm.

  x: [B, L, D] -> [B, L, D]. `block` is the block class (EncoderBlock or a factorised
  one) called as `block(cfg, drop_path=..., name='encoderblock_i', **block_kwargs)`.
  The learned position embedding covers all L tokens (`posembed_input/pos_embedding`).
  `keep`: int32[B, K] token indices; after the position embedding only these K tokens
  go through the blocks (masked autoencoding, models/videomae.py) -> [B, K, D].
  `final_norm=False` leaves out `encoder_norm` (a head that normalises after pooling:
  VideoMAE's fc_norm, vivit.py). `posemb_init`: the position embedding's initialiser
  (None: AddPositionEmbedding's default).
  """
  cfg: TransformerConfig
  block: Callable[..., nn.Module] = EncoderBlock
  block_kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  final_norm: bool = True
  posemb_init: Optional[Callable] = None

  @nn.compact
  def __call__(self, x, *, train: bool, keep: Optional[jax.Array] = None):
    cfg = self.cfg
    init = {'init': self.posemb_init} if self.posemb_init is not None else {}
    x = AddPositionEmbedding(cfg.param_dtype, name='posembed_input', **init)(x)
    if keep is not None:
      x = jnp.take_along_axis(x, keep[..., None], axis=1)
    x = nn.Dropout(cfg.dropout_rate)(x, deterministic=not train)
    block = cfg.maybe_remat(self.block)
    for i in range(cfg.num_layers):
      x = block(cfg, drop_path=cfg.drop_path_rate(i), name=f'encoderblock_{i}',
                **self.block_kwargs)(x, not train)
    return layer_norm(cfg, 'encoder_norm')(x) if self.final_norm else x
