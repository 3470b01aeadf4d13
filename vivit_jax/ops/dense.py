"""The dense-product hook of the models' dense layers: `dot_general`.

Every `nn.Dense`/`nn.DenseGeneral`/patch embedding of the models passes
`dot_general=ops.dense.dot_general`. It is `lax.dot_general`, except on CPU:
- float32 products of the dense-layer form (no batch axes) go to the C++ sgemm call of
  `ops.cpu.matmul` (MKL or OpenBLAS, `VIVIT_JAX_BLAS`) where it applies;
- bf16/fp16 operands are multiplied into a float32 result then rounded to their dtype
  (what a half-precision dot computes anyway), the only form XLA:CPU runs on the matrix
  units (AMX); products without batch axes get their own VJP whose two products do the
  same, where jax would transpose into slow float32 x bf16 products.
On GPU and TPU the call is `lax.dot_general` unchanged.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from vivit_jax.ops.cpu import matmul as cpu_matmul

HALF = (jnp.bfloat16, jnp.float16)


def dot_general(lhs, rhs, dimension_numbers, precision=None, preferred_element_type=None,
                **kwargs):
  """`lax.dot_general`, with half-precision products accumulated into float32 on CPU and
  float32 dense-layer products by the sgemm kernel there (`cpu_matmul.applies`)."""
  dtype = jnp.result_type(lhs, rhs)
  if (dtype == jnp.float32 and not kwargs
      and preferred_element_type in (None, jnp.float32)
      and cpu_matmul.applies(lhs, rhs, dimension_numbers)):
    return cpu_matmul.dot_general(lhs, rhs, dimension_numbers)
  if (preferred_element_type is not None or dtype not in HALF
      or jax.default_backend() != 'cpu'):
    return jax.lax.dot_general(lhs, rhs, dimension_numbers, precision=precision,
                               preferred_element_type=preferred_element_type, **kwargs)
  (lhs_contract, rhs_contract), batch = dimension_numbers
  lhs, rhs = lhs.astype(dtype), rhs.astype(dtype)
  if any(batch) or kwargs:
    return _accumulated(lhs, rhs, dimension_numbers, precision)
  return _contract(lhs, rhs, tuple(lhs_contract), tuple(rhs_contract), precision)


def _accumulated(lhs, rhs, dimension_numbers, precision):
  return jax.lax.dot_general(lhs, rhs, dimension_numbers, precision=precision,
                             preferred_element_type=jnp.float32).astype(lhs.dtype)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _contract(lhs, rhs, lhs_contract, rhs_contract, precision):
  """lhs x rhs over the paired axes, no batch axes: out = [lhs free..., rhs free...]."""
  return _accumulated(lhs, rhs, ((lhs_contract, rhs_contract), ((), ())), precision)


def _contract_fwd(lhs, rhs, lhs_contract, rhs_contract, precision):
  return _contract(lhs, rhs, lhs_contract, rhs_contract, precision), (lhs, rhs)


def _contract_bwd(lhs_contract, rhs_contract, precision, residuals, g):
  lhs, rhs = residuals
  g = g.astype(lhs.dtype)
  lhs_free = [d for d in range(lhs.ndim) if d not in lhs_contract]
  rhs_free = [d for d in range(rhs.ndim) if d not in rhs_contract]
  g_lhs = tuple(range(len(lhs_free)))              # g's axes from lhs, then from rhs.
  g_rhs = tuple(range(len(lhs_free), g.ndim))
  # d lhs = g x rhs over rhs's free axes: [lhs free..., rhs contracted (ascending)...].
  d_lhs = _accumulated(g, rhs, ((g_rhs, tuple(rhs_free)), ((), ())), precision)
  axes = lhs_free + [lhs_contract[rhs_contract.index(r)] for r in sorted(rhs_contract)]
  d_lhs = jnp.transpose(d_lhs, [axes.index(d) for d in range(lhs.ndim)])
  # d rhs = lhs x g over lhs's free axes: [lhs contracted (ascending)..., rhs free...].
  d_rhs = _accumulated(lhs, g, ((tuple(lhs_free), g_lhs), ((), ())), precision)
  axes = [rhs_contract[lhs_contract.index(c)] for c in sorted(lhs_contract)] + rhs_free
  d_rhs = jnp.transpose(d_rhs, [axes.index(d) for d in range(rhs.ndim)])
  return d_lhs, d_rhs


_contract.defvjp(_contract_fwd, _contract_bwd)
