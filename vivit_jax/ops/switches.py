"""Every numerics switch outside `config.model`, read in one place.

Environment variables (read when a model is traced or a kernel is first loaded):
  VIVIT_JAX_CPU_KERNEL=0      no C++ kernel on XLA:CPU (attention, dense layers,
                              depthwise-conv gradient): XLA's own ops instead.
  VIVIT_JAX_BLAS=auto|mkl|openblas   the sgemm behind float32 dense layers on CPU
                              ('auto': Intel MKL where the `mkl` wheel is installed,
                              else OpenBLAS from scipy-openblas32).
  VIVIT_JAX_CACHE_DIR=DIR     where the built kernels are cached (default
                              $XDG_CACHE_HOME/vivit_jax or ~/.cache/vivit_jax).
  VIVIT_JAX_OWN_BACKWARD=0    GELU and LayerNorm differentiated by JAX's autodiff instead
                              of their own backward passes (same values; for measuring
                              both on a new backend).

Context (Python, per thread of tracing):
  flop_counting()             trace every attention as its explicit formulation and dense
                              layers as XLA dots, so `cost_analysis()` sees all FLOPs
                              (it counts a custom call as none and a loop body once).

The model-level choices (attention kernel, dtype, remat) are `config.model` fields; see
`vivit_jax.ops.attention` for `attention_impl`.
"""
from __future__ import annotations

import contextlib
import contextvars
import os
import pathlib

BLAS_CHOICES = ('auto', 'openblas', 'mkl')

_FLOP_COUNTING = contextvars.ContextVar('vivit_jax_flop_counting', default=False)


@contextlib.contextmanager
def flop_counting():
  """Within it, models trace attention as the 'explicit' path (same math) and dense
  layers as XLA dots, with no C++ kernel: lower a model inside it to count its FLOPs."""
  token = _FLOP_COUNTING.set(True)
  try:
    yield
  finally:
    _FLOP_COUNTING.reset(token)


def counting_flops() -> bool:
  """Whether the caller is tracing inside `flop_counting()`."""
  return _FLOP_COUNTING.get()


def cpu_kernels_enabled() -> bool:
  """False when VIVIT_JAX_CPU_KERNEL=0 turns the C++ CPU kernels off."""
  return os.environ.get('VIVIT_JAX_CPU_KERNEL', '1') != '0'


def blas_choice() -> str:
  """VIVIT_JAX_BLAS: 'auto' (default), 'openblas' or 'mkl'."""
  choice = os.environ.get('VIVIT_JAX_BLAS', 'auto')
  if choice not in BLAS_CHOICES:
    raise ValueError(f'VIVIT_JAX_BLAS={choice!r} is invalid: expected one of '
                     f'{", ".join(map(repr, BLAS_CHOICES))}.')
  return choice


def cache_dir() -> pathlib.Path:
  """Where built C++ kernels are cached (VIVIT_JAX_CACHE_DIR, else the user cache)."""
  if os.environ.get('VIVIT_JAX_CACHE_DIR'):
    return pathlib.Path(os.environ['VIVIT_JAX_CACHE_DIR'])
  base = os.environ.get('XDG_CACHE_HOME') or pathlib.Path.home() / '.cache'
  return pathlib.Path(base) / 'vivit_jax'


def own_backward_passes() -> bool:
  """Whether GELU and LayerNorm use their own backward passes (default) rather than
  autodiff (VIVIT_JAX_OWN_BACKWARD=0). Read when a model is traced."""
  return os.environ.get('VIVIT_JAX_OWN_BACKWARD', '1') != '0'
