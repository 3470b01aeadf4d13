"""ViViT (Arnab et al., ICCV 2021): the four spatio-temporal attention factorisations.

All models take video: float32[B, T, H, W, C] (normalised pixels) and return logits
float32[B, num_classes]. The token embedding (`tubelet` or `uniform_frame`, see
embeddings.py) gives a grid of n_t x n_h x n_w tokens; let S = n_h * n_w.

  Model 1 `spatio_temporal`: all n_t*S tokens (+ CLS) through one encoder.
  Model 2 `factorised_encoder`: a spatial encoder (weights shared over time) per temporal
      index -> one representation per index (CLS or GAP) -> a temporal encoder with its
      own CLS; `temporal_num_layers=0` is the average-pool baseline.
  Model 3 `factorised_self_attention`: each block does spatial attention (same temporal
      index), then temporal attention (same spatial position), then the MLP; or time
      first with `attention_order='time_space'` (Scenic's default).
  Model 4 `factorised_dot_product`: in each attention layer, the first half of the heads
      attends over space, the other half over time; one output projection.
  Models 3 and 4 have no CLS token: their head reads the tokens' mean ('gap'), max ('gmp')
  or sum ('gsp'); the synthetic configs use 'gmp' (see README). Model 1 also has
  VideoMAE's head 'gap_fc_norm': the mean of the tokens without the encoder's final
  LayerNorm, then a LayerNorm `fc_norm` (the fine-tuning of a masked pretraining).

Parameter names follow Scenic's ViViT (`embedding`, `cls`, `Transformer/...`,
`SpatialTransformer`, `TemporalTransformer`, `cls_SpatialTransformer`,
`LayerNorm_space`, `MultiHeadDotProductAttention_time`, `output_projection`, ...).
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Optional, Sequence

import einops
import flax.linen as nn
import jax.numpy as jnp

from vivit_jax.errors import config_error
from vivit_jax.models import checks, embeddings
from vivit_jax.models.layers import (AttendFn, DropPath, Encoder, EncoderBlock, MlpBlock,
                                     MultiHeadAttention, TransformerConfig, layer_norm)

ATTENTION_TYPES = ('spatio_temporal', 'factorised_encoder', 'factorised_self_attention',
                   'factorised_dot_product')
# Model 3's sub-layer order: 'space_time' (the paper's figure) or 'time_space' (Scenic).
ATTENTION_ORDERS = ('space_time', 'time_space')
# Model 1 only: VideoMAE's fine-tuning head (use_mean_pooling): no LayerNorm on the
# tokens; their mean, then the LayerNorm `fc_norm`, then the projection.
FC_NORM = 'gap_fc_norm'


def factorised_dot_product_layout(query, key, value, attend: AttendFn, *,
                                  num_frames: int):
  """Model 4's attention: heads [:H/2] attend over space, heads [H/2:] over time.

  query, key, value: [B, n_t*S, H, Dh] (time-major token order) -> [B, n_t*S, H, Dh].
  A spatial head of token (t, s) sees only keys (t, *); a temporal head only (*, s).
  """
  half = query.shape[2] // 2
  to_space = functools.partial(einops.rearrange, pattern='b (t s) h d -> (b t) s h d',
                               t=num_frames)
  to_time = functools.partial(einops.rearrange, pattern='b (t s) h d -> (b s) t h d',
                              t=num_frames)
  spatial = attend(*(to_space(a[:, :, :half]) for a in (query, key, value)))
  temporal = attend(*(to_time(a[:, :, half:]) for a in (query, key, value)))
  batch = query.shape[0]
  spatial = einops.rearrange(spatial, '(b t) s h d -> b (t s) h d', b=batch)
  temporal = einops.rearrange(temporal, '(b s) t h d -> b (t s) h d', b=batch)
  return jnp.concatenate([spatial, temporal], axis=2)


class FactorisedSelfAttentionBlock(nn.Module):
  """Model 3 block. With attention_order='space_time':
  x + SpatialAttn(LN(x)); x + TemporalAttn(LN(x)); x + MLP(LN(x)); with 'time_space'
  the two attention sub-layers swap places (same parameters, different function).

  x: [B, n_t*S, D] (time-major token order) -> same shape.
  """
  cfg: TransformerConfig
  drop_path: float = 0.0
  num_frames: int = 1
  attention_order: str = 'space_time'

  @nn.compact
  def __call__(self, x, deterministic: bool):
    cfg = self.cfg
    if self.attention_order not in ATTENTION_ORDERS:
      raise ValueError(f'attention_order={self.attention_order!r}: expected one of '
                       f'{ATTENTION_ORDERS}.')
    x = einops.rearrange(x, 'b (t s) d -> b t s d', t=self.num_frames)
    axes = {'space': ('b t s d -> (b t) s d', '(b t) s d -> b t s d'),
            'time': ('b t s d -> (b s) t d', '(b s) t d -> b t s d')}
    for name in self.attention_order.split('_'):
      to_seq, from_seq = axes[name]
      y = layer_norm(cfg, f'LayerNorm_{name}')(x)
      y = einops.rearrange(y, to_seq)
      y = MultiHeadAttention(cfg, name=f'MultiHeadDotProductAttention_{name}')(
          y, deterministic=deterministic)
      y = einops.rearrange(y, from_seq, b=x.shape[0])
      y = nn.Dropout(cfg.dropout_rate)(y, deterministic=deterministic)
      x = x + DropPath(self.drop_path, self.cfg.stochastic_depth_rescale)(y, deterministic=deterministic)
    y = layer_norm(cfg, 'LayerNorm_mlp')(x)
    y = MlpBlock(cfg, name='MlpBlock')(y, deterministic=deterministic)
    x = x + DropPath(self.drop_path, self.cfg.stochastic_depth_rescale)(y, deterministic=deterministic)
    return einops.rearrange(x, 'b t s d -> b (t s) d')


class ViViT(nn.Module):
  """Models 1, 3 and 4: one encoder over all tokens; see the module docstring."""
  num_classes: int
  cfg: TransformerConfig
  attention_type: str = 'spatio_temporal'
  embedding: str = 'tubelet'
  patch_size: Sequence[int] = (16, 16)
  temporal_patch_size: int = 2
  classifier: str = 'token'
  representation_size: Optional[int] = None
  head_bias_init: float = 0.0
  attention_order: str = 'space_time'   # Model 3 only (FactorisedSelfAttentionBlock).

  @nn.compact
  def __call__(self, video, *, train: bool = False):
    cfg = self.cfg
    tokens = embeddings.embed_tokens(
        video, self.embedding, cfg.hidden_size, self.patch_size,
        self.temporal_patch_size, cfg.dtype, cfg.param_dtype)
    num_frames = tokens.shape[1]
    x = einops.rearrange(tokens, 'b t h w d -> b (t h w) d')
    if self.attention_type == 'spatio_temporal':
      block, block_kwargs = EncoderBlock, {}
    elif self.attention_type == 'factorised_self_attention':
      block = FactorisedSelfAttentionBlock
      block_kwargs = {'num_frames': num_frames, 'attention_order': self.attention_order}
    elif self.attention_type == 'factorised_dot_product':
      layout = functools.partial(factorised_dot_product_layout, num_frames=num_frames)
      block, block_kwargs = EncoderBlock, {'layout': layout}
    else:
      raise ValueError(f'attention_type {self.attention_type!r} is not an encoder-over-'
                       'all-tokens model; use FactorisedEncoderViViT for Model 2.')
    if self.classifier == 'token':
      x = embeddings.prepend_class_token(self, x)
    fc_norm = self.classifier == FC_NORM
    x = Encoder(cfg, block=block, block_kwargs=block_kwargs, final_norm=not fc_norm,
                name='Transformer')(x, train=train)
    x = embeddings.pool_tokens(x, 'gap' if fc_norm else self.classifier)
    if fc_norm:
      x = layer_norm(cfg, 'fc_norm')(x)
    return embeddings.classifier_head(x, self.num_classes, self.representation_size,
                                      self.head_bias_init, cfg.dtype, cfg.param_dtype)


class FactorisedEncoderViViT(nn.Module):
  """Model 2: spatial ViT per temporal index, then a temporal encoder (or average pool).

  `cfg` describes the spatial encoder (L_s = cfg.num_layers); the temporal encoder is
  the same width with `temporal_num_layers` (L_t) layers. `spatial_classifier` chooses
  the per-index representation, `classifier` the temporal one.
  """
  num_classes: int
  cfg: TransformerConfig
  temporal_num_layers: int = 4
  embedding: str = 'tubelet'
  patch_size: Sequence[int] = (16, 16)
  temporal_patch_size: int = 2
  classifier: str = 'token'
  spatial_classifier: str = 'token'
  representation_size: Optional[int] = None
  head_bias_init: float = 0.0

  @nn.compact
  def __call__(self, video, *, train: bool = False):
    cfg = self.cfg
    tokens = embeddings.embed_tokens(
        video, self.embedding, cfg.hidden_size, self.patch_size,
        self.temporal_patch_size, cfg.dtype, cfg.param_dtype)
    batch = tokens.shape[0]
    x = einops.rearrange(tokens, 'b t h w d -> (b t) (h w) d')
    if self.spatial_classifier == 'token':
      x = embeddings.prepend_class_token(self, x, 'cls_SpatialTransformer')
    x = Encoder(cfg, name='SpatialTransformer')(x, train=train)
    x = embeddings.pool_tokens(x, self.spatial_classifier)
    x = einops.rearrange(x, '(b t) d -> b t d', b=batch)
    if self.temporal_num_layers == 0:
      x = jnp.mean(x, axis=1)  # The paper's average-pool baseline.
    else:
      if self.classifier == 'token':
        x = embeddings.prepend_class_token(self, x, 'cls_TemporalTransformer')
      temporal_cfg = dataclasses.replace(cfg, num_layers=self.temporal_num_layers)
      x = Encoder(temporal_cfg, name='TemporalTransformer')(x, train=train)
      x = embeddings.pool_tokens(x, self.classifier)
    return embeddings.classifier_head(x, self.num_classes, self.representation_size,
                                      self.head_bias_init, cfg.dtype, cfg.param_dtype)


def validate(m, *, num_frames: int, crop_size: int) -> None:
  """Raises ConfigError for ViViT fields of `config.model` that cannot work."""
  checks.transformer(m)
  attention = m.get('attention_type')
  checks.choice('model.attention_type', attention, ATTENTION_TYPES)
  checks.choice('model.embedding', m.get('embedding'), embeddings.EMBEDDINGS)
  t = m.get('temporal_patch_size', 1)
  checks.positive_int('model.temporal_patch_size', t)
  if m.embedding == 'uniform_frame' and t != 1:
    raise config_error('model.temporal_patch_size', t,
                       "1 with model.embedding='uniform_frame' (2D patches per frame)")
  checks.patches(m, crop_size=crop_size, num_frames=num_frames, temporal_size=t)
  checks.choice('model.classifier', m.get('classifier'), embeddings.CLASSIFIERS + (FC_NORM,))
  if m.classifier == FC_NORM and attention != 'spatio_temporal':
    raise config_error('model.classifier', m.classifier,
                       f"{FC_NORM!r} only with model.attention_type='spatio_temporal'")
  if attention in ('factorised_self_attention', 'factorised_dot_product'):
    if m.classifier not in embeddings.POOLED_CLASSIFIERS:
      raise config_error('model.classifier', m.classifier,
                         f'one of {embeddings.POOLED_CLASSIFIERS} for model.attention_type='
                         f'{attention!r} (it has no CLS token)')
  order = m.get('attention_order', 'space_time')
  checks.choice('model.attention_order', order, ATTENTION_ORDERS)
  if order != 'space_time' and attention != 'factorised_self_attention':
    raise config_error('model.attention_order', order,
                       "'space_time' (the default) for model.attention_type="
                       f"{attention!r}: only 'factorised_self_attention' (Model 3) has "
                       'ordered spatial/temporal sub-layers')
  if attention == 'factorised_dot_product' and m.num_heads % 2:
    raise config_error('model.num_heads', m.num_heads,
                       "an even number for 'factorised_dot_product' (half the heads attend "
                       'over space, half over time)')
  if attention == 'factorised_encoder':
    checks.choice('model.spatial_classifier', m.get('spatial_classifier', 'token'),
                  embeddings.CLASSIFIERS)
    lt = m.get('temporal_num_layers')
    if not isinstance(lt, int) or isinstance(lt, bool) or lt < 0:
      raise config_error('model.temporal_num_layers', lt,
                         'an integer >= 0 (0 = the average-pool baseline)')


def build(m, num_classes: int):
  """The ViViT of `config.model` (see the module docstring)."""
  common = dict(num_classes=num_classes, cfg=TransformerConfig.from_model_config(m),
                embedding=m.embedding, patch_size=tuple(m.patch_size),
                temporal_patch_size=m.get('temporal_patch_size', 1),
                classifier=m.classifier, representation_size=m.get('representation_size'),
                head_bias_init=m.get('head_bias_init', 0.0))
  if m.attention_type == 'factorised_encoder':
    return FactorisedEncoderViViT(
        temporal_num_layers=m.temporal_num_layers,
        spatial_classifier=m.get('spatial_classifier', 'token'), **common)
  return ViViT(attention_type=m.attention_type,
                     attention_order=m.get('attention_order', 'space_time'), **common)
