"""Flash attention for XLA:CPU: a C++ kernel (XLA FFI custom call), built on first use.

XLA:CPU runs attention as generic dots whose 64-wide contraction keeps them at about half
the speed of its dense layers; at ViViT-B Model 1's 3137 tokens the best pure-XLA kernel
(`layers.chunked_attention`) takes twice the time of torch's flash-attention CPU kernel.
This module compiles `csrc/flash_attention_cpu.cc` (register-blocked microkernels, one
head's block of 48 queries at a time kept in cache, XLA's intra-op threads) with the
machine's C++ compiler for the host CPU (`-march=native`) into a cache directory,
registers it with jax, and wraps it as a differentiable function:

  flash_attention(query, key, value): query [B, Lq, H, Dh], key/value [B, Lk, H, Dh]
      (float32, or half precision computed in float32) -> [B, Lq, H, Dh], the input dtype.

The forward kernel also returns each row's log-sum-exp, from which the backward kernel
(flash attention's backward pass, one head per thread) recomputes the probabilities
block by block, so training memory stays O(48 * Lk) per thread.
`layers.dot_product_attention` picks this kernel on CPU when `supports(...)` (no bias,
mask or dropout) and falls back to the chunked XLA kernel otherwise, or when no compiler
is found (logged once).

`cpu_build.py` compiles and caches the library (about 2 s, once per source, compiler, CPU
and jax version; `VIVIT_JAX_CPU_KERNEL=0` turns it off).
"""
from __future__ import annotations

import ctypes
import functools
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from vivit_jax.models import cpu_build

TARGET = 'vivit_jax_flash_attention_f32'
BACKWARD_TARGET = 'vivit_jax_flash_attention_backward_f32'


@functools.lru_cache(maxsize=None)
def load(march: str = 'native') -> tuple[ctypes.CDLL, str]:
  """Builds (if needed) and registers the kernel for `-march={march}`.

  Returns the library and the suffix of its custom-call target names (TARGET and
  BACKWARD_TARGET; '' for 'native', the build models use; tests build others, e.g.
  'haswell' for the AVX2 code path). Raises cpu_build.KernelUnavailable.
  """
  path = cpu_build.build('flash_attention_cpu.cc', march)
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


def supports(query, key, value, bias=None, mask=None) -> bool:
  """Whether `flash_attention` computes this `layers.dot_product_attention` call.

  Needs the CPU backend, 4-D inputs [B, L, H, Dh] of one floating dtype, no bias and no
  mask, and a kernel that builds on this machine.
  """
  if jax.default_backend() != 'cpu':
    return False
  if bias is not None or mask is not None:
    return False
  if any(x.ndim != 4 for x in (query, key, value)) or key.shape[1] == 0:
    return False   # no keys: the softmax is undefined, left to the XLA paths
  if len({jnp.dtype(x.dtype) for x in (query, key, value)}) != 1:
    return False
  if jnp.dtype(query.dtype) not in (jnp.float32, jnp.bfloat16, jnp.float16):
    return False
  return available()


def forward(query, key, value, suffix: str = ''):
  """The C++ forward kernel: float32 q [..., Lq, H, Dh], k/v [..., Lk, H, Dh] ->
  (out [..., Lq, H, Dh], lse [..., H, Lq]: each row's log-sum-exp of scaled logits)."""
  load()
  *batch, lq, h, d = query.shape
  types = (jax.ShapeDtypeStruct(query.shape, jnp.float32),
           jax.ShapeDtypeStruct((*batch, h, lq), jnp.float32))
  call = jax.ffi.ffi_call(TARGET + suffix, types, vmap_method='broadcast_all')
  return call(query, key, value, scale=np.float32(d ** -0.5))


def backward(query, key, value, out, lse, grad, suffix: str = ''):
  """The C++ backward kernel: `forward`'s inputs and outputs and the gradient of `out`
  -> (dq, dk, dv), float32 in the inputs' shapes. Flash attention's backward pass, per
  head and 48-query block: P = exp(q k^T s - lse), dv += P^T g, dS = P (g v^T -
  rowsum(g * out)), dq = dS k s, dk += dS^T q s, with s = Dh^-0.5."""
  load()
  types = tuple(jax.ShapeDtypeStruct(x.shape, jnp.float32) for x in (query, key, value))
  call = jax.ffi.ffi_call(BACKWARD_TARGET + suffix, types, vmap_method='broadcast_all')
  return call(query, key, value, out, lse, grad, scale=np.float32(query.shape[-1] ** -0.5))


@jax.custom_vjp
def _flash_attention_f32(query, key, value):
  return forward(query, key, value)[0]


def _fwd(query, key, value):
  out, lse = forward(query, key, value)
  return out, (query, key, value, out, lse)


def _bwd(residuals, grad):
  return backward(*residuals, grad)


_flash_attention_f32.defvjp(_fwd, _bwd)


def flash_attention(query, key, value):
  """Softmax attention by the C++ kernel: q [B, Lq, H, Dh], k/v [B, Lk, H, Dh] -> q's shape.

  Scale Dh^-0.5, no bias or mask. Half-precision inputs are computed in float32 and the
  result is rounded back. Raises cpu_build.KernelUnavailable when the kernel cannot be
  built.
  """
  dtype = query.dtype
  f32 = lambda x: x.astype(jnp.float32)
  return _flash_attention_f32(f32(query), f32(key), f32(value)).astype(dtype)
