"""Shared transformer blocks: attention, MLP, stochastic depth, encoder blocks.

Every model family builds on these; nothing here knows about video. Parameter names
follow Scenic / big_vision (`LayerNorm_0`, `MultiHeadDotProductAttention_0`,
`LayerNorm_1`, `MlpBlock_0/Dense_{0,1}`, `query/key/value/out`) so that checkpoints map
onto this tree by name. Attention kernels have the Flax layout: query/key/value
`kernel: [D, heads, head_dim]`, out `kernel: [heads, head_dim, D]`.
"""
from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import functools
import os
from typing import Any, Callable, Mapping, Optional

import einops
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.ad_checkpoint import checkpoint_name

from vivit_jax.models import cpu_attention, cpu_build, precision
from vivit_jax.models.embeddings import AddPositionEmbedding

ATTENTION_IMPLS = ('xla', 'cudnn', 'explicit', 'chunked', 'cpu_flash')
# Queries per step of `chunked_attention`: at ViViT-B Model 1's 3137 tokens, 512 (7
# chunks of 456) ran 5% faster than 256 forward and 4% forward + backward (2 cores).
QUERY_CHUNK_SIZE = 512
# What `nn.remat` keeps from the forward pass of a block (config.model.remat_policy);
# everything else is recomputed in the backward pass.
REMAT_POLICIES = {
    'nothing_saveable': jax.checkpoint_policies.nothing_saveable,   # least memory.
    'dots_saveable': jax.checkpoint_policies.dots_saveable,   # matmul outputs kept.
    'dots_with_no_batch_dims_saveable':   # dense-layer outputs kept, attention recomputed.
        jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
    'everything_saveable': jax.checkpoint_policies.everything_saveable,   # = no remat.
}


@dataclasses.dataclass(frozen=True)
class TransformerConfig:
  """Hyper-parameters shared by every transformer encoder in the zoo.

  `stochastic_depth` is the drop-path rate of the last block; block i of L gets
  `i / (L - 1) * stochastic_depth` (Scenic/timm convention).
  """
  hidden_size: int = 768
  num_layers: int = 12
  num_heads: int = 12
  mlp_dim: int = 3072
  dropout_rate: float = 0.0
  attention_dropout_rate: float = 0.0
  stochastic_depth: float = 0.0
  layer_norm_epsilon: float = 1e-6
  gelu_approximate: bool = False
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  attention_impl: str = 'xla'
  remat: bool = False
  remat_policy: str = 'nothing_saveable'

  @classmethod
  def from_model_config(cls, model_config, **overrides) -> 'TransformerConfig':
    """Builds the config from a `config.model` ConfigDict (fields of the same name)."""
    m = model_config
    kwargs = dict(
        hidden_size=m.hidden_size, num_layers=m.num_layers, num_heads=m.num_heads,
        mlp_dim=m.mlp_dim, dropout_rate=m.get('dropout_rate', 0.0),
        attention_dropout_rate=m.get('attention_dropout_rate', 0.0),
        stochastic_depth=m.get('stochastic_depth', 0.0),
        layer_norm_epsilon=m.get('layer_norm_epsilon', 1e-6),
        gelu_approximate=m.get('gelu_approximate', False),
        dtype=jnp.dtype(m.get('dtype', 'float32')),
        param_dtype=jnp.dtype(m.get('param_dtype', 'float32')),
        attention_impl=m.get('attention_impl', 'xla'), remat=m.get('remat', False),
        remat_policy=m.get('remat_policy', 'nothing_saveable'))
    kwargs.update(overrides)
    return cls(**kwargs)

  def drop_path_rate(self, layer: int) -> float:
    return layer / max(self.num_layers - 1, 1) * self.stochastic_depth

  def maybe_remat(self, block: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """`block` wrapped in `nn.remat` with `remat_policy` when `remat` is on.

    The block is called as `block(...)(x, deterministic)`: `deterministic` (argument 2
    counting the module) is static.
    """
    if not self.remat:
      return block
    if self.remat_policy not in REMAT_POLICIES:
      raise ValueError(f'remat_policy {self.remat_policy!r} is invalid: expected one of '
                       f'{sorted(REMAT_POLICIES)}.')
    return nn.remat(block, static_argnums=(2,), policy=REMAT_POLICIES[self.remat_policy])


class LayerNorm(nn.Module):
  """LayerNorm over the last axis: x [..., C] -> x's shape, `dtype` (default: x's).

  `nn.LayerNorm`'s parameters (`scale`, `bias`) and arithmetic (float32 statistics,
  var = E[x^2] - E[x]^2 clipped at 0, y = (x - mean) * rsqrt(var + eps) * scale + bias),
  computed on a [rows, C] view by `layer_norm_rows`. Why not `nn.LayerNorm` itself:
  XLA:CPU parallelises a reduction over its outer axis only, so on a [1, N, C] input (a
  batch-1 step) the backward pass's row reductions ran on one thread and 10x slower
  (ViViT-B's [1, 3137, 768]: 37 ms against 4 ms forward + backward; 1.4 s of a 12-s
  Model 1 training step).
  """
  epsilon: float = 1e-6
  dtype: Optional[Any] = None
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    c = x.shape[-1]
    scale = self.param('scale', nn.initializers.ones, (c,), self.param_dtype)
    bias = self.param('bias', nn.initializers.zeros, (c,), self.param_dtype)
    norm = layer_norm_rows if own_backward_passes() else _layer_norm_rows_autodiff
    y = norm(x.reshape(-1, c), scale, bias, self.epsilon)
    dtype = nn.dtypes.canonicalize_dtype(x, scale, dtype=self.dtype)
    return y.astype(dtype).reshape(x.shape)


def own_backward_passes() -> bool:
  """Whether GELU and LayerNorm differentiate through their own backward passes
  (`gelu`, `layer_norm_rows`: the default) or through JAX's autodiff of the same
  formulas (`VIVIT_JAX_OWN_BACKWARD=0`, read when a model is traced). Same values either
  way; the switch is there to measure both on a backend where only autodiff has been
  measured (experiments/gpu_run.sh's `m1_autodiff` step)."""
  return os.environ.get('VIVIT_JAX_OWN_BACKWARD', '1') != '0'


def _row_statistics(rows, epsilon):
  """rows [N, C] -> (mean, rsqrt(var + epsilon)), float32 (or wider) [N, 1] each."""
  rows = rows.astype(jnp.promote_types(rows.dtype, jnp.float32))
  mean = jnp.mean(rows, axis=-1, keepdims=True)
  var = jnp.maximum(0.0, jnp.mean(jnp.square(rows), axis=-1, keepdims=True)
                    - jnp.square(mean))
  return mean, jax.lax.rsqrt(var + epsilon)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def layer_norm_rows(rows, scale, bias, epsilon: float):
  """LayerNorm of each row: rows [N, C], scale and bias [C] -> float32 (or wider) [N, C].

  A custom VJP whose backward pass keeps only the input and the per-row statistics:
  autodiff of the forward formula kept three [N, C] residuals, and for ViViT-B's LayerNorm
  ([3137, 768], 2 CPU cores) took 4.1 + 4.1 ms forward + backward against 1.7 + 3.2 ms.
  """
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


layer_norm_rows.defvjp(_layer_norm_rows_fwd, _layer_norm_rows_bwd)


def _layer_norm_rows_autodiff(rows, scale, bias, epsilon):
  """`layer_norm_rows`' values, differentiated by autodiff (`own_backward_passes()` off)."""
  return _layer_norm_rows_fwd(rows, scale, bias, epsilon)[0]


def layer_norm(cfg: TransformerConfig, name: Optional[str] = None) -> LayerNorm:
  return LayerNorm(epsilon=cfg.layer_norm_epsilon, dtype=cfg.dtype,
                   param_dtype=cfg.param_dtype, name=name)


_FLOP_COUNTING = contextvars.ContextVar('vivit_jax_flop_counting', default=False)


@contextlib.contextmanager
def flop_counting():
  """Within it, every attention traces as the 'explicit' path (same math), and dense
  layers as XLA dots.

  XLA's `cost_analysis()` counts a loop body once and a cuDNN custom call as nothing,
  so count model FLOPs (cost.py, MFU) by lowering the model inside this context.
  """
  token = _FLOP_COUNTING.set(True)
  try:
    with cpu_build.xla_only():   # dense layers on XLA's dots, not the sgemm custom call.
      yield
  finally:
    _FLOP_COUNTING.reset(token)


def resolve_attention_impl(impl: str) -> str:
  """The kernel `impl` runs on the default backend: 'xla' picks the fastest correct one.

  'xla' -> 'chunked' on CPU (query-chunked heads-first kernel, ~4x faster than XLA's
  generic attention there; `dot_product_attention` upgrades it to the C++ 'cpu_flash'
  kernel where that applies) and `jax.nn.dot_product_attention` elsewhere, which
  `dot_product_attention` runs as cuDNN flash attention on GPU for bf16/fp16 inputs that
  cuDNN accepts, XLA otherwise. Other values are returned as given, except inside
  `flop_counting()`, where everything is 'explicit'.
  """
  if impl not in ATTENTION_IMPLS:
    raise ValueError(f'attention impl {impl!r} is invalid: expected one of {ATTENTION_IMPLS}.')
  if _FLOP_COUNTING.get():
    return 'explicit'
  if impl == 'xla' and jax.default_backend() == 'cpu':
    return 'chunked'
  return impl


@dataclasses.dataclass(frozen=True)
class DecomposedBias:
  """An attention bias that is a sum of per-axis terms over a T x Hr x W key grid
  (MViTv2's decomposed relative positions), passed as `dot_product_attention`'s `bias`:

    bias[b, n, q, skip + (i * Hr + j) * W + l]
        = terms[b, n, q, i] + terms[b, n, q, T + j] + terms[b, n, q, T + Hr + l],

  and 0 for the first `skip` keys (a CLS token). terms: float32 [B, H, Lq, T + Hr + W];
  grid: (T, Hr, W). The C++ CPU kernel adds it row by row; the other kernels get `dense()`.
  """
  terms: Any
  grid: tuple
  skip: int = 0

  def dense(self):
    """The bias it stands for: float32 [B, H, Lq, skip + T * Hr * W]."""
    t, h, w = self.grid
    rt, rh, rw = jnp.split(jnp.asarray(self.terms, jnp.float32), [t, t + h], axis=-1)
    bias = rt[..., :, None, None] + rh[..., None, :, None] + rw[..., None, None, :]
    bias = bias.reshape(*bias.shape[:-3], t * h * w)
    return jnp.pad(bias, [(0, 0)] * (bias.ndim - 1) + [(self.skip, 0)])

  def kernel_args(self):
    """(terms, (T, Hr, W, skip)): `cpu_attention.flash_attention`'s `rel`."""
    return self.terms, (*self.grid, self.skip)


def dot_product_attention(query, key, value, *, bias=None, mask=None, impl: str = 'xla',
                          dropout_rate: float = 0.0, dropout_rng=None,
                          deterministic: bool = True,
                          query_chunk_size: Optional[int] = None):
  """Softmax attention over the key axis, heads kept separate.

  query: [B, Lq, H, Dh]; key, value: [B, Lk, H, Dh] -> [B, Lq, H, Dh].
  `bias` (optional) is added to the scaled logits and `mask` (optional, bool, True = may
  attend) removes logits; both broadcast to [B, H, Lq, Lk] (e.g. a relative position
  bias [1, H, Lq, Lk], a window mask [B, 1, Lq, Lk]); they go to
  `jax.nn.dot_product_attention`'s `bias`/`mask`, or are applied in the explicit path.
  `bias` may also be a `DecomposedBias`, which the C++ CPU kernel takes as it is and the
  other kernels as its `dense()` array.
  `impl` (see `resolve_attention_impl`): 'xla' is the fastest correct kernel of the
  backend (on GPU, cuDNN for half precision where `cudnn_accepts` the shapes, odd
  lengths padded by `even_length_attention`; XLA otherwise); 'cudnn' forces
  `jax.nn.dot_product_attention`'s cuDNN kernel; 'explicit' is
  the plain einsum/softmax path; 'chunked' is `chunked_attention` (queries in chunks of
  `query_chunk_size`, default QUERY_CHUNK_SIZE; O(chunk * Lk) memory per head);
  'cpu_flash' is `cpu_attention.flash_attention`, a C++ kernel for XLA:CPU built on first
  use, which 'xla' picks on CPU when it builds and `cpu_attention.supports` the call
  (bias and mask included; not with active dropout): 1.8x faster than 'chunked' at
  ViViT-B Model 1's shapes.
  Attention-probability dropout runs in 'chunked' and 'explicit'; 'cpu_flash' falls back
  to 'chunked' and other kernels to 'explicit' while it is active.
  Softmax statistics are computed in float32 whatever the input dtype.
  """
  requested = impl
  impl = resolve_attention_impl(impl)
  use_dropout = dropout_rate > 0.0 and not deterministic
  rel = bias.kernel_args() if isinstance(bias, DecomposedBias) else None
  dense_bias = None if rel is not None else bias
  if impl == 'cpu_flash' and not use_dropout:
    if not cpu_attention.supports(query, key, value, dense_bias, mask, rel):
      reason = (cpu_attention.unavailable_reason() or
                'it takes [B, L, H, Dh] float inputs, bias and mask broadcasting to '
                '[B, H, Lq, Lk] with batch axis 1 or B and head axis 1 or H, and a '
                'DecomposedBias with terms [B, H, Lq, T + Hr + W] and '
                'Lk = skip + T * Hr * W')
      raise ValueError(f"attention impl 'cpu_flash' cannot run this call: {reason}")
    return cpu_attention.flash_attention(query, key, value, bias=dense_bias, mask=mask,
                                         rel=rel)
  if (requested == 'xla' and impl == 'chunked' and not use_dropout
      and cpu_attention.supports(query, key, value, dense_bias, mask, rel)):
    return cpu_attention.flash_attention(query, key, value, bias=dense_bias, mask=mask,
                                         rel=rel)
  if rel is not None:
    bias = bias.dense()
  if impl == 'cpu_flash':
    impl = 'chunked'
  if impl == 'chunked':
    return chunked_attention(query, key, value, bias=bias, mask=mask,
                             dropout_rate=dropout_rate if use_dropout else 0.0,
                             dropout_rng=dropout_rng,
                             chunk_size=query_chunk_size or QUERY_CHUNK_SIZE)
  if impl != 'explicit' and not use_dropout:
    if mask is not None:
      mask = jnp.asarray(mask, bool)
    if impl == 'cudnn' or (impl == 'xla' and jax.default_backend() == 'gpu'
                           and query.dtype in (jnp.bfloat16, jnp.float16)
                           and cudnn_accepts(query, key, value, bias, mask)):
      return even_length_attention(query, key, value, bias=bias, mask=mask,
                                   implementation='cudnn')
    return jax.nn.dot_product_attention(query, key, value, bias=bias, mask=mask,
                                        implementation=impl)
  scale = query.shape[-1] ** -0.5
  logits = jnp.einsum('bqhd,bkhd->bhqk', query, key,
                      preferred_element_type=jnp.float32) * scale
  if bias is not None:
    logits = logits + jnp.asarray(bias, jnp.float32)
  if mask is not None:
    logits = jnp.where(mask, logits, jnp.finfo(jnp.float32).min)
  probs = jax.nn.softmax(logits, axis=-1)
  if use_dropout:
    keep = jax.random.bernoulli(dropout_rng, 1.0 - dropout_rate, probs.shape)
    probs = jnp.where(keep, probs / (1.0 - dropout_rate), 0.0)
  return jnp.einsum('bhqk,bkhd->bqhd', probs.astype(value.dtype), value)


def even_length_attention(query, key, value, *, bias=None, mask=None,
                          implementation=None):
  """`jax.nn.dot_product_attention` with odd sequence lengths padded by one token.

  cuDNN's backward pass rejects odd lengths (ViViT Model 1 has 3137 tokens): without
  bias and mask, an odd query/key axis gets one zero token, the padded key is masked
  through `key_value_seq_lengths` (cuDNN's padding mask, no dense bias) and the padded
  query row is dropped. Other inputs go through unchanged. Shapes as
  `dot_product_attention`.
  """
  b, lq = query.shape[:2]
  lk = key.shape[1]
  if (lq % 2 == 0 and lk % 2 == 0) or bias is not None or mask is not None:
    return jax.nn.dot_product_attention(query, key, value, bias=bias, mask=mask,
                                        implementation=implementation)
  pad = lambda x, n: jnp.pad(x, ((0, 0), (0, n % 2), (0, 0), (0, 0)))
  out = jax.nn.dot_product_attention(
      pad(query, lq), pad(key, lk), pad(value, lk),
      query_seq_lengths=np.full((b,), lq, np.int32),
      key_value_seq_lengths=np.full((b,), lk, np.int32), implementation=implementation)
  return out[:, :lq]


def cudnn_accepts(query, key, value, bias=None, mask=None) -> bool:
  """Whether cuDNN takes these attention inputs forward *and* backward.

  jax checks cuDNN's limits when it traces each pass, and the backward one only under
  `jax.grad` (possibly inside remat, past any try/except at the call), so both are
  traced here on abstract values; the answer is cached by shape and dtype.
  """
  spec = lambda x: None if x is None else (tuple(x.shape), jnp.dtype(x.dtype).name)
  return _cudnn_accepts(*(spec(x) for x in (query, key, value, bias, mask)))


@functools.lru_cache(maxsize=None)
def _cudnn_accepts(*specs) -> bool:
  def loss(q, k, v, bias, mask):
    out = even_length_attention(q, k, v, bias=bias, mask=mask, implementation='cudnn')
    return jnp.sum(out.astype(jnp.float32))
  args = [None if s is None else jax.ShapeDtypeStruct(*s) for s in specs]
  try:
    jax.eval_shape(jax.grad(loss, argnums=(0, 1, 2)), *args)
  except (ValueError, NotImplementedError, RuntimeError, TypeError):
    return False
  return True


def _as_4d(x, dtype, shape, name):
  """`bias`/`mask` as a 4-D array broadcastable to `shape` = (B, H, Lq, Lk), or None."""
  if x is None:
    return None
  x = jnp.asarray(x, dtype)
  if x.ndim > 4 or any(s not in (1, t) for s, t in zip(x.shape[::-1], shape[::-1])):
    raise ValueError(f'attention {name} of shape {x.shape} is invalid: expected a shape '
                     f'that broadcasts to [B, H, Lq, Lk] = {list(shape)}.')
  return x.reshape((1,) * (4 - x.ndim) + x.shape)


def _attention_block(q, kt, v, bias, mask, keep, rate):
  """Softmax attention of one block: q [..., c, Dh], kt [..., Dh, Lk], v [..., Lk, Dh].

  bias/mask/keep broadcast to [..., c, Lk] (or are None); `keep` is the dropout keep
  mask for `rate`. Logits, max, exp and the normaliser are float32; the normaliser
  divides the [c, Dh] output rather than the [c, Lk] probabilities.
  """
  logits = jnp.einsum('...qd,...dk->...qk', q, kt, preferred_element_type=jnp.float32)
  logits = logits * q.shape[-1] ** -0.5
  if bias is not None:
    logits = logits + bias
  if mask is not None:
    logits = jnp.where(mask, logits, jnp.finfo(jnp.float32).min)
  # Names of the small [..., c, 1|Dh] results that `chunked_attention` keeps for the
  # backward pass (`_CHUNK_SAVED`): only the logits and exp are recomputed.
  row_max = checkpoint_name(jnp.max(logits, axis=-1, keepdims=True), 'attention_max')
  e = jnp.exp(logits - row_max)
  denom = checkpoint_name(jnp.sum(e, axis=-1, keepdims=True), 'attention_denominator')
  if keep is not None:
    e = jnp.where(keep, e / (1.0 - rate), 0.0)
  out = jnp.einsum('...qk,...kd->...qd', e.astype(v.dtype), v,
                   preferred_element_type=jnp.float32)
  out = checkpoint_name(out, 'attention_unnormalised')
  return (out / denom).astype(v.dtype)


_CHUNK_SAVED = jax.checkpoint_policies.save_only_these_names(
    'attention_max', 'attention_denominator', 'attention_unnormalised')


def chunk_dropout_keep(rng, group: int, chunk: int, rate: float, shape):
  """Dropout keep mask (bool `shape` = [chunk_size, Lk]) of query chunk `chunk` of head
  `group` (= b * H + h) in `chunked_attention`: the same mask whatever the batch."""
  rng = jax.random.fold_in(jax.random.fold_in(rng, group), chunk)
  return jax.random.bernoulli(rng, 1.0 - rate, shape)


def chunked_attention(query, key, value, *, bias=None, mask=None,
                      dropout_rate: float = 0.0, dropout_rng=None,
                      chunk_size: Optional[int] = None):
  """Attention for the CPU: heads first, a loop over heads and query chunks.

  query: [B, Lq, H, Dh]; key, value: [B, Lk, H, Dh] -> [B, Lq, H, Dh]; bias/mask as in
  `dot_product_attention`. Equal to the explicit path up to float32 rounding. With
  Lq <= chunk_size it is one batched heads-first computation. Otherwise a `lax.scan`
  over the B*H heads runs a `lax.scan` over ceil(Lq / chunk_size) equal chunks of at
  most `chunk_size` queries (the last one padded): the
  [chunk, Lk] logits of one head stay in cache between the two matmuls and the softmax,
  which is what makes it fast on CPU. The backward pass recomputes a chunk's logits and
  exp (one matmul) from its saved row max, normaliser and unnormalised output, so
  training memory is O(chunk * Lk) per head instead of O(Lq * Lk).
  Dropout (rate > 0 needs `dropout_rng`) drops attention probabilities; its masks are
  `chunk_dropout_keep` per (head, chunk), or one mask over [B, H, Lq, Lk] when unchunked.
  """
  b, lq, h, d = query.shape
  lk = key.shape[1]
  chunk_size = QUERY_CHUNK_SIZE if chunk_size is None else chunk_size
  if chunk_size < 1:
    raise ValueError(f'attention chunk_size={chunk_size} is invalid: expected >= 1.')
  if dropout_rate > 0.0 and dropout_rng is None:
    raise ValueError('chunked_attention with dropout_rate > 0 needs a dropout_rng.')
  full = (b, h, lq, lk)
  bias = _as_4d(bias, jnp.float32, full, 'bias')
  mask = _as_4d(mask, bool, full, 'mask')
  q = einops.rearrange(query, 'b l h d -> b h l d')
  kt = einops.rearrange(key, 'b l h d -> b h d l')
  v = einops.rearrange(value, 'b l h d -> b h l d')
  rate = dropout_rate
  if lq <= chunk_size:
    keep = (jax.random.bernoulli(dropout_rng, 1.0 - rate, full) if rate > 0.0 else None)
    out = _attention_block(q, kt, v, bias, mask, keep, rate)
    return einops.rearrange(out, 'b h l d -> b l h d')

  n = -(-lq // chunk_size)
  # n balanced chunks (a multiple of 8 rows where that stays <= chunk_size): 3137 queries
  # in 7 chunks of 456 pad 55 rows instead of 447.
  chunk_size = min(chunk_size, -(-(-(-lq // n)) // 8) * 8)
  pad = n * chunk_size - lq

  def chunks(x):   # [..., Lq, X] -> [..., n, chunk, X]; rows past Lq are padding.
    x = jnp.pad(x, [(0, 0)] * (x.ndim - 2) + [(0, pad), (0, 0)])
    return x.reshape(x.shape[:-2] + (n, chunk_size, x.shape[-1]))

  heads = lambda x: x.reshape((b * h,) + x.shape[2:])   # [B, H, ...] -> [B*H, ...]
  extras = {name: x for name, x in (('bias', bias), ('mask', mask)) if x is not None}

  def per_head(_, xs):
    g, q_g, kt_g, v_g = xs
    # This head's bias/mask rows: [Lq or 1, Lk] (indexing only dims that are not 1).
    rows = {name: x[(g // h) % x.shape[0], (g % h) % x.shape[1]]
            for name, x in extras.items()}
    per_chunk = {name: chunks(x) for name, x in rows.items() if x.shape[0] > 1}
    fixed = {name: x for name, x in rows.items() if x.shape[0] == 1}

    @functools.partial(jax.checkpoint, prevent_cse=False, policy=_CHUNK_SAVED)
    def per_chunk_fn(j, q_c, extra_c):
      extra = {**fixed, **extra_c}
      keep = (chunk_dropout_keep(dropout_rng, g, j, rate, (chunk_size, lk))
              if rate > 0.0 else None)
      return _attention_block(q_c, kt_g, v_g, extra.get('bias'), extra.get('mask'),
                              keep, rate)

    _, out = jax.lax.scan(lambda c, x: (c, per_chunk_fn(*x)), None,
                          (jnp.arange(n), q_g, per_chunk))
    return None, out

  _, out = jax.lax.scan(per_head, None,
                        (jnp.arange(b * h), chunks(heads(q)), heads(kt), heads(v)))
  out = out.reshape(b, h, n * chunk_size, d)[:, :, :lq]
  return einops.rearrange(out, 'b h l d -> b l h d')


# `attend(q, k, v, *, bias=None, mask=None) -> out` for q/k/v [B, L, H, Dh] (see
# `dot_product_attention`); a layout receives it and decides which tokens attend to which
# (joint, factorised over a token grid, windowed, pooled). A layout is a function, or a
# Linen module when it owns parameters (a relative position table, pooling convolutions).
AttendFn = Callable[[jax.Array, jax.Array, jax.Array], jax.Array]
LayoutFn = Callable[[jax.Array, jax.Array, jax.Array, AttendFn], jax.Array]


def joint_layout(query, key, value, attend: AttendFn):
  """Every token attends to every token of its sequence: q/k/v [B, L, H, Dh]."""
  return attend(query, key, value)


class MultiHeadAttention(nn.Module):
  """Multi-head self-attention with query/key/value/out projections.

  x: [B, ..., D] -> [B, ..., D]. The token layout of the leading axes is the business of
  `layout` (default: `joint_layout` over x: [B, L, D]); see vivit.py for the factorised
  dot-product layout (Model 4), which splits the heads between space and time.
  """
  cfg: TransformerConfig
  layout: LayoutFn = joint_layout

  @nn.compact
  def __call__(self, x, *, deterministic: bool):
    cfg = self.cfg
    head_dim = cfg.hidden_size // cfg.num_heads
    dense = functools.partial(
        nn.DenseGeneral, dtype=cfg.dtype, param_dtype=cfg.param_dtype,
        dot_general=precision.dot_general,
        kernel_init=nn.initializers.xavier_uniform())
    q, k, v = (dense(features=(cfg.num_heads, head_dim), name=n)(x)
               for n in ('query', 'key', 'value'))
    rng = None
    if cfg.attention_dropout_rate > 0.0 and not deterministic:
      rng = self.make_rng('dropout')
    attend = functools.partial(
        dot_product_attention, impl=cfg.attention_impl,
        dropout_rate=cfg.attention_dropout_rate, dropout_rng=rng,
        deterministic=deterministic)
    out = self.layout(q, k, v, attend)
    return dense(features=cfg.hidden_size, axis=(-2, -1), name='out')(out)


_SQRT_HALF = np.sqrt(0.5)
_SQRT_2_OVER_PI = np.sqrt(2 / np.pi)
_TANH_CUBIC = 0.044715


def gelu(x, approximate: bool = False):
  """GELU of every element: x [...] -> x's shape and dtype; `jax.nn.gelu`'s values.

  approximate=False: x * Phi(x), Phi the normal CDF (exact, erfc); True: the tanh
  approximation. Differentiated by a custom VJP that keeps only x for the backward pass
  and recomputes Phi there (`own_backward_passes()`; else autodiff of `jax.nn.gelu`):
  autodiff kept three activation-sized residuals, and for ViViT-B's MLP ([3137, 3072]
  per layer, 2 CPU cores) took 48 + 14 ms forward + backward against 20 + 22 ms (0.3 s
  of a 12-layer training step), with a third of the activation memory.
  """
  if not own_backward_passes():
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


class MlpBlock(nn.Module):
  """Dense -> GELU -> dropout -> Dense -> dropout. x: [..., D] -> [..., out_dim or D]."""
  cfg: TransformerConfig
  out_dim: Optional[int] = None

  @nn.compact
  def __call__(self, x, *, deterministic: bool):
    cfg = self.cfg
    dense = functools.partial(
        nn.Dense, dtype=cfg.dtype, param_dtype=cfg.param_dtype,
        dot_general=precision.dot_general,
        kernel_init=nn.initializers.xavier_uniform(),
        bias_init=nn.initializers.normal(stddev=1e-6))
    y = dense(cfg.mlp_dim, name='Dense_0')(x)
    y = gelu(y, cfg.gelu_approximate)
    y = nn.Dropout(cfg.dropout_rate)(y, deterministic=deterministic)
    y = dense(self.out_dim or x.shape[-1], name='Dense_1')(y)
    return nn.Dropout(cfg.dropout_rate)(y, deterministic=deterministic)


class DropPath(nn.Module):
  """Stochastic depth: drops the whole residual branch per example, rescaling the rest.

  x: [B, ...]; uses the 'dropout' rng when training and `rate > 0`.
  """
  rate: float

  @nn.compact
  def __call__(self, x, *, deterministic: bool):
    if deterministic or self.rate == 0.0:
      return x
    keep_prob = 1.0 - self.rate
    shape = (x.shape[0],) + (1,) * (x.ndim - 1)
    keep = jax.random.bernoulli(self.make_rng('dropout'), keep_prob, shape)
    return jnp.where(keep, x / keep_prob, 0.0).astype(x.dtype)


class EncoderBlock(nn.Module):
  """Pre-norm transformer block: x + Attn(LN(x)), then x + MLP(LN(x)).

  x: [B, L, D] for joint attention; any shape `layout` understands otherwise.
  """
  cfg: TransformerConfig
  drop_path: float = 0.0
  layout: LayoutFn = joint_layout

  @nn.compact
  def __call__(self, x, deterministic: bool):
    cfg = self.cfg
    y = layer_norm(cfg, 'LayerNorm_0')(x)
    y = MultiHeadAttention(cfg, self.layout, name='MultiHeadDotProductAttention_0')(
        y, deterministic=deterministic)
    y = nn.Dropout(cfg.dropout_rate)(y, deterministic=deterministic)
    x = x + DropPath(self.drop_path)(y, deterministic=deterministic)
    y = layer_norm(cfg, 'LayerNorm_1')(x)
    y = MlpBlock(cfg, name='MlpBlock_0')(y, deterministic=deterministic)
    return x + DropPath(self.drop_path)(y, deterministic=deterministic)


class Encoder(nn.Module):
  """Position embedding, dropout, `num_layers` blocks, final LayerNorm.

  x: [B, L, D] -> [B, L, D]. `block` is the block class (EncoderBlock or a factorised
  one) called as `block(cfg, drop_path=..., name='encoderblock_i', **block_kwargs)`.
  The learned position embedding covers all L tokens (`posembed_input/pos_embedding`).
  """
  cfg: TransformerConfig
  block: Callable[..., nn.Module] = EncoderBlock
  block_kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict)

  @nn.compact
  def __call__(self, x, *, train: bool):
    cfg = self.cfg
    x = AddPositionEmbedding(cfg.param_dtype, name='posembed_input')(x)
    x = nn.Dropout(cfg.dropout_rate)(x, deterministic=not train)
    block = cfg.maybe_remat(self.block)
    for i in range(cfg.num_layers):
      x = block(cfg, drop_path=cfg.drop_path_rate(i), name=f'encoderblock_{i}',
                **self.block_kwargs)(x, not train)
    return layer_norm(cfg, 'encoder_norm')(x)
