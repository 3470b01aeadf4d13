"""Token embeddings, position embeddings, class tokens and classification heads.

Token embeddings turn a video into a grid of tokens:
  uniform frame sampling: each frame cut into 2D patches by one shared linear map
      (a Conv2D named `embedding`, kernel [ph, pw, C, D] — the image ViT's layout), n_t = T;
  tubelet embedding: non-overlapping t x ph x pw tubes through one 3D linear map
      (a Conv3D named `embedding`, kernel [t, ph, pw, C, D]), n_t = T / t.
Both give tokens: [B, n_t, n_h, n_w, D] (`embed_tokens`).

`PatchConv` is the convolution behind these (and MViT's overlapping stem): `nn.Conv`'s
parameters, computed as patches x matmul, which XLA:CPU runs several times faster than
its convolution (experiments/README.md).
"""
from __future__ import annotations

import functools
import itertools
import math
from typing import Any, Optional, Sequence

import einops
import flax.linen as nn
import jax
import jax.numpy as jnp

from vivit_jax.ops import dense as dense_ops, pooling

EMBEDDINGS = ('tubelet', 'uniform_frame')


def is_tiling(kernel_size: Sequence[int], strides: Sequence[int],
              padding: Sequence[tuple[int, int]]) -> bool:
  """Whether the kernel tiles its input: non-overlapping (strides == kernel) and unpadded."""
  return (tuple(kernel_size) == tuple(strides)
          and all(tuple(p) == (0, 0) for p in padding))


def extract_patches(x, kernel_size: Sequence[int], strides: Sequence[int],
                    padding: Sequence[tuple[int, int]]):
  """x: [N, *S, C] -> patches [N, *S', prod(kernel_size) * C], taps in row-major order
  of `kernel_size` then channels (the flattening of an `nn.Conv` kernel [*k, C, D]).

  A non-overlapping, unpadded kernel (strides == kernel_size) is a pure reshape;
  otherwise the patches are the stacked `strided_windows` (prod(kernel_size) times the
  input's size).
  """
  k, s, n = tuple(kernel_size), tuple(strides), len(kernel_size)
  if is_tiling(k, s, padding):
    out = [size // kk for size, kk in zip(x.shape[1:-1], k)]
    x = x[(slice(None), *[slice(0, o * kk) for o, kk in zip(out, k)])]   # VALID drops rest.
    x = x.reshape(x.shape[0], *itertools.chain(*zip(out, k)), x.shape[-1])
    x = x.transpose(0, *range(1, 2 * n, 2), *range(2, 2 * n + 1, 2), 2 * n + 1)
    return x.reshape(x.shape[0], *out, -1)
  taps = jnp.stack(pooling.strided_windows(x, k, s, padding), axis=-2)
  return taps.reshape(*taps.shape[:-2], -1)


class PatchConv(nn.Module):
  """`nn.Conv(features, kernel_size, strides, padding)` with the same parameters
  (`kernel: [*kernel_size, C, features]` lecun-normal, `bias: [features]` zeros) and
  outputs: x [N, *S, C] -> [N, *S', features].

  Computed as `extract_patches` times the flattened kernel: a reshape for
  non-overlapping patches on every backend; for overlapping ones on CPU only
  (`im2col=None`), where XLA's convolution and its kernel gradient run at a small
  fraction of the matmul's speed (MViT's stem; experiments/README.md). On
  GPU/TPU an overlapping kernel stays a convolution (cuDNN), without the patch copy.
  """
  features: int
  kernel_size: Sequence[int]
  strides: Sequence[int]
  padding: Any = 'VALID'     # 'VALID' or a (lo, hi) pair per spatial dimension.
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  im2col: Optional[bool] = None

  @nn.compact
  def __call__(self, x):
    k, s = tuple(self.kernel_size), tuple(self.strides)
    padding = [(0, 0)] * len(k) if self.padding == 'VALID' else list(self.padding)
    kernel = self.param('kernel', nn.initializers.lecun_normal(),
                        (*k, x.shape[-1], self.features), self.param_dtype)
    bias = self.param('bias', nn.initializers.zeros, (self.features,), self.param_dtype)
    x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
    im2col = (self.im2col if self.im2col is not None
              else is_tiling(k, s, padding) or jax.default_backend() == 'cpu')
    if im2col:
      patches = extract_patches(x, k, s, padding)
      y = dense_ops.dot_general(
          patches, kernel.reshape(math.prod(k) * x.shape[-1], self.features),
          (((patches.ndim - 1,), (0,)), ((), ())))
    else:
      spatial = 'THW'[-len(k):]
      y = jax.lax.conv_general_dilated(
          x, kernel, s, [tuple(p) for p in padding],
          dimension_numbers=(f'N{spatial}C', f'{spatial}IO', f'N{spatial}C'))
    return y + bias


def embed_tokens(video, embedding: str, hidden_size: int, patch_size: Sequence[int],
                 temporal_patch_size: int = 1, dtype=jnp.float32, param_dtype=jnp.float32):
  """video: [B, T, H, W, C] -> tokens [B, n_t, H/ph, W/pw, D] (see the module docstring).

  Call inside a parent's compact `__call__`: the projection is the parent's `embedding`.
  `tubelet`: n_t = T / temporal_patch_size; `uniform_frame`: n_t = T.
  """
  conv = functools.partial(PatchConv, hidden_size, padding='VALID', dtype=dtype,
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
  """Learned position embedding `pos_embedding: [1, L, D]` added to x: [B, L, D]
  (initialised by `init`, N(0, 0.02^2) by default)."""
  param_dtype: Any = jnp.float32
  init: Any = nn.initializers.normal(stddev=0.02)

  @nn.compact
  def __call__(self, x):
    pos = self.param('pos_embedding', self.init, (1,) + x.shape[1:], self.param_dtype)
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
                 dot_general=dense_ops.dot_general, name='pre_logits')(x)
    x = jnp.tanh(x)
  logits = nn.Dense(num_classes, dtype=dtype, param_dtype=param_dtype,
                    dot_general=dense_ops.dot_general,
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
