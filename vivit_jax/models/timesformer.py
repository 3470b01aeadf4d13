"""TimeSformer (Bertasius et al., ICML 2021): "Is space-time attention all you need?".

video: float32[B, T, H, W, C] -> logits float32[B, num_classes]. Each frame is cut into
S = (H/ph)(W/pw) patches by one Conv2D (`embedding`, the image ViT's patch embedding); a
CLS token is added, then a spatial position embedding over CLS + one frame's patches
(`pos_embed`, shared by all frames) and a temporal one over frames (`time_embed`, patches
only). `attention_type` (config.model.attention_type) picks the block:

  `divided_space_time` (the paper's model): per block, temporal attention over the T
      patches at one spatial position (own LayerNorm, attention and a `temporal_fc` Dense,
      residual), then spatial attention within each frame where the CLS token joins every
      frame's S patches and its T per-frame outputs are averaged, then the MLP.
  `joint_space_time`: every block attends over all 1 + T*S tokens (ViViT Model 1 style).
  `space_only`: frames are encoded independently, each with its own copy of CLS and no
      temporal embedding; the T outputs are averaged before the final LayerNorm.

The token order inside the model is time-major (t, s); the original is space-major
(h w t): order does not change the function, only the reshapes.

Parameter tree (config.model: hidden_size D, num_layers, num_heads, mlp_dim, patch_size)
and the original facebookresearch/TimeSformer (= HF `TimesformerModel`) names:
  embedding/{kernel [ph, pw, C, D], bias}     model.patch_embed.proj (Conv2d, transposed)
  cls [1, 1, D]                               model.cls_token
  pos_embed [1, 1 + S, D]                     model.pos_embed
  time_embed [1, T, D]                        model.time_embed (not in space_only)
  encoderblock_i/                             model.blocks.i.
    LayerNorm_time                              temporal_norm1          (divided only)
    MultiHeadDotProductAttention_time           temporal_attn           (divided only)
      {query,key,value}/kernel [D, heads, Dh]     qkv.weight split in three, reshaped
      out/kernel [heads, Dh, D]                   proj
    temporal_fc [D, D]                          temporal_fc             (divided only)
    LayerNorm_0, MultiHeadDotProductAttention_0 norm1, attn
    LayerNorm_1, MlpBlock_0/Dense_{0,1}         norm2, mlp.fc1 / mlp.fc2
  encoder_norm                                model.norm
  output_projection                           model.head
`temporal_fc` starts at zero (the original zeroes it in every block but the first), so a
fresh divided model is a per-frame ViT with averaged CLS. Differences from the original:
stochastic depth drops a residual branch per example (the original's spatial branch is
dropped per (example, frame)); there is no position-embedding interpolation for other
input sizes (build the model for the size you run).
"""
from __future__ import annotations

import functools
from typing import Optional, Sequence

import einops
import flax.linen as nn
import jax.numpy as jnp

from vivit_jax.errors import config_error
from vivit_jax.models import checks, embeddings
from vivit_jax.models.layers import (AttendFn, DropPath, EncoderBlock, MlpBlock,
                                     MultiHeadAttention, TransformerConfig, layer_norm)
from vivit_jax.ops import dense as dense_ops

ATTENTION_TYPES = ('divided_space_time', 'joint_space_time', 'space_only')


def space_with_cls_layout(query, key, value, attend: AttendFn, *, num_frames: int):
  """Divided attention's spatial step: per frame, the sequence [CLS, that frame's S tokens].

  query, key, value: [B, 1 + T*S, H, Dh] (CLS first, then time-major tokens) -> same.
  Patch (t, s) attends to CLS and the patches of frame t; CLS attends within each frame
  and its T per-frame outputs are averaged (before the output projection, which is
  affine, so it equals the original's average after it).
  """
  def per_frame(a):
    cls = einops.repeat(a[:, :1], 'b 1 h d -> (b t) 1 h d', t=num_frames)
    tokens = einops.rearrange(a[:, 1:], 'b (t s) h d -> (b t) s h d', t=num_frames)
    return jnp.concatenate([cls, tokens], axis=1)

  out = attend(per_frame(query), per_frame(key), per_frame(value))
  out = einops.rearrange(out, '(b t) n h d -> b t n h d', t=num_frames)
  cls = jnp.mean(out[:, :, :1], axis=1)
  tokens = einops.rearrange(out[:, :, 1:], 'b t s h d -> b (t s) h d')
  return jnp.concatenate([cls, tokens], axis=1)


class DividedSpaceTimeBlock(nn.Module):
  """TimeSformer block: temporal attention + temporal_fc, spatial attention with CLS, MLP.

  x: [B, 1 + T*S, D] (CLS first, then time-major tokens) -> same shape.
  """
  cfg: TransformerConfig
  drop_path: float = 0.0
  num_frames: int = 1

  @nn.compact
  def __call__(self, x, deterministic: bool):
    cfg = self.cfg
    drop_path = DropPath(self.drop_path, self.cfg.stochastic_depth_rescale)
    # Temporal: the T patches at one spatial position attend to each other; CLS waits.
    cls, tokens = x[:, :1], x[:, 1:]
    y = einops.rearrange(tokens, 'b (t s) d -> (b s) t d', t=self.num_frames)
    y = layer_norm(cfg, 'LayerNorm_time')(y)
    y = MultiHeadAttention(cfg, name='MultiHeadDotProductAttention_time')(
        y, deterministic=deterministic)
    y = nn.Dropout(cfg.dropout_rate)(y, deterministic=deterministic)
    y = einops.rearrange(y, '(b s) t d -> b (t s) d', b=x.shape[0])
    y = drop_path(y, deterministic=deterministic)
    y = nn.Dense(x.shape[-1], dtype=cfg.dtype, param_dtype=cfg.param_dtype,
                 dot_general=dense_ops.dot_general, kernel_init=nn.initializers.zeros,
                 name='temporal_fc')(y)
    x = jnp.concatenate([cls, tokens + y], axis=1)
    # Spatial, CLS joined to every frame; then the MLP.
    layout = functools.partial(space_with_cls_layout, num_frames=self.num_frames)
    y = layer_norm(cfg, 'LayerNorm_0')(x)
    y = MultiHeadAttention(cfg, layout, name='MultiHeadDotProductAttention_0')(
        y, deterministic=deterministic)
    y = nn.Dropout(cfg.dropout_rate)(y, deterministic=deterministic)
    x = x + drop_path(y, deterministic=deterministic)
    y = layer_norm(cfg, 'LayerNorm_1')(x)
    y = MlpBlock(cfg, name='MlpBlock_0')(y, deterministic=deterministic)
    return x + drop_path(y, deterministic=deterministic)


class TimeSformer(nn.Module):
  """TimeSformer over video [B, T, H, W, C]; see the module docstring."""
  num_classes: int
  cfg: TransformerConfig
  attention_type: str = 'divided_space_time'
  patch_size: Sequence[int] = (16, 16)
  representation_size: Optional[int] = None
  head_bias_init: float = 0.0

  @nn.compact
  def __call__(self, video, *, train: bool = False):
    cfg = self.cfg
    if self.attention_type not in ATTENTION_TYPES:
      raise ValueError(f'attention_type {self.attention_type!r} is invalid: expected one '
                       f'of {ATTENTION_TYPES}.')
    tokens = embeddings.embed_tokens(video, 'uniform_frame', cfg.hidden_size,
                                     self.patch_size, dtype=cfg.dtype,
                                     param_dtype=cfg.param_dtype)
    batch, num_frames = tokens.shape[:2]
    tokens = einops.rearrange(tokens, 'b t h w d -> b t (h w) d')
    init = nn.initializers.normal(stddev=0.02)
    shape = (1, 1 + tokens.shape[2], cfg.hidden_size)
    pos = self.param('pos_embed', init, shape, cfg.param_dtype).astype(cfg.dtype)
    cls = self.param('cls', init, (1, 1, cfg.hidden_size), cfg.param_dtype).astype(cfg.dtype)
    dropout = nn.Dropout(cfg.dropout_rate, deterministic=not train)
    tokens = dropout(tokens + pos[:, None, 1:])
    cls = dropout(jnp.broadcast_to(cls + pos[:, :1], (batch, 1, cfg.hidden_size)))

    block, block_kwargs = EncoderBlock, {}
    if self.attention_type == 'space_only':
      cls = einops.repeat(cls, 'b 1 d -> (b t) 1 d', t=num_frames)
      x = jnp.concatenate([cls, einops.rearrange(tokens, 'b t s d -> (b t) s d')], axis=1)
    else:
      time = self.param('time_embed', init, (1, num_frames, cfg.hidden_size),
                        cfg.param_dtype).astype(cfg.dtype)
      tokens = dropout(tokens + time[:, :, None])
      x = jnp.concatenate([cls, einops.rearrange(tokens, 'b t s d -> b (t s) d')], axis=1)
      if self.attention_type == 'divided_space_time':
        block, block_kwargs = DividedSpaceTimeBlock, {'num_frames': num_frames}
    block = cfg.maybe_remat(block)
    for i in range(cfg.num_layers):
      x = block(cfg, drop_path=cfg.drop_path_rate(i), name=f'encoderblock_{i}',
                **block_kwargs)(x, not train)
    if self.attention_type == 'space_only':  # Average the frames' tokens, as the original.
      x = jnp.mean(einops.rearrange(x, '(b t) n d -> b t n d', b=batch), axis=1)
    x = layer_norm(cfg, 'encoder_norm')(x)[:, 0]
    return embeddings.classifier_head(x, self.num_classes, self.representation_size,
                                      self.head_bias_init, cfg.dtype, cfg.param_dtype)


def validate(m, *, num_frames: int, crop_size: int) -> None:
  """Raises ConfigError for TimeSformer fields of `config.model` that cannot work."""
  del num_frames
  checks.transformer(m)
  checks.patches(m, crop_size=crop_size)
  if m.get('attention_type') not in ATTENTION_TYPES:
    raise config_error('model.attention_type', m.get('attention_type'),
                       f'one of {list(ATTENTION_TYPES)} for model.name=\'timesformer\'')
  if m.get('classifier', 'token') != 'token':
    raise config_error('model.classifier', m.classifier,
                       "'token' (TimeSformer classifies its CLS token)")


def build(m, num_classes: int) -> TimeSformer:
  """The TimeSformer of `config.model` (see the module docstring for its fields)."""
  return TimeSformer(num_classes=num_classes, cfg=TransformerConfig.from_model_config(m),
                     attention_type=m.attention_type, patch_size=tuple(m.patch_size),
                     representation_size=m.get('representation_size'),
                     head_bias_init=m.get('head_bias_init', 0.0))
