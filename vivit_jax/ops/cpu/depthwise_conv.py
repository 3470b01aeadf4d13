"""Kernel gradient of a depthwise 3D convolution on XLA:CPU (a C++ XLA FFI call).

MViT's pooling convolutions (`ops.pooling.depthwise_conv3d`, a 3x3x3 kernel per channel)
need, in the backward pass, dK[tap, c] = sum over positions of window_tap(x) * grad. XLA
computes that as one reduction per tap, each over a materialised window of x (27 passes
over both operands for a 3x3x3 kernel). `depthwise_conv.cc` sums every tap in one pass over the positions,
each tap's partial sum kept in cache:

  kernel_grad(x, grad, kernel_size, strides, padding): x f32[N, T, H, W, C],
      grad f32[N, T', H', W', C] (the convolution's output grid) -> f32[kt * kh * kw, C],
      taps in row-major order of the kernel offsets; `padding` is the low padding of
      T, H and W (`strided_windows` order and conventions).

`applies(x, grad)` says whether it runs: the CPU backend, float32, outside
`switches.flop_counting()`, and a library that builds (`build.py`;
`VIVIT_JAX_CPU_KERNEL=0` turns it off). Otherwise `depthwise_conv3d` uses XLA's
reductions.
"""
from __future__ import annotations

import functools
import math
from typing import Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from vivit_jax.ops import switches
from vivit_jax.ops.cpu import build as cpu_build

TARGET = 'vivit_jax_depthwise_conv_kernel_grad_f32'


@functools.lru_cache(maxsize=None)
def load():
  """Builds (if needed) and registers the kernel. Raises cpu_build.KernelUnavailable."""
  path = cpu_build.build('depthwise_conv.cc')
  return cpu_build.register(path, {TARGET: 'VivitDepthwiseConvKernelGradF32'})


@functools.lru_cache(maxsize=None)
def unavailable_reason() -> Optional[str]:
  """None when the kernel is built and registered, else why not (logged once)."""
  return cpu_build.failure(load, 'CPU depthwise-convolution kernel')


def applies(x, grad) -> bool:
  if jax.default_backend() != 'cpu' or switches.counting_flops():
    return False
  if x.ndim != 5 or jnp.dtype(x.dtype) != jnp.float32 or jnp.dtype(grad.dtype) != jnp.float32:
    return False
  return unavailable_reason() is None


def kernel_grad(x, grad, kernel_size: Sequence[int], strides: Sequence[int],
                padding: Sequence[int]):
  """See the module docstring."""
  load()
  out = jax.ShapeDtypeStruct((math.prod(kernel_size), x.shape[-1]), jnp.float32)
  return jax.ffi.ffi_call(TARGET, out, vmap_method='sequential')(
      x, grad, kernel_size=np.asarray(kernel_size, np.int64),
      strides=np.asarray(strides, np.int64), padding=np.asarray(padding, np.int64))
