"""Token embeddings, position embeddings, class tokens and classification heads.

Token embeddings turn a video into a grid of tokens:
  uniform frame sampling: each frame cut into 2D patches by one shared linear map
      (a Conv2D named `embedding`, kernel [ph, pw, C, D] — the image ViT's layout), n_t = T;
  tubelet embedding: non-overlapping t x ph x pw tubes through one 3D linear map
      (a Conv3D named `embedding`, kernel [t, ph, pw, C, D]), n_t = T / t.
Both give tokens: [B, n_t, n_h, n_w, D] (`embed_tokens`).
"""
from __future__ import annotations

import functools
from typing import Any, Optional, Sequence

import einops
import flax.linen as nn
import jax.numpy as jnp

EMBEDDINGS = ('tubelet', 'uniform_frame')


def embed_tokens(video, embedding: str, hidden_size: int, patch_size: Sequence[int],
                 temporal_patch_size: int = 1, dtype=jnp.float32, param_dtype=jnp.float32):
  """video: [B, T, H, W, C] -> tokens [B, n_t, H/ph, W/pw, D] (see the module docstring).

  Call inside a parent's compact `__call__`: the projection is the parent's `embedding`.
  `tubelet`: n_t = T / temporal_patch_size; `uniform_frame`: n_t = T.
  """
  conv = functools.partial(nn.Conv, hidden_size, padding='VALID', dtype=dtype,
                           param_dtype=param_dtype, name='embedding')
  video = video.astype(dtype)
  if embedding == 'tubelet':
    size = (temporal_patch_size, *patch_size)
    return conv(size, strides=size)(video)
  if embedding == 'uniform_frame':
    size = tuple(patch_size)
    frames = einops.rearrange(video, 'b t h w c -> (b t) h w c')
    tokens = conv(size, strides=size)(frames)
    return einops.rearrange(tokens, '(b t) h w d -> b t h w d', b=video.shape[0])
  raise ValueError(f'embedding {embedding!r} is invalid: expected one of {EMBEDDINGS}.')


class AddPositionEmbedding(nn.Module):
  """Learned position embedding `pos_embedding: [1, L, D]` added to x: [B, L, D]."""
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    pos = self.param('pos_embedding', nn.initializers.normal(stddev=0.02),
                     (1,) + x.shape[1:], self.param_dtype)
    return x + pos.astype(x.dtype)



def classifier_head(x, num_classes: int, representation_size: Optional[int] = None,
                    head_bias_init: float = 0.0, dtype=jnp.float32,
                    param_dtype=jnp.float32):
  """Optional pre-logits (Dense + tanh), then the class projection; call inside a
  parent's compact `__call__`, so the layers are the parent's `pre_logits` and
  `output_projection`.

  x: [B, D] -> logits float32[B, num_classes]. The projection kernel starts at zero
  (Scenic/big_vision), so a fresh head predicts the uniform distribution.
  """
  if representation_size is not None:
    x = nn.Dense(representation_size, dtype=dtype, param_dtype=param_dtype,
                 name='pre_logits')(x)
    x = jnp.tanh(x)
  logits = nn.Dense(num_classes, dtype=dtype, param_dtype=param_dtype,
                    kernel_init=nn.initializers.zeros,
                    bias_init=nn.initializers.constant(head_bias_init),
                    name='output_projection')(x)
  return logits.astype(jnp.float32)


# 'token' reads the CLS token; the others pool all tokens (Scenic's names): mean, max, sum.
CLASSIFIERS = ('token', 'gap', 'gmp', 'gsp')
POOLED_CLASSIFIERS = CLASSIFIERS[1:]


def pool_tokens(x, classifier: str):
  """x: [B, L, D] -> [B, D]: the first (CLS) token for 'token'; the mean ('gap'), the
  max ('gmp') or the sum ('gsp') over the L tokens."""
  if classifier == 'token':
    return x[:, 0]
  pool = {'gap': jnp.mean, 'gmp': jnp.max, 'gsp': jnp.sum}.get(classifier)
  if pool is None:
    raise ValueError(f'classifier {classifier!r} is invalid: expected one of {CLASSIFIERS}.')
  return pool(x, axis=1)


def prepend_class_token(module: nn.Module, x, name: str = 'cls'):
  """Adds a learned token `name: [1, 1, D]` (zeros init) in front: [B, L, D] -> [B, L+1, D]."""
  cls = module.param(name, nn.initializers.zeros, (1, 1, x.shape[-1]),
                     jnp.float32)
  cls = jnp.broadcast_to(cls.astype(x.dtype), (x.shape[0], 1, x.shape[-1]))
  return jnp.concatenate([cls, x], axis=1)
