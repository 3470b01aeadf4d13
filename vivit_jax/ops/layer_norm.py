"""LayerNorm over rows with its own backward pass.

`layer_norm_rows(rows [N, C], scale [C], bias [C], epsilon)` has `nn.LayerNorm`'s
arithmetic (float32 statistics, var = E[x^2] - E[x]^2 clipped at 0). Its custom VJP keeps
only the input and the per-row statistics for the backward pass; autodiff of the same
formula keeps three [N, C] residuals. `switches.own_backward_passes()` off: autodiff.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from vivit_jax.ops import switches


def layer_norm_rows(rows, scale, bias, epsilon: float):
  """LayerNorm of each row: rows [N, C], scale and bias [C] -> float32 (or wider) [N, C]."""
  if not switches.own_backward_passes():
    return _layer_norm_rows_fwd(rows, scale, bias, epsilon)[0]
  return _layer_norm_rows(rows, scale, bias, epsilon)


def _row_statistics(rows, epsilon):
  """rows [N, C] -> (mean, rsqrt(var + epsilon)), float32 (or wider) [N, 1] each."""
  rows = rows.astype(jnp.promote_types(rows.dtype, jnp.float32))
  mean = jnp.mean(rows, axis=-1, keepdims=True)
  var = jnp.maximum(0.0, jnp.mean(jnp.square(rows), axis=-1, keepdims=True)
                    - jnp.square(mean))
  return mean, jax.lax.rsqrt(var + epsilon)



@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def _layer_norm_rows(rows, scale, bias, epsilon: float):
  return _layer_norm_rows_fwd(rows, scale, bias, epsilon)[0]


def _layer_norm_rows_fwd(rows, scale, bias, epsilon):
  mean, rstd = _row_statistics(rows, epsilon)
  return (rows - mean) * (rstd * scale) + bias, (rows, scale, bias, mean, rstd)


def _layer_norm_rows_bwd(epsilon, residuals, grad):
  del epsilon
  # The barrier keeps XLA from merging the recomputation below with the forward pass's
  # (which would store x_hat as a residual again).
  (rows, scale, bias, mean, rstd), grad = jax.lax.optimization_barrier((residuals, grad))
  normed = (rows - mean) * rstd                      # x_hat, float32 [N, C]
  grad_normed = grad * scale
  # d x = rstd * (g_hat - mean(g_hat) - x_hat * mean(g_hat * x_hat)), g_hat = g * scale.
  grad_rows = rstd * (grad_normed - jnp.mean(grad_normed, axis=-1, keepdims=True)
                      - normed * jnp.mean(grad_normed * normed, axis=-1, keepdims=True))
  grad_scale = jnp.sum(grad * normed, axis=0)
  grad_bias = jnp.sum(grad, axis=0)
  return (grad_rows.astype(rows.dtype), grad_scale.astype(scale.dtype),
          grad_bias.astype(bias.dtype))


_layer_norm_rows.defvjp(_layer_norm_rows_fwd, _layer_norm_rows_bwd)
