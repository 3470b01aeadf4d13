"""Flash attention for XLA:CPU: a C++ kernel (XLA FFI custom call), built on first use.

XLA:CPU runs attention as generic dots whose 64-wide contraction keeps them well below
the speed of its dense layers, and the best pure-XLA kernel (`ops.attention.
chunked_attention`) is slower than torch's flash-attention CPU kernel (experiments/
README.md). This module compiles `flash_attention.cc` (register-blocked microkernels, one
head's block of 48 queries at a time kept in cache, XLA's intra-op threads) with the
machine's C++ compiler for the host CPU (`-march=native`) into a cache directory,
registers it with jax, and wraps it as a differentiable function:

  flash_attention(query, key, value, bias=None, mask=None): query [B, Lq, H, Dh],
      key/value [B, Lk, H, Dh] (float32, or half precision computed in float32),
      optional bias (added to the scaled logits) and mask (bool, True = may attend) that
      broadcast to [B, H, Lq, Lk] with their batch axis 1 or B and head axis 1 or H
      (Video Swin's relative position bias [1, H, N, N] and window mask [B, 1, N, N],
      MViTv2's relative positions [B, H, Lq, Lk]) -> [B, Lq, H, Dh], the input dtype.
      `rel=(terms, (T, Hr, W, skip))` adds a decomposed bias instead of a dense one:
      key skip + (i, j, l) of a T x Hr x W key grid gets terms[..., i] + terms[..., T + j]
      + terms[..., T + Hr + l] (terms float32 [B, H, Lq, T + Hr + W]; MViTv2's relative
      positions, which the kernel adds to each logits row without a [Lq, Lk] array, and
      whose gradient it sums over the grid's other two axes).

The forward kernel also returns each row's log-sum-exp, from which the backward kernel
(flash attention's backward pass, one head per thread) recomputes the probabilities
block by block, so training memory stays O(48 * Lk) per thread; the gradient of a bias
shared by several (batch, head) pairs is summed in one copy per thread.
`ops.attention.dot_product_attention` picks this kernel on CPU when `supports(...)` (not with
dropout) and falls back to the chunked XLA kernel otherwise, or when no compiler is found
(logged once).

`build.py` compiles and caches the library (seconds, once per source, compiler, CPU
and jax version; `VIVIT_JAX_CPU_KERNEL=0` turns it off).
"""
from __future__ import annotations

import ctypes
import functools
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from vivit_jax.ops.cpu import build as cpu_build

TARGET = 'vivit_jax_flash_attention_f32'
BACKWARD_TARGET = 'vivit_jax_flash_attention_backward_f32'


@functools.lru_cache(maxsize=None)
def load(march: str = 'native') -> tuple[ctypes.CDLL, str]:
  """Builds (if needed) and registers the kernel for `-march={march}`.

  Returns the library and the suffix of its custom-call target names (TARGET and
  BACKWARD_TARGET; '' for 'native', the build models use; tests build others, e.g.
  'haswell' for the AVX2 code path). Raises cpu_build.KernelUnavailable.
  """
  path = cpu_build.build('flash_attention.cc', march)
  suffix = '' if march == 'native' else '_' + march.replace('-', '_')
  lib = cpu_build.register(path, {TARGET + suffix: 'VivitFlashAttentionF32',
                                  BACKWARD_TARGET + suffix: 'VivitFlashAttentionBackwardF32'})
  return lib, suffix


@functools.lru_cache(maxsize=None)
def unavailable_reason() -> Optional[str]:
  """None when the kernel is built and registered, else why not (logged once)."""
  return cpu_build.failure(load, 'CPU flash attention kernel')


def available() -> bool:
  return unavailable_reason() is None


def lanes() -> int:
  """float32 lanes of one vector register in the build (16 with AVX-512, 8 with AVX2)."""
  return int(load()[0].vivit_flash_attention_lanes())


# Largest bias whose gradient is summed over (batch, head) pairs in one copy per thread
# (bytes per copy); a larger shared bias goes to the chunked kernel.
MAX_SHARED_BIAS_BYTES = 64 << 20


def _as_4d_shape(shape, full) -> Optional[tuple]:
  """`shape` padded to 4 axes if it broadcasts to `full` = (B, H, Lq, Lk), else None."""
  shape = tuple(shape)
  if len(shape) > 4 or any(s not in (1, t) for s, t in zip(shape[::-1], full[::-1])):
    return None
  return (1,) * (4 - len(shape)) + shape


def _or_empty(bias, mask, rel=None):
  """None terms as the kernel's empty operands (zero elements = no term)."""
  return (jnp.zeros((0,) * 4, jnp.float32) if bias is None else bias,
          jnp.zeros((0,) * 4, bool) if mask is None else mask,
          jnp.zeros((0,) * 4, jnp.float32) if rel is None else rel)


NO_REL = (0, 0, 0, 0)   # rel layout (T, Hr, W, skip) of a call without a decomposed bias


def _rel_attributes(layout):
  t, h, w, skip = layout
  return dict(rel_t=np.int64(t), rel_h=np.int64(h), rel_w=np.int64(w),
              rel_skip=np.int64(skip))


def rel_supported(query, key, rel) -> bool:
  """Whether `rel` = (terms, (T, Hr, W, skip)) is a decomposed bias of this call:
  terms [B, H, Lq, T + Hr + W] and Lk = skip + T * Hr * W."""
  terms, (t, h, w, skip) = rel
  b, lq, heads, _ = query.shape
  return (min(t, h, w) > 0 and skip >= 0 and key.shape[1] == skip + t * h * w
          and tuple(np.shape(terms)) == (b, heads, lq, t + h + w))


def logit_terms(query, key, bias=None, mask=None):
  """`bias`/`mask` as the kernel takes them: float32 [Bb, Hb, Lq, Lk] and bool
  [Bm, Hm, Lq, Lk] with batch axis 1 or B and head axis 1 or H (query/key axes
  broadcast to full size), or empty arrays for none. Raises ValueError for a shape that
  does not broadcast to [B, H, Lq, Lk]."""
  b, lq, h, _ = query.shape
  full = (b, h, lq, key.shape[1])

  def term(x, dtype, name):
    if x is None:
      return None
    x = jnp.asarray(x, dtype)
    shape = _as_4d_shape(x.shape, full)
    if shape is None:
      raise ValueError(f'attention {name} of shape {x.shape} is invalid: expected a shape '
                       f'that broadcasts to [B, H, Lq, Lk] = {list(full)}.')
    return jnp.broadcast_to(x.reshape(shape), shape[:2] + full[2:])

  return _or_empty(term(bias, jnp.float32, 'bias'), term(mask, bool, 'mask'))[:2]


def supports(query, key, value, bias=None, mask=None, rel=None) -> bool:
  """Whether `flash_attention` computes this `layers.dot_product_attention` call.

  Needs the CPU backend, 4-D inputs [B, L, H, Dh] of one floating dtype, bias and mask
  (if any) that broadcast to [B, H, Lq, Lk] (a bias shared by several batch entries or
  heads at most MAX_SHARED_BIAS_BYTES as float32), a decomposed bias `rel` (if any)
  that `rel_supported`, and a kernel that builds on this machine.
  """
  if jax.default_backend() != 'cpu':
    return False
  if any(x.ndim != 4 for x in (query, key, value)) or key.shape[1] == 0:
    return False   # no keys: the softmax is undefined, left to the XLA paths
  if len({jnp.dtype(x.dtype) for x in (query, key, value)}) != 1:
    return False
  if jnp.dtype(query.dtype) not in (jnp.float32, jnp.bfloat16, jnp.float16):
    return False
  b, lq, h, _ = query.shape
  full = (b, h, lq, key.shape[1])
  shapes = [_as_4d_shape(np.shape(t), full) if t is not None else () for t in (bias, mask)]
  if None in shapes or (rel is not None and not rel_supported(query, key, rel)):
    return False
  if bias is not None:
    bb, bh = shapes[0][:2]
    shared = (bb != b and b > 1) or (bh != h and h > 1)
    if shared and bb * bh * lq * key.shape[1] * 4 > MAX_SHARED_BIAS_BYTES:
      return False
  return available()


def forward(query, key, value, bias=None, mask=None, rel=None, rel_layout=NO_REL, *,
            suffix: str = ''):
  """The C++ forward kernel: float32 q [..., Lq, H, Dh], k/v [..., Lk, H, Dh], bias
  f32[..., Bb, Hb, Lq, Lk] and mask bool[..., Bm, Hm, Lq, Lk] (as `logit_terms` returns
  them; None = none), rel f32[..., B, H, Lq, T + Hr + W] with rel_layout (T, Hr, W, skip)
  -> (out [..., Lq, H, Dh], lse [..., H, Lq]: each row's log-sum-exp of the scaled,
  biased, masked logits)."""
  load()
  *batch, lq, h, d = query.shape
  bias, mask, rel = _or_empty(bias, mask, rel)
  types = (jax.ShapeDtypeStruct(query.shape, jnp.float32),
           jax.ShapeDtypeStruct((*batch, h, lq), jnp.float32))
  call = jax.ffi.ffi_call(TARGET + suffix, types, vmap_method='broadcast_all')
  return call(query, key, value, bias, mask, rel, scale=np.float32(d ** -0.5),
              **_rel_attributes(rel_layout))


def backward(query, key, value, bias, mask, out, lse, grad, rel=None, rel_layout=NO_REL,
             *, suffix: str = ''):
  """The C++ backward kernel: `forward`'s inputs and outputs and the gradient of `out`
  -> (dq, dk, dv, dbias, drel), float32 in the inputs' shapes (dbias, drel empty without
  a bias, rel). Flash attention's backward pass, per head and 48-query block:
  P = exp(logits - lse), dv += P^T g, dS = P (g v^T - rowsum(g * out)), dq = dS k s,
  dk += dS^T q s, dbias (+)= dS, drel = dS summed over the key grid's other two axes,
  with s = Dh^-0.5."""
  load()
  bias, mask, rel = _or_empty(bias, mask, rel)
  types = tuple(jax.ShapeDtypeStruct(x.shape, jnp.float32)
                for x in (query, key, value, bias, rel))
  call = jax.ffi.ffi_call(BACKWARD_TARGET + suffix, types, vmap_method='broadcast_all')
  return call(query, key, value, bias, mask, rel, out, lse, grad,
              scale=np.float32(query.shape[-1] ** -0.5), **_rel_attributes(rel_layout))


@functools.partial(jax.custom_vjp, nondiff_argnums=(6,))
def _flash_attention_f32(query, key, value, bias, mask, rel, rel_layout):
  return forward(query, key, value, bias, mask, rel, rel_layout)[0]


def _fwd(query, key, value, bias, mask, rel, rel_layout):
  out, lse = forward(query, key, value, bias, mask, rel, rel_layout)
  return out, (query, key, value, bias, mask, out, lse, rel)


def _bwd(rel_layout, residuals, grad):
  query, key, value, bias, mask, out, lse, rel = residuals
  dq, dk, dv, dbias, drel = backward(query, key, value, bias, mask, out, lse, grad, rel,
                                     rel_layout)
  return dq, dk, dv, dbias, None, drel   # no gradient for the mask


_flash_attention_f32.defvjp(_fwd, _bwd)


def flash_attention(query, key, value, bias=None, mask=None, rel=None):
  """Softmax attention by the C++ kernel: q [B, Lq, H, Dh], k/v [B, Lk, H, Dh] -> q's shape.

  Scale Dh^-0.5; `bias` is added to the scaled logits and `mask` (True = may attend)
  removes logits, both broadcast to [B, H, Lq, Lk] (see `logit_terms`); a row whose keys
  are all masked gets uniform weights in the forward pass, as in the XLA paths. The
  bias is differentiable, and so are the terms of a decomposed bias `rel` = (terms
  [B, H, Lq, T + Hr + W], (T, Hr, W, skip)) (see the module docstring). Half-precision
  inputs are computed in float32 and the result is rounded back. Raises
  cpu_build.KernelUnavailable when the kernel cannot be built, ValueError for a `rel`
  that does not fit the call.
  """
  dtype = query.dtype
  f32 = lambda x: x.astype(jnp.float32)
  bias, mask = logit_terms(query, key, bias, mask)
  terms, rel_layout = None, NO_REL
  if rel is not None:
    if not rel_supported(query, key, rel):
      raise ValueError(f'decomposed attention bias of shape {np.shape(rel[0])} and layout '
                       f'{rel[1]} (T, Hr, W, skip) does not fit query {query.shape} and key '
                       f'{key.shape}: expected [B, H, Lq, T + Hr + W] and '
                       f'Lk = skip + T * Hr * W.')
    terms, rel_layout = f32(rel[0]), tuple(int(x) for x in rel[1])
  return _flash_attention_f32(f32(query), f32(key), f32(value), bias, mask, terms,
                              rel_layout).astype(dtype)
