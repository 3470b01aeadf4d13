"""Image ViT (Dosovitskiy et al. 2021): the backbone of VTN and the source of ViViT init.

images: float32[B, H, W, C] -> logits float32[B, num_classes] (or the pooled
representation [B, D] when `num_classes` is None). Parameter tree (Scenic/big_vision
names): embedding/{kernel [ph, pw, C, D], bias}, cls [1, 1, D] (token classifier),
Transformer/{posembed_input/pos_embedding [1, N(+1), D], encoderblock_i/..., encoder_norm},
pre_logits (if representation_size), output_projection.
"""
from __future__ import annotations

from typing import Optional, Sequence

import einops
import flax.linen as nn

from vivit_jax.models import checks, embeddings
from vivit_jax.models.layers import Encoder, TransformerConfig

SIZES = {  # (hidden_size, num_layers, num_heads, mlp_dim) of the ViT paper.
    'Ti': (192, 12, 3, 768),
    'S': (384, 12, 6, 1536),
    'B': (768, 12, 12, 3072),
    'L': (1024, 24, 16, 4096),
    'H': (1280, 32, 16, 5120),
}


class ViT(nn.Module):
  """Vision Transformer over one image; see the module docstring for shapes."""
  num_classes: Optional[int]
  cfg: TransformerConfig
  patch_size: Sequence[int] = (16, 16)
  classifier: str = 'token'
  representation_size: Optional[int] = None
  head_bias_init: float = 0.0

  @nn.compact
  def __call__(self, images, *, train: bool = False):
    cfg = self.cfg
    x = embeddings.embed_tokens(images[:, None], 'uniform_frame', cfg.hidden_size,
                                self.patch_size, dtype=cfg.dtype,
                                param_dtype=cfg.param_dtype)
    x = einops.rearrange(x, 'b 1 h w d -> b (h w) d')
    if self.classifier == 'token':
      x = embeddings.prepend_class_token(self, x)
    x = Encoder(cfg, name='Transformer')(x, train=train)
    x = embeddings.pool_tokens(x, self.classifier)
    if self.num_classes is None:
      return x
    return embeddings.classifier_head(x, self.num_classes, self.representation_size,
                                      self.head_bias_init, cfg.dtype, cfg.param_dtype)


def set_vit_size(model, size: str):
  """Sets hidden_size/num_layers/num_heads/mlp_dim of the model ConfigDict `model` to
  ViT-`size` ('Ti', 'S', 'B', 'L', 'H'); returns it."""
  checks.choice('model size', size, SIZES)
  model.hidden_size, model.num_layers, model.num_heads, model.mlp_dim = SIZES[size]
  return model


def validate(m, *, num_frames: int, crop_size: int) -> None:
  """Raises ConfigError for ViT fields of `config.model` that cannot work."""
  del num_frames
  checks.transformer(m)
  checks.patches(m, crop_size=crop_size)
  checks.choice('model.classifier', m.get('classifier', 'token'), embeddings.CLASSIFIERS)


def build(m, num_classes: int):
  """The ViT of `config.model` (see the module docstring)."""
  return ViT(num_classes=num_classes, cfg=TransformerConfig.from_model_config(m),
                 patch_size=tuple(m.patch_size), classifier=m.get('classifier', 'token'),
                 representation_size=m.get('representation_size'),
                 head_bias_init=m.get('head_bias_init', 0.0))
