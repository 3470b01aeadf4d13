"""GELU with its own backward pass.

`gelu(x, approximate)` has `jax.nn.gelu`'s values (exact erf form, or the tanh
approximation). Its custom VJP keeps only x and recomputes the CDF in the backward pass
(float32 arithmetic, one rounding for half precision); autodiff of `jax.nn.gelu` keeps
three activation-sized residuals. `switches.own_backward_passes()` off: autodiff.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from vivit_jax.ops import switches

_SQRT_HALF = np.sqrt(0.5)
_SQRT_2_OVER_PI = np.sqrt(2 / np.pi)
_TANH_CUBIC = 0.044715


def gelu(x, approximate: bool = False):
  """GELU of every element: x [...] -> x's shape and dtype (x * Phi(x), Phi the normal
  CDF; `approximate`: the tanh approximation)."""
  if not switches.own_backward_passes():
    return jax.nn.gelu(x, approximate=approximate)
  return _gelu(x, approximate)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def _gelu(x, approximate):
  return jax.nn.gelu(x, approximate=approximate)


def _gelu_fwd(x, approximate):
  return jax.nn.gelu(x, approximate=approximate), x


def _gelu_bwd(approximate, x, grad):
  """d gelu / dx = cdf(x) + x * cdf'(x), computed in float32 (or wider)."""
  # The barrier keeps XLA from merging this recomputation with the forward pass's (which
  # would store its intermediates as residuals again).
  x, grad = jax.lax.optimization_barrier((x, grad))
  z = x.astype(jnp.promote_types(x.dtype, jnp.float32))
  if approximate:
    t = jnp.tanh(_SQRT_2_OVER_PI * (z + _TANH_CUBIC * z ** 3))
    slope = 0.5 * (1 + t) + 0.5 * z * (1 - t * t) * _SQRT_2_OVER_PI * (
        1 + 3 * _TANH_CUBIC * z * z)
  else:
    slope = 0.5 * jax.lax.erfc(-z * _SQRT_HALF) + z * jnp.exp(-0.5 * z * z) * (
        _SQRT_HALF / np.sqrt(np.pi))
  return ((grad * slope).astype(x.dtype),)


_gelu.defvjp(_gelu_fwd, _gelu_bwd)
