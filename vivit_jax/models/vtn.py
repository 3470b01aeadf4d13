"""VTN, Video Transformer Network (Neimark et al., ICCVW 2021).

video: float32[B, T, H, W, C] -> logits float32[B, num_classes]:
  1. spatial backbone: an image ViT (vit.ViT, num_classes=None) on every frame (T folded
     into the batch) -> one representation per frame [B, T, D] (its CLS token);
  2. temporal encoder over [CLS, frame_1 .. frame_T] with its own CLS token and learned
     position embedding; attention is windowed (`temporal_window`) or full (None);
  3. MLP head on the temporal CLS: LayerNorm -> Dense(head_mlp_dim) -> GELU -> dropout
     -> Dense(num_classes).

The paper's temporal encoder is a Longformer: sliding-window attention so whole videos fit,
with global attention for CLS. `sliding_window_layout` gives that attention pattern as a
`layout` of the shared MultiHeadAttention: token i attends to j iff |i - j| <= window // 2,
and CLS attends to / is attended by every token. It is a banded boolean mask over the full
[L, L] logits: the temporal axis is short (one token per frame), so the quadratic mask is
cheap; Longformer's chunked kernel only pays off for thousands of tokens. Differences from
the Longformer of the original code (bomri/SlowFast `VTNLongformerModel`): our encoder is
the shared pre-LayerNorm block (Longformer is post-LN BERT), global attention reuses the
local query/key/value projections (Longformer has separate `*_global` ones, 3 x D^2 more
params per layer), and positions are learned per index of the clip (the original embeds
each frame's index in the video, modulo `MAX_POSITION_EMBEDDINGS`).

Config fields (config.model): the backbone ViT: hidden_size D, num_layers, num_heads,
mlp_dim, patch_size, classifier ('token', or pooled 'gap'|'gmp'|'gsp'); the temporal
encoder (width D): temporal_num_layers (3), temporal_num_heads (12), temporal_mlp_dim
(3072), temporal_window (18; None = full attention), temporal_dropout_rate (0.1),
temporal_attention_dropout_rate (0.1); head_mlp_dim (768), head_dropout_rate (0.5);
dropout_rate / attention_dropout_rate (the backbone's), stochastic_depth (both encoders,
each linear in its own depth), layer_norm_epsilon, dtype, param_dtype, attention_impl,
remat. VTN with ViT-B (configs/kinetics400/vtn_vit_b.py) has 107.98M params; the
original's separate global q/k/v projections would add 3 x 3 x (D^2 + D) = 5.3M.

Parameter tree (original names on the right):
  backbone/...                             backbone (timm ViT-B/16; see vit.py for names)
  cls [1, 1, D]                            cls_token
  TemporalTransformer/                     temporal_encoder
    posembed_input/pos_embedding [1, 1+T, D]   embeddings.position_embeddings (per index)
    encoderblock_i/...                         encoder.layer.i (post-LN there)
    encoder_norm
  head_norm, head_hidden, output_projection  mlp_head.0 / mlp_head.1 / mlp_head.4
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Optional, Sequence

import einops
import flax.linen as nn
import ml_collections
import numpy as np

from vivit_jax.errors import config_error
from vivit_jax.models import checks, embeddings, vit
from vivit_jax.models.layers import (AttendFn, Encoder, TransformerConfig, joint_layout,
                                     layer_norm, shared_model_options)
from vivit_jax.ops import dense as dense_ops
from vivit_jax.ops.gelu import gelu


def sliding_window_mask(length: int, window: int, num_global: int = 1) -> np.ndarray:
  """bool[L, L]: i may attend to j iff |i - j| <= window // 2, or i or j < num_global."""
  i = np.arange(length)
  mask = np.abs(i[:, None] - i[None, :]) <= window // 2
  mask[:num_global, :] = True
  mask[:, :num_global] = True
  return mask


def sliding_window_layout(query, key, value, attend: AttendFn, *, window: int,
                          num_global: int = 1):
  """Longformer-style local attention plus global tokens (see the module docstring).

  query, key, value: [B, L, H, Dh], the first `num_global` tokens global -> [B, L, H, Dh].
  """
  mask = sliding_window_mask(query.shape[1], window, num_global)
  return attend(query, key, value, mask=mask[None, None])


class VTN(nn.Module):
  """ViT per frame -> temporal encoder with CLS -> MLP head; see the module docstring."""
  num_classes: int
  cfg: TransformerConfig            # The backbone ViT.
  temporal_cfg: TransformerConfig   # The temporal encoder (hidden_size = cfg.hidden_size).
  patch_size: Sequence[int] = (16, 16)
  classifier: str = 'token'         # The backbone's per-frame representation.
  temporal_window: Optional[int] = 18
  head_mlp_dim: int = 768
  head_dropout_rate: float = 0.5

  @nn.compact
  def __call__(self, video, *, train: bool = False):
    cfg = self.cfg
    frames = einops.rearrange(video, 'b t h w c -> (b t) h w c')
    x = vit.ViT(num_classes=None, cfg=cfg, patch_size=self.patch_size,
                classifier=self.classifier, name='backbone')(frames, train=train)
    x = einops.rearrange(x, '(b t) d -> b t d', b=video.shape[0])
    x = embeddings.prepend_class_token(self, x, 'cls')
    layout = joint_layout
    if self.temporal_window is not None:
      layout = functools.partial(sliding_window_layout, window=self.temporal_window)
    x = Encoder(self.temporal_cfg, block_kwargs={'layout': layout},
                name='TemporalTransformer')(x, train=train)
    x = layer_norm(self.temporal_cfg, 'head_norm')(x[:, 0])
    x = nn.Dense(self.head_mlp_dim, dtype=cfg.dtype, param_dtype=cfg.param_dtype,
                 dot_general=dense_ops.dot_general, name='head_hidden')(x)
    x = gelu(x, cfg.gelu_approximate)
    x = nn.Dropout(self.head_dropout_rate)(x, deterministic=not train)
    return embeddings.classifier_head(x, self.num_classes, dtype=cfg.dtype,
                                      param_dtype=cfg.param_dtype)


def temporal_config(cfg: TransformerConfig, *, num_layers: int, num_heads: int,
                    mlp_dim: int, dropout_rate: float,
                    attention_dropout_rate: float) -> TransformerConfig:
  """The temporal encoder's config: the backbone's width and options, its own depth."""
  return dataclasses.replace(cfg, num_layers=num_layers, num_heads=num_heads,
                             mlp_dim=mlp_dim, dropout_rate=dropout_rate,
                             attention_dropout_rate=attention_dropout_rate)


def model_config(backbone: str = 'B') -> ml_collections.ConfigDict:
  """`config.model` of VTN with a ViT-`backbone` (ViT paper sizes) on 224^2 frames and
  the original Longformer temporal encoder (bomri/SlowFast configs/Kinetics/VIT_B_VTN):
  3 layers, 12 heads, MLP 3072, window 18, dropout 0.1; head MLP 768, dropout 0.5."""
  m = ml_collections.ConfigDict()
  m.name = 'vtn'
  vit.set_vit_size(m, backbone)
  m.patch_size = (16, 16)
  m.classifier = 'token'
  m.temporal_num_layers, m.temporal_num_heads, m.temporal_mlp_dim = 3, 12, 3072
  m.temporal_window = 18
  m.temporal_dropout_rate = m.temporal_attention_dropout_rate = 0.1
  m.head_mlp_dim, m.head_dropout_rate = 768, 0.5
  m.dropout_rate = m.attention_dropout_rate = m.stochastic_depth = 0.0
  return shared_model_options(m)


def validate(m, *, num_frames: int, crop_size: int) -> None:
  """Raises ConfigError for VTN fields of `config.model` that cannot work."""
  del num_frames
  checks.transformer(m)
  checks.patches(m, crop_size=crop_size)
  if m.get('classifier', 'token') not in embeddings.CLASSIFIERS:
    raise config_error('model.classifier', m.classifier,
                       f'one of {embeddings.CLASSIFIERS}')
  for field in ('temporal_num_layers', 'temporal_num_heads', 'temporal_mlp_dim',
                'head_mlp_dim'):
    checks.positive_int(f'model.{field}', m.get(field))
  if m.hidden_size % m.temporal_num_heads:
    raise config_error('model.temporal_num_heads', m.temporal_num_heads,
                       f'a divisor of model.hidden_size={m.hidden_size}')
  for field in ('temporal_dropout_rate', 'temporal_attention_dropout_rate'):
    checks.rate(f'model.{field}', m.get(field, 0.0))
  window = m.get('temporal_window')
  if window is not None:
    checks.positive_int('model.temporal_window', window)


def build(m, num_classes: int) -> VTN:
  """The VTN of `config.model` (see the module docstring for its fields)."""
  cfg = TransformerConfig.from_model_config(m)
  temporal = temporal_config(
      cfg, num_layers=m.temporal_num_layers, num_heads=m.temporal_num_heads,
      mlp_dim=m.temporal_mlp_dim, dropout_rate=m.get('temporal_dropout_rate', 0.0),
      attention_dropout_rate=m.get('temporal_attention_dropout_rate', 0.0))
  return VTN(num_classes=num_classes, cfg=cfg, temporal_cfg=temporal,
             patch_size=tuple(m.patch_size), classifier=m.get('classifier', 'token'),
             temporal_window=m.get('temporal_window'),
             head_mlp_dim=m.head_mlp_dim, head_dropout_rate=m.get('head_dropout_rate', 0.5))
