"""Window operations written as strided slices: depthwise 3D convolution and max pooling.

x: [N, t, h, w, C] (channels last). `strided_windows` lists a kernel's taps as strided
slices; sums and maxima over them run, and differentiate, far faster on XLA:CPU than
`conv_general_dilated`/`reduce_window` for the small kernels of video models (MViT's
pooling, patch embeddings).
"""
from __future__ import annotations

import functools
import itertools
from typing import Sequence

import jax
import jax.numpy as jnp

from vivit_jax.ops.cpu import depthwise_conv as cpu_depthwise_conv


def strided_windows(x, kernel_size: Sequence[int], strides: Sequence[int],
                    padding: Sequence[tuple[int, int]], pad_value: float = 0.0):
  """The taps of a sliding window, as strided slices: x [N, *S, C] -> a list of
  prod(kernel_size) arrays [N, *S', C], in row-major order of the kernel offsets.

  S' is the output grid of a convolution with these strides and (lo, hi) padding
  (padded with `pad_value`). Convolutions and pools written as sums / maxima over these
  slices run, and differentiate, far faster on XLA:CPU than `conv_general_dilated` or
  `reduce_window` for the small kernels of video models.
  """
  k, s = tuple(kernel_size), tuple(strides)
  x = jnp.pad(x, [(0, 0), *[tuple(p) for p in padding], (0, 0)], constant_values=pad_value)
  out = [(size - kk) // ss + 1 for size, kk, ss in zip(x.shape[1:-1], k, s)]
  return [x[(slice(None), *[slice(t, t + (o - 1) * ss + 1, ss)
                            for t, o, ss in zip(tap, out, s)])]
          for tap in itertools.product(*map(range, k))]


def same_padding(kernel_size: Sequence[int]) -> list[tuple[int, int]]:
  """(k // 2, k // 2) padding per axis: the output keeps the input grid at stride 1."""
  return [(k // 2, k // 2) for k in kernel_size]


def max_pool(x, kernel: Sequence[int], strides: Sequence[int]):
  """`nn.max_pool(x, kernel, strides, padding=kernel // 2)`: x [N, t, h, w, C] ->
  [N, t', h', w', C], as a maximum over strided slices (faster on XLA:CPU than
  reduce_window and its gradient)."""
  return functools.reduce(jnp.maximum, strided_windows(
      x, kernel, strides, same_padding(kernel), -jnp.inf))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def depthwise_conv3d(x, kernel, strides: tuple):
  """Depthwise 3D convolution, padding kernel // 2, no bias: x [N, t, h, w, C], kernel
  [kt, kh, kw, 1, C] (x's dtype) -> [N, t', h', w', C] (t' = pooled_grid), x's dtype.

  The forward pass is a sum over the kt*kh*kw `strided_windows` times per-channel
  weights, which XLA runs far faster on CPU than a grouped convolution, for the same
  multiply-adds. Its own backward pass keeps only x (autodiff kept every window and
  scattered each tap's gradient back separately): dx is the transposed convolution (the
  flipped kernel over the stride-dilated gradient, the same sum of windows) and dkernel
  comes from `cpu_depthwise_conv.kernel_grad` on CPU (float32), XLA's per-tap
  reductions elsewhere.
  """
  return _depthwise_conv3d_fwd(x, kernel, strides)[0]


def _depthwise_conv3d_fwd(x, kernel, strides):
  kernel_size = kernel.shape[:3]
  windows = strided_windows(x, kernel_size, strides, same_padding(kernel_size))
  y = sum(window * w for window, w in zip(windows, kernel.reshape(-1, x.shape[-1])))
  return y, (x, kernel)


def _depthwise_conv3d_bwd(strides, residuals, grad):
  # The barrier keeps XLA from merging the window slices below with the forward pass's.
  (x, kernel), grad = jax.lax.optimization_barrier((residuals, grad))
  kernel_size, c = kernel.shape[:3], x.shape[-1]
  padding = same_padding(kernel_size)
  # dx: grad dilated by the strides and padded so that window j of the result, times
  # the kernel flipped along t, h and w, is the sum of every output that read x there.
  config = [(0, 0, 0)]
  for size, out, k, s, (lo, _) in zip(x.shape[1:4], grad.shape[1:4], kernel_size, strides,
                                      padding):
    dilated = (out - 1) * s + 1
    config.append((k - 1 - lo, size + lo - dilated, s - 1))
  config.append((0, 0, 0))
  dilated_grad = jax.lax.pad(grad, jnp.zeros((), grad.dtype), config)
  flipped = jnp.flip(kernel.reshape(*kernel_size, c), axis=(0, 1, 2)).reshape(-1, c)
  windows = strided_windows(dilated_grad, kernel_size, (1, 1, 1), [(0, 0)] * 3)
  grad_x = sum(window * w for window, w in zip(windows, flipped))
  # dkernel[tap, c] = sum over positions of window_tap(x) * grad.
  if cpu_depthwise_conv.applies(x, grad):
    grad_kernel = cpu_depthwise_conv.kernel_grad(x, grad, kernel_size, strides,
                                                 [lo for lo, _ in padding])
  else:
    f32 = jnp.promote_types(x.dtype, jnp.float32)
    grad_kernel = jnp.stack([
        jnp.sum(window.astype(f32) * grad.astype(f32), axis=(0, 1, 2, 3))
        for window in strided_windows(x, kernel_size, strides, padding)])
  return grad_x.astype(x.dtype), grad_kernel.reshape(kernel.shape).astype(kernel.dtype)


depthwise_conv3d.defvjp(_depthwise_conv3d_fwd, _depthwise_conv3d_bwd)
