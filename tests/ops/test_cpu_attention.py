"""The C++ CPU attention kernel (models/cpu_attention.py): values, gradients, dispatch.

Every check compares against the plain einsum/softmax path ('explicit'); the kernel is
built by the tests' first call (about 2 s) into the user's cache directory.
"""
import platform

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vivit_jax.ops.cpu import build as cpu_build
from vivit_jax.ops.cpu import flash_attention as cpu_attention
from vivit_jax import ops
from vivit_jax.ops import attention, switches

pytestmark = pytest.mark.skipif(not cpu_attention.available(),
                                reason=f'kernel unavailable: {cpu_attention.unavailable_reason()}')


def qkv(b, lq, lk, h, d, scale=1.0, seed=0):
  ks = jax.random.split(jax.random.key(seed), 3)
  return (scale * jax.random.normal(ks[0], (b, lq, h, d)),
          jax.random.normal(ks[1], (b, lk, h, d)), jax.random.normal(ks[2], (b, lk, h, d)))


def explicit(q, k, v, bias=None, mask=None):
  return attention.dot_product_attention(q, k, v, bias=bias, mask=mask, impl='explicit')


def logsumexp(q, k, bias=None, mask=None):
  logits = jnp.einsum('bqhd,bkhd->bhqk', q, k) * q.shape[-1] ** -0.5
  if bias is not None:
    logits = logits + bias
  if mask is not None:
    logits = jnp.where(mask, logits, -jnp.inf)
  return jax.nn.logsumexp(logits, axis=-1)


def terms(b, lq, lk, h, bias_axes, mask_axes, seed=1):
  """A random bias [*bias_axes, Lq, Lk] and mask [*mask_axes, Lq, Lk] (None for an
  axes of None); `*_axes` are the (batch, head) sizes, 1 or B and 1 or H (3 stands
  for whichever of B, H the test passes). Every query keeps key 0."""
  kb, km = jax.random.split(jax.random.key(seed))
  bias = mask = None
  if bias_axes is not None:
    bias = 2.0 * jax.random.normal(kb, (*sizes(bias_axes, b, h), lq, lk))
  if mask_axes is not None:
    mask = jax.random.bernoulli(km, 0.6, (*sizes(mask_axes, b, h), lq, lk))
    mask = mask.at[..., 0].set(True)
  return bias, mask


def sizes(axes, b, h):
  return (b if axes[0] != 1 else 1, h if axes[1] != 1 else 1)


# (B, Lq, Lk, H, Dh): one or several 48-query blocks, key counts below, at and past a
# 32-key panel, head dims that are and are not a multiple of the vector width.
SHAPES = [(1, 1, 1, 1, 16), (2, 37, 29, 3, 16), (1, 48, 32, 2, 64), (1, 97, 65, 2, 20),
          (3, 5, 100, 4, 64), (1, 130, 77, 1, 96), (2, 50, 300, 2, 8)]


@pytest.mark.parametrize('shape', SHAPES)
def test_forward_equals_explicit_attention_and_logsumexp(shape):
  q, k, v = qkv(*shape)
  out, lse = jax.jit(cpu_attention.forward)(q, k, v)
  np.testing.assert_allclose(out, explicit(q, k, v), rtol=2e-5, atol=2e-6)
  np.testing.assert_allclose(lse, logsumexp(q, k), rtol=2e-6, atol=2e-6)


def test_large_logits_are_stable():
  # Logits of magnitude ~1000: the row max must be exact, including rows whose real
  # logits are all far below the zero logits of the padded keys (45 = 32 + 13 keys).
  q, k, v = qkv(2, 60, 45, 2, 16, scale=300.0)
  q = q.at[:, :10].set(-jnp.abs(q[:, :10]))
  k = k.at[:, :].set(jnp.abs(k))   # rows 0-9: every logit strongly negative.
  out, lse = jax.jit(cpu_attention.forward)(q, k, v)
  assert np.all(np.isfinite(out)) and np.all(np.isfinite(lse))
  # Logits this large carry float32 rounding of ~1e-4 (q is scaled before the product
  # here, after it in 'explicit'), which exp turns into relative differences of ~1e-4.
  np.testing.assert_allclose(out, explicit(q, k, v), rtol=2e-3, atol=2e-4)
  np.testing.assert_allclose(lse, logsumexp(q, k), rtol=1e-6, atol=1e-4)


@pytest.mark.parametrize('shape', [(2, 37, 29, 3, 16), (1, 130, 77, 2, 20)])
def test_gradients_equal_explicit_attention(shape):
  q, k, v = qkv(*shape)
  g = jax.random.normal(jax.random.key(9), q.shape)
  loss = lambda impl: lambda q, k, v: jnp.sum(
      attention.dot_product_attention(q, k, v, impl=impl) * g)
  ours = jax.jit(jax.grad(loss('cpu_flash'), argnums=(0, 1, 2)))(q, k, v)
  ref = jax.jit(jax.grad(loss('explicit'), argnums=(0, 1, 2)))(q, k, v)
  for a, b in zip(ours, ref):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=2e-5)


@pytest.mark.parametrize('shape', SHAPES)
def test_backward_kernel_equals_the_vjp_of_explicit_attention(shape):
  q, k, v = qkv(*shape)
  g = jax.random.normal(jax.random.key(3), q.shape)
  out, lse = cpu_attention.forward(q, k, v)
  grads = jax.jit(cpu_attention.backward)(q, k, v, None, None, out, lse, g)
  assert grads[3].size == 0   # no bias, no bias gradient
  _, vjp = jax.vjp(explicit, q, k, v)
  for a, b in zip(grads, vjp(g)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=2e-5)


# (bias axes, mask axes) over (batch, head): 1 = broadcast, 3 = per entry; Video Swin's
# are (1, 3) and (3, 1), MViTv2's bias (3, 3).
TERMS = [((1, 3), None), ((3, 3), None), ((3, 1), None), ((1, 1), None), (None, (3, 1)),
         (None, (1, 3)), ((1, 3), (3, 1)), ((3, 3), (3, 3))]


@pytest.mark.parametrize('bias_axes,mask_axes', TERMS)
@pytest.mark.parametrize('shape', [(3, 37, 29, 2, 16), (2, 97, 65, 3, 20), (1, 5, 100, 4, 64)])
def test_bias_and_mask_equal_explicit_attention(shape, bias_axes, mask_axes):
  q, k, v = qkv(*shape)
  bias, mask = terms(*shape[:4], bias_axes, mask_axes)
  out, lse = jax.jit(cpu_attention.forward)(q, k, v, *cpu_attention.logit_terms(q, k, bias, mask))
  np.testing.assert_allclose(out, explicit(q, k, v, bias, mask), rtol=2e-5, atol=2e-6)
  np.testing.assert_allclose(lse, logsumexp(q, k, bias, mask), rtol=2e-6, atol=2e-6)


@pytest.mark.parametrize('bias_axes,mask_axes', TERMS)
def test_gradients_with_bias_and_mask_equal_explicit_attention(bias_axes, mask_axes):
  # A bias shared over batch or heads gets the sum of its users' gradients.
  shape = (3, 60, 45, 2, 16)
  q, k, v = qkv(*shape)
  bias, mask = terms(*shape[:4], bias_axes, mask_axes)
  bias = jnp.zeros((1, 1, 1, 1)) if bias is None else bias
  g = jax.random.normal(jax.random.key(3), q.shape)
  loss = lambda attend: lambda *a: jnp.sum(attend(*a, mask=mask) * g)
  got = jax.jit(jax.grad(loss(cpu_attention.flash_attention), (0, 1, 2, 3)))(q, k, v, bias)
  want = jax.grad(loss(explicit), (0, 1, 2, 3))(q, k, v, bias)
  for a, b in zip(got, want):
    assert a.shape == b.shape
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=2e-5)


def test_lower_rank_bias_broadcasts_and_sums_its_gradient():
  # A bias over keys only ([Lk]: e.g. a key padding bias) broadcasts to [B, H, Lq, Lk].
  q, k, v = qkv(2, 37, 29, 3, 16)
  bias = jax.random.normal(jax.random.key(4), (29,))
  loss = lambda attend: lambda q, b: jnp.sum(attend(q, k, v, b) ** 2)
  got = jax.jit(jax.value_and_grad(loss(cpu_attention.flash_attention), (0, 1)))(q, bias)
  want = jax.value_and_grad(loss(explicit), (0, 1))(q, bias)
  np.testing.assert_allclose(got[0], want[0], rtol=1e-5)
  for a, b in zip(got[1], want[1]):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=2e-5)


def test_fully_masked_rows_get_uniform_weights_like_the_xla_paths():
  q, k, v = qkv(2, 37, 29, 3, 16)
  mask = jnp.ones((2, 1, 37, 29), bool).at[:, :, 5].set(False)
  out = jax.jit(cpu_attention.flash_attention)(q, k, v, mask=mask)
  np.testing.assert_allclose(out, explicit(q, k, v, mask=mask), rtol=2e-5, atol=2e-6)
  np.testing.assert_allclose(out[:, 5], jnp.broadcast_to(v.mean(1), out[:, 5].shape),
                             rtol=2e-5, atol=2e-6)


def test_bad_bias_shapes_are_refused_with_the_expected_shape():
  q, k, v = qkv(2, 37, 29, 3, 16)
  with pytest.raises(ValueError, match=r'bias of shape \(2, 3, 37, 28\).*\[2, 3, 37, 29\]'):
    cpu_attention.flash_attention(q, k, v, bias=jnp.zeros((2, 3, 37, 28)))
  assert not cpu_attention.supports(q, k, v, bias=jnp.zeros((5, 37, 29)))


def test_vmap_folds_extra_batch_axes():
  q, k, v = qkv(2, 37, 29, 3, 16)
  stack = lambda x: jnp.stack([x, 2.0 * x, -x])
  out = jax.vmap(cpu_attention.flash_attention)(stack(q), stack(k), stack(v))
  ref = jax.vmap(explicit)(stack(q), stack(k), stack(v))
  np.testing.assert_allclose(out, ref, rtol=2e-5, atol=2e-6)
  bias, mask = terms(2, 37, 29, 3, (1, 3), (3, 1))
  attend = lambda q, k, v, b: cpu_attention.flash_attention(q, k, v, b, mask)
  out = jax.vmap(attend)(stack(q), stack(k), stack(v), stack(bias))
  ref = jax.vmap(lambda q, k, v, b: explicit(q, k, v, b, mask))(
      stack(q), stack(k), stack(v), stack(bias))
  np.testing.assert_allclose(out, ref, rtol=2e-5, atol=2e-6)


@pytest.mark.skipif(platform.machine() != 'x86_64', reason='x86 vector widths')
@pytest.mark.parametrize('march,lanes', [('haswell', 8), ('x86-64', 4)])
def test_narrower_vector_builds_agree(march, lanes):
  # The AVX2 and SSE2 code paths (8 and 4 lanes, 16 registers) of the same source.
  lib, suffix = cpu_attention.load(march)
  assert lib.vivit_flash_attention_lanes() == lanes
  for shape in [(2, 37, 29, 3, 16), (1, 97, 65, 2, 20), (1, 50, 70, 1, 96)]:
    q, k, v = qkv(*shape)
    g = jax.random.normal(jax.random.key(3), q.shape)
    out, lse = jax.jit(lambda q, k, v: cpu_attention.forward(q, k, v, suffix=suffix))(q, k, v)
    np.testing.assert_allclose(out, explicit(q, k, v), rtol=2e-5, atol=2e-6)
    np.testing.assert_allclose(lse, logsumexp(q, k), rtol=2e-6, atol=2e-6)
    grads = jax.jit(lambda *a: cpu_attention.backward(*a, suffix=suffix))(
        q, k, v, None, None, out, lse, g)
    _, vjp = jax.vjp(explicit, q, k, v)
    for a, b in zip(grads, vjp(g)):
      np.testing.assert_allclose(a, b, rtol=1e-4, atol=2e-5)
    # Bias (shared over the batch: summed gradient) and mask through the same build.
    bias, mask = terms(q.shape[0], shape[1], shape[2], shape[3], (1, 3), (3, 1))
    args = cpu_attention.logit_terms(q, k, bias, mask)
    out, lse = jax.jit(lambda *a: cpu_attention.forward(*a, suffix=suffix))(q, k, v, *args)
    np.testing.assert_allclose(out, explicit(q, k, v, bias, mask), rtol=2e-5, atol=2e-6)
    grads = jax.jit(lambda *a: cpu_attention.backward(*a, suffix=suffix))(
        q, k, v, *args, out, lse, g)
    _, vjp = jax.vjp(lambda *a: explicit(*a, mask=mask), q, k, v, args[0])
    for a, b in zip(grads, vjp(g)):
      np.testing.assert_allclose(a, b, rtol=1e-4, atol=2e-5)


# (B, Lq, H, Dh, key grid (T, Hr, W), skip): MViTv2's layouts (a CLS key, 8x7x7 keys)
# and grids whose rows are shorter or longer than a vector, with and without CLS.
REL_SHAPES = [(1, 50, 2, 16, (8, 7, 7), 1), (2, 37, 3, 20, (2, 3, 5), 0),
              (1, 97, 1, 64, (1, 1, 33), 1), (2, 9, 2, 8, (4, 2, 1), 2)]


@pytest.mark.parametrize('b,lq,h,d,grid,skip', REL_SHAPES)
def test_decomposed_bias_equals_its_dense_bias(b, lq, h, d, grid, skip):
  """A DecomposedBias through the kernel (added row by row, its gradient summed over the
  grid's other axes in the backward kernel) gives the explicit path's values and
  gradients with the dense bias it stands for."""
  lk = skip + int(np.prod(grid))
  q, k, v = qkv(b, lq, lk, h, d)
  rel = attention.DecomposedBias(
      2.0 * jax.random.normal(jax.random.key(4), (b, h, lq, sum(grid))), grid, skip)
  dense = rel.dense()
  assert dense.shape == (b, h, lq, lk)
  assert np.all(np.asarray(dense[..., :skip]) == 0)
  t, hr, w = grid   # the last grid key gets every term's last entry.
  np.testing.assert_allclose(dense[..., -1], rel.terms[..., t - 1] + rel.terms[..., t + hr - 1]
                             + rel.terms[..., t + hr + w - 1], rtol=1e-6)
  g = jax.random.normal(jax.random.key(5), q.shape)

  def run(impl):
    def f(q, k, v, terms):
      bias = attention.DecomposedBias(terms, grid, skip)
      return attention.dot_product_attention(q, k, v, bias=bias, impl=impl)
    out, vjp = jax.vjp(jax.jit(f), q, k, v, rel.terms)
    return out, vjp(g), jax.jit(f).lower(q, k, v, rel.terms).as_text()
  out, grads, hlo = run('cpu_flash')
  want, want_grads, _ = run('explicit')
  assert cpu_attention.TARGET in hlo and 'rel_t' in hlo
  np.testing.assert_allclose(out, want, rtol=2e-5, atol=2e-6)
  for name, a, e in zip(('dq', 'dk', 'dv', 'dterms'), grads, want_grads):
    np.testing.assert_allclose(a, e, rtol=1e-4, atol=2e-5, err_msg=name)


def test_decomposed_bias_that_does_not_fit_is_refused():
  q, k, v = qkv(1, 5, 10, 2, 8)
  terms = jnp.zeros((1, 2, 5, 2 + 2 + 2))
  with pytest.raises(ValueError, match=r'Lk = skip \+ T \* Hr \* W'):
    cpu_attention.flash_attention(q, k, v, rel=(terms, (2, 2, 2, 1)))   # 1 + 8 != 10
  bias = attention.DecomposedBias(terms, (2, 2, 2), skip=1)
  assert not cpu_attention.supports(q, k, v, rel=bias.kernel_args())
  with pytest.raises(ValueError, match='cpu_flash'):
    attention.dot_product_attention(q, k, v, bias=bias, impl='cpu_flash')


def calls_kernel(fn, *args) -> bool:
  return cpu_attention.TARGET in jax.jit(fn).lower(*args).as_text()


def test_default_impl_uses_the_kernel_only_where_it_applies(monkeypatch):
  q, k, v = qkv(2, 37, 29, 3, 16)
  attend = lambda **kw: lambda q, k, v: attention.dot_product_attention(q, k, v, **kw)
  assert calls_kernel(attend(), q, k, v)
  bias, mask = terms(2, 37, 29, 3, (1, 3), (3, 1))
  assert calls_kernel(attend(bias=bias, mask=mask), q, k, v)
  # A shared bias past MAX_SHARED_BIAS_BYTES (one summed copy per thread) is chunked.
  monkeypatch.setattr(cpu_attention, 'MAX_SHARED_BIAS_BYTES', bias.size * 4 - 1)
  assert not calls_kernel(attend(bias=bias), q, k, v)
  assert calls_kernel(attend(bias=jnp.ones((2, 3, 37, 29))), q, k, v)   # nothing summed
  assert not cpu_attention.supports(q, k[:, :0], v[:, :0])   # no keys: left to XLA
  dropout = attend(dropout_rate=0.1, dropout_rng=jax.random.key(0), deterministic=False)
  assert not calls_kernel(dropout, q, k, v)
  assert not calls_kernel(attend(impl='chunked'), q, k, v)
  with ops.flop_counting():
    assert not calls_kernel(attend(), q, k, v)


def test_half_precision_inputs_run_in_float32():
  q, k, v = (x.astype(jnp.bfloat16) for x in qkv(2, 37, 29, 3, 16))
  out = jax.jit(lambda q, k, v: attention.dot_product_attention(q, k, v))(q, k, v)
  assert out.dtype == jnp.bfloat16
  ref = explicit(*(x.astype(jnp.float32) for x in (q, k, v)))
  np.testing.assert_allclose(out.astype(jnp.float32), ref, rtol=1e-2, atol=1e-2)


@pytest.fixture
def fresh_kernel_state(monkeypatch, tmp_path):
  """Forgets the loaded kernel for the test and restores it afterwards."""
  monkeypatch.setenv('VIVIT_JAX_CACHE_DIR', str(tmp_path))
  cpu_attention.load.cache_clear()
  cpu_attention.unavailable_reason.cache_clear()
  yield
  monkeypatch.undo()
  cpu_attention.load.cache_clear()
  cpu_attention.unavailable_reason.cache_clear()
  assert cpu_attention.available()


def test_turned_off_kernel_falls_back_to_chunked(fresh_kernel_state, monkeypatch):
  monkeypatch.setenv('VIVIT_JAX_CPU_KERNEL', '0')
  q, k, v = qkv(1, 9, 9, 2, 16)
  assert not cpu_attention.available()
  assert not calls_kernel(lambda q, k, v: attention.dot_product_attention(q, k, v), q, k, v)
  np.testing.assert_allclose(attention.dot_product_attention(q, k, v), explicit(q, k, v),
                             rtol=1e-5, atol=1e-6)
  with pytest.raises(ValueError, match="'cpu_flash'.*VIVIT_JAX_CPU_KERNEL=0"):
    attention.dot_product_attention(q, k, v, impl='cpu_flash')


def test_failed_build_names_the_command_and_falls_back(fresh_kernel_state, monkeypatch):
  monkeypatch.setenv('CXX', 'false')   # a "compiler" that always fails.
  assert 'false' in cpu_attention.unavailable_reason()
  assert 'failed (exit 1)' in cpu_attention.unavailable_reason()
  q, k, v = qkv(1, 9, 9, 2, 16)
  np.testing.assert_allclose(attention.dot_product_attention(q, k, v), explicit(q, k, v),
                             rtol=1e-5, atol=1e-6)
  assert not list(switches.cache_dir().glob('*.so'))   # nothing half-written kept.


def test_a_rebuilt_library_does_not_replace_registered_targets():
  # XLA refuses to register a target name twice with other handlers (a source rebuilt in
  # a running process, another cache directory): the first registration is kept.
  first = cpu_attention.load()[0]
  rebuilt = cpu_build.build('flash_attention.cc', 'native', ('-DVIVIT_JAX_REBUILD',))
  assert cpu_build.register(rebuilt, {cpu_attention.TARGET: 'VivitFlashAttentionF32'}) is first
  q, k, v = qkv(1, 9, 9, 2, 16)
  np.testing.assert_allclose(jax.jit(cpu_attention.flash_attention)(q, k, v),
                             explicit(q, k, v), rtol=2e-5, atol=2e-6)
