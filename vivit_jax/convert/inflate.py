"""Array surgery for initialising video models from image models: 2D -> 3D patch kernels,
position embeddings over a different token grid, Scenic's head order for Model 4.

All functions take and return numpy arrays.
"""
from __future__ import annotations

from typing import Optional

import jax
import numpy as np

KERNEL_INITS = ('central_frame', 'average')


def inflate_kernel(kernel: np.ndarray, t: int, method: str = 'central_frame') -> np.ndarray:
  """A 2D patch kernel [ph, pw, C, D] as a tubelet kernel [t, ph, pw, C, D].

  'central_frame': the 2D kernel at time index t // 2, zeros elsewhere (the tubelet sees
      only its central frame); 'average': the 2D kernel / t at every time index (filter
      inflation, I3D). Either way a video of identical frames gives the image's tokens.
  """
  if kernel.ndim != 4:
    raise ValueError(f'inflate_kernel expects a [ph, pw, C, D] kernel, got {kernel.shape}.')
  if method == 'central_frame':
    out = np.zeros((t,) + kernel.shape, kernel.dtype)
    out[t // 2] = kernel
    return out
  if method == 'average':
    return np.repeat(kernel[None] / t, t, axis=0).astype(kernel.dtype)
  raise ValueError(f'kernel_init={method!r} is invalid: expected one of {KERNEL_INITS}.')


def resize_grid(grid: np.ndarray, shape) -> np.ndarray:
  """Bilinear (linear per axis, half-pixel centres, no antialiasing) resize of a
  [n_t, n_h, n_w, D] grid to [shape[0], shape[1], shape[2], D]."""
  shape = tuple(shape) + (grid.shape[-1],)
  if grid.shape == shape:
    return grid
  out = jax.image.resize(np.asarray(grid, np.float32), shape, method='bilinear',
                         antialias=False)
  return np.asarray(out).astype(grid.dtype)


def adapt_posemb(posemb: np.ndarray, src_grid, tgt_grid, *, src_cls: bool, tgt_cls: bool,
                 tgt_init: Optional[np.ndarray] = None) -> tuple[np.ndarray, str]:
  """Position embedding [1, (1+) s_t*s_h*s_w, D] of a source grid for a target grid.

  Token order is time-major (`b t h w d -> b (t h w) d`) on both sides; a leading CLS
  position is there when `src_cls` / `tgt_cls`. The spatial grid is resized bilinearly
  when it differs; a single source time index (an image model) is repeated over the
  target's n_t, other temporal lengths are interpolated linearly. The CLS position is
  kept (dropped if the target has no CLS; taken from `tgt_init` if only the target has one).

  Returns (posemb [1, (1+) n_t*n_h*n_w, D], action): 'loaded' (unchanged),
  'inflated' (repeated over time only) or 'resized'.
  """
  snt, sgh, sgw = src_grid
  nt, gh, gw = tgt_grid
  d = posemb.shape[-1]
  tokens = posemb[0, 1:] if src_cls else posemb[0]
  if tokens.shape[0] != snt * sgh * sgw:
    raise ValueError(f'position embedding {posemb.shape} does not hold a '
                     f'{snt}x{sgh}x{sgw} grid{" + CLS" if src_cls else ""}.')
  grid = tokens.reshape(snt, sgh, sgw, d)
  action = 'loaded'
  if (sgh, sgw) != (gh, gw):
    grid = resize_grid(grid, (snt, gh, gw))
    action = 'resized'
  if snt != nt:
    if snt == 1:
      grid = np.repeat(grid, nt, axis=0)
      action = 'inflated' if action == 'loaded' else action
    else:
      grid = resize_grid(grid, (nt, gh, gw))
      action = 'resized'
  out = grid.reshape(1, nt * gh * gw, d)
  if tgt_cls:
    if src_cls:
      cls = posemb[:, :1]
    else:
      if tgt_init is None:
        raise ValueError('the target has a CLS position the source lacks: pass tgt_init.')
      cls = tgt_init[:, :1]
      action = 'resized'
    out = np.concatenate([cls, out], axis=1)
  elif src_cls:
    action = 'resized' if action == 'loaded' else action
  return out.astype(posemb.dtype), action


def swap_head_halves(x: np.ndarray, axis: int) -> np.ndarray:
  """Heads [h_0 .. h_{H/2-1}, h_{H/2} .. h_{H-1}] -> the second half first.

  Scenic's Model 4 (`factorized_dot_product_attention`) gives the first half of the heads
  to time and the second half to space; ours (vivit.factorised_dot_product_layout) the
  other way round, so a Scenic Model 4 checkpoint swaps the halves (its own inverse).
  """
  first, second = np.split(x, 2, axis=axis)
  return np.concatenate([second, first], axis=axis)
