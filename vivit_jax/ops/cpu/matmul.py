"""Dense-layer products on XLA:CPU through a BLAS: OpenBLAS or MKL (a C++ XLA FFI call).

At the dense-layer shapes of the video transformers, a BLAS sgemm is faster than
XLA:CPU's own float32 dots (experiments/README.md has the numbers). `matmul.cc` wraps
sgemm as an XLA FFI call, built by `build.py` on first use and linked against the
wheel's library. `ops.dense.dot_general` (every `nn.Dense`, `nn.DenseGeneral` and patch
embedding) routes a product here when `applies(...)`:

  matmul(a, b): a float32[M, K], b float32[K, N] -> float32[M, N]

with a custom VJP whose two products (dA = g B^T, dB = A^T g) are sgemm calls as well.
Everything else (half precision, batch axes, GPU/TPU, small products, no wheel or no
compiler) stays on XLA's dots; `VIVIT_JAX_CPU_KERNEL=0` turns this off with the other C++
kernels.

The BLAS: `VIVIT_JAX_BLAS=auto` (default) takes Intel MKL's sgemm where the `mkl` wheel
is installed (`pip install vivit_jax[mkl]`, x86-64; faster than OpenBLAS there), else
OpenBLAS from the `scipy-openblas32` wheel (the library NumPy and SciPy ship);
`openblas` or `mkl` pick one. Both run single-threaded inside the call.
"""
from __future__ import annotations

import ctypes
import functools
import importlib.metadata
import math
import pathlib
from typing import Optional

import jax
import jax.numpy as jnp

from vivit_jax.ops import switches
from vivit_jax.ops.cpu import build as cpu_build

TARGET = 'vivit_jax_matmul_f32'   # + '_openblas' or '_mkl': see `target()`.
BLAS_LIBRARIES = ('openblas', 'mkl')
# Products below this many multiply-adds stay on XLA (its inline dots win on tiny layers).
MIN_MACS = 1 << 22


def _openblas():
  try:
    import scipy_openblas32  # pylint: disable=import-outside-toplevel
  except ImportError as e:
    raise cpu_build.KernelUnavailable(f'scipy-openblas32 is not installed ({e}).') from e
  return scipy_openblas32


def _mkl_runtime() -> pathlib.Path:
  """MKL's single dynamic library (libmkl_rt.so.N) from the `mkl` wheel."""
  try:
    files = importlib.metadata.files('mkl') or []
  except importlib.metadata.PackageNotFoundError as e:
    raise cpu_build.KernelUnavailable('the mkl wheel is not installed.') from e
  for f in files:
    if f.name.startswith('libmkl_rt.so'):
      return pathlib.Path(f.locate()).resolve()
  raise cpu_build.KernelUnavailable('the mkl wheel has no libmkl_rt.so.')


def blas() -> str:
  """The BLAS the models use: `VIVIT_JAX_BLAS` ('auto' = MKL where installed)."""
  choice = switches.blas_choice()
  if choice != 'auto':
    return choice
  try:
    _mkl_runtime()
    return 'mkl'
  except cpu_build.KernelUnavailable:
    return 'openblas'


def target(library: Optional[str] = None) -> str:
  """The custom-call target of `library`'s build (default: `blas()`)."""
  return f'{TARGET}_{library or blas()}'


@functools.lru_cache(maxsize=None)
def load(library: Optional[str] = None) -> ctypes.CDLL:
  """Builds (if needed) and registers the kernel against `library` (default: `blas()`).
  Raises cpu_build.KernelUnavailable."""
  library = library or blas()
  if library == 'mkl':
    runtime = _mkl_runtime()
    args = ('-DVIVIT_JAX_BLAS_MKL', str(runtime), f'-Wl,-rpath,{runtime.parent}')
  else:
    openblas = _openblas()
    lib_dir = openblas.get_lib_dir()
    args = (f'-I{openblas.get_include_dir()}', f'-L{lib_dir}', f'-Wl,-rpath,{lib_dir}',
            f'-l{openblas.get_library()}')
  path = cpu_build.build('matmul.cc', 'native', args)
  lib = cpu_build.register(path, {target(library): 'VivitMatmulF32'})
  lib.vivit_matmul_single_threaded_blas()
  return lib


@functools.lru_cache(maxsize=None)
def unavailable_reason() -> Optional[str]:
  """None when the kernel is built and registered, else why not (logged once)."""
  return cpu_build.failure(load, f'CPU matmul kernel ({blas()})')


def available() -> bool:
  return unavailable_reason() is None


def applies(lhs, rhs, dimension_numbers) -> bool:
  """Whether `lax.dot_general(lhs, rhs, dimension_numbers)` is a product `matmul` runs.

  Needs the CPU backend (outside `switches.flop_counting()`), float32 operands, no batch
  axes, lhs's contracted axes trailing and rhs's leading, in the same order (every dense
  layer's form), at least MIN_MACS multiply-adds, and a kernel that builds.
  """
  (lhs_contract, rhs_contract), (lhs_batch, rhs_batch) = dimension_numbers
  n = len(lhs_contract)
  if lhs_batch or rhs_batch or n == 0 or jax.default_backend() != 'cpu':
    return False
  if switches.counting_flops():
    return False
  if jnp.dtype(lhs.dtype) != jnp.float32 or jnp.dtype(rhs.dtype) != jnp.float32:
    return False
  if (tuple(lhs_contract) != tuple(range(lhs.ndim - n, lhs.ndim))
      or tuple(rhs_contract) != tuple(range(n))):
    return False
  if math.prod(lhs.shape) * math.prod(rhs.shape[n:]) < MIN_MACS:
    return False
  return available()


def _call(a, b, transpose_a=False, transpose_b=False, library: Optional[str] = None):
  library = library or blas()
  load(library)
  m = a.shape[-1] if transpose_a else a.shape[-2]
  n = b.shape[-2] if transpose_b else b.shape[-1]
  out = jax.ShapeDtypeStruct((*a.shape[:-2], m, n), jnp.float32)
  return jax.ffi.ffi_call(target(library), out, vmap_method='broadcast_all')(
      a, b, transpose_a=transpose_a, transpose_b=transpose_b)


@jax.custom_vjp
def matmul(a, b):
  """a float32[M, K] x b float32[K, N] -> float32[M, N] by the BLAS's sgemm."""
  return _call(a, b)


def _matmul_fwd(a, b):
  return _call(a, b), (a, b)


def _matmul_bwd(residuals, g):
  a, b = residuals
  return _call(g, b, transpose_b=True), _call(a, g, transpose_a=True)


matmul.defvjp(_matmul_fwd, _matmul_bwd)


def dot_general(lhs, rhs, dimension_numbers):
  """`lax.dot_general` for a product that `applies`: reshaped to one `matmul`.

  lhs [*free_l, *contracted], rhs [*contracted, *free_r] -> [*free_l, *free_r].
  """
  n = len(dimension_numbers[0][0])
  free_l, free_r = lhs.shape[:lhs.ndim - n], rhs.shape[n:]
  k = math.prod(rhs.shape[:n])
  out = matmul(lhs.reshape(math.prod(free_l), k), rhs.reshape(k, math.prod(free_r)))
  return out.reshape(*free_l, *free_r)
