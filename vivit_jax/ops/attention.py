"""Softmax attention and the choice of its kernel.

`dot_product_attention(query, key, value, bias=, mask=, impl=)` with query [B, Lq, H, Dh],
key/value [B, Lk, H, Dh] -> [B, Lq, H, Dh] is the one entry point the models use.
`impl` (`config.model.attention_impl`) picks the kernel:

  'auto'       the fastest exact kernel of the backend: on CPU the C++ flash kernel
               ('cpu_flash') where it builds and supports the call, else 'chunked'; on
               GPU cuDNN flash attention for bf16/fp16 inputs cuDNN accepts (odd lengths
               padded by `even_length_attention`), else XLA's `jax.nn.dot_product_attention`.
               ('xla' is a deprecated alias of 'auto'.)
  'cudnn'      `jax.nn.dot_product_attention`'s cuDNN kernel, forced.
  'chunked'    `chunked_attention`: heads first, query chunks of QUERY_CHUNK_SIZE, O(chunk
               * Lk) memory per head; fast on XLA:CPU.
  'cpu_flash'  `ops.cpu.flash_attention`, forced (an error where it cannot run).
  'explicit'   the plain einsum/softmax formulation.

Inside `switches.flop_counting()` every impl traces as 'explicit' (same math), so XLA's
cost analysis sees the attention FLOPs. Softmax statistics are float32 whatever the
input dtype. Attention-probability dropout runs in 'chunked' and 'explicit'; the fused
kernels fall back to those while it is active.
"""
from __future__ import annotations

import dataclasses
import functools
import warnings
from typing import Any, Optional

import einops
import jax
import jax.numpy as jnp
import numpy as np
from jax.ad_checkpoint import checkpoint_name

from vivit_jax.ops import switches
from vivit_jax.ops.cpu import flash_attention as cpu_flash_attention

ATTENTION_IMPLS = ('auto', 'cudnn', 'chunked', 'cpu_flash', 'explicit')
DEPRECATED_ATTENTION_IMPLS = {'xla': 'auto'}   # old name -> current name.
# Queries per step of `chunked_attention` (the fastest of 256/512 at ViViT-B Model 1's
# 3137 tokens on CPU; see experiments/README.md).
QUERY_CHUNK_SIZE = 512


def canonical_attention_impl(impl: str) -> str:
  """`impl` with deprecated names replaced (and a FutureWarning saying so); ValueError
  naming `impl` when it is unknown."""
  if impl in DEPRECATED_ATTENTION_IMPLS:
    new = DEPRECATED_ATTENTION_IMPLS[impl]
    warnings.warn(f'attention_impl={impl!r} is deprecated: use {new!r} (same meaning).',
                  FutureWarning, stacklevel=3)
    return new
  if impl not in ATTENTION_IMPLS:
    raise ValueError(f'attention impl {impl!r} is invalid: expected one of '
                     f'{ATTENTION_IMPLS}.')
  return impl


def resolve_attention_impl(impl: str) -> str:
  """The kernel family `impl` runs on the default backend, before per-call checks:
  'explicit' inside `flop_counting()`; 'auto' -> 'chunked' on CPU (which
  `dot_product_attention` upgrades to 'cpu_flash' where the C++ kernel supports the
  call); other values as given."""
  impl = canonical_attention_impl(impl)
  if switches.counting_flops():
    return 'explicit'
  if impl == 'auto' and jax.default_backend() == 'cpu':
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
    """(terms, (T, Hr, W, skip)): `cpu.flash_attention.flash_attention`'s `rel`."""
    return self.terms, (*self.grid, self.skip)


def dot_product_attention(query, key, value, *, bias=None, mask=None, impl: str = 'auto',
                          dropout_rate: float = 0.0, dropout_rng=None,
                          deterministic: bool = True,
                          query_chunk_size: Optional[int] = None):
  """Softmax attention over the key axis, heads kept separate (kernels: module docstring).

  query: [B, Lq, H, Dh]; key, value: [B, Lk, H, Dh] -> [B, Lq, H, Dh].
  `bias` (optional) is added to the scaled logits and `mask` (optional, bool, True = may
  attend) removes logits; both broadcast to [B, H, Lq, Lk] (e.g. a relative position
  bias [1, H, Lq, Lk], a window mask [B, 1, Lq, Lk]). `bias` may also be a
  `DecomposedBias`, which the C++ CPU kernel takes as it is and the other kernels as its
  `dense()` array. `query_chunk_size` overrides QUERY_CHUNK_SIZE for 'chunked'.
  """
  requested = canonical_attention_impl(impl)
  impl = resolve_attention_impl(requested)
  use_dropout = dropout_rate > 0.0 and not deterministic
  rel = bias.kernel_args() if isinstance(bias, DecomposedBias) else None
  dense_bias = None if rel is not None else bias
  if impl == 'cpu_flash' and not use_dropout:
    if not cpu_flash_attention.supports(query, key, value, dense_bias, mask, rel):
      reason = (cpu_flash_attention.unavailable_reason() or
                'it takes [B, L, H, Dh] float inputs, bias and mask broadcasting to '
                '[B, H, Lq, Lk] with batch axis 1 or B and head axis 1 or H, and a '
                'DecomposedBias with terms [B, H, Lq, T + Hr + W] and '
                'Lk = skip + T * Hr * W')
      raise ValueError(f"attention impl 'cpu_flash' cannot run this call: {reason}")
    return cpu_flash_attention.flash_attention(query, key, value, bias=dense_bias,
                                               mask=mask, rel=rel)
  if (requested == 'auto' and impl == 'chunked' and not use_dropout
      and cpu_flash_attention.supports(query, key, value, dense_bias, mask, rel)):
    return cpu_flash_attention.flash_attention(query, key, value, bias=dense_bias,
                                               mask=mask, rel=rel)
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
    if impl == 'cudnn' or (impl == 'auto' and jax.default_backend() == 'gpu'
                           and query.dtype in (jnp.bfloat16, jnp.float16)
                           and cudnn_accepts(query, key, value, bias, mask)):
      return even_length_attention(query, key, value, bias=bias, mask=mask,
                                   implementation='cudnn')
    return jax.nn.dot_product_attention(query, key, value, bias=bias, mask=mask,
                                        implementation='xla')
  probs = attention_probs(query, key, bias=bias, mask=mask)
  return attend_with_probs(probs, value, dropout_rate=dropout_rate if use_dropout else 0.0,
                           dropout_rng=dropout_rng)


def attention_probs(query, key, *, bias=None, mask=None):
  """The attention weights of the explicit path: float32[B, H, Lq, Lk], rows summing
  to 1: softmax(q k^T / sqrt(Dh) + bias) over the keys `mask` allows.

  query: [B, Lq, H, Dh]; key: [B, Lk, H, Dh]; bias/mask as `dot_product_attention`
  (a `DecomposedBias` is made dense). Materialises the [B, H, Lq, Lk] logits: the fast
  kernels never do; use it only where the weights themselves are wanted.
  """
  if isinstance(bias, DecomposedBias):
    bias = bias.dense()
  scale = query.shape[-1] ** -0.5
  logits = jnp.einsum('bqhd,bkhd->bhqk', query, key,
                      preferred_element_type=jnp.float32) * scale
  if bias is not None:
    logits = logits + jnp.asarray(bias, jnp.float32)
  if mask is not None:
    logits = jnp.where(mask, logits, jnp.finfo(jnp.float32).min)
  return jax.nn.softmax(logits, axis=-1)


def attend_with_probs(probs, value, *, dropout_rate: float = 0.0, dropout_rng=None):
  """probs: float32[B, H, Lq, Lk] (from `attention_probs`), value: [B, Lk, H, Dh] ->
  [B, Lq, H, Dh] in value's dtype; `dropout_rate > 0` drops probabilities (needs
  `dropout_rng`)."""
  if dropout_rate > 0.0:
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
