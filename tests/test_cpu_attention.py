"""The C++ CPU attention kernel (models/cpu_attention.py): values, gradients, dispatch.

Every check compares against the plain einsum/softmax path ('explicit'); the kernel is
built by the tests' first call (about 2 s) into the user's cache directory.
"""
import platform

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vivit_jax.models import cpu_attention, cpu_build, layers

pytestmark = pytest.mark.skipif(not cpu_attention.available(),
                                reason=f'kernel unavailable: {cpu_attention.unavailable_reason()}')


def qkv(b, lq, lk, h, d, scale=1.0, seed=0):
  ks = jax.random.split(jax.random.key(seed), 3)
  return (scale * jax.random.normal(ks[0], (b, lq, h, d)),
          jax.random.normal(ks[1], (b, lk, h, d)), jax.random.normal(ks[2], (b, lk, h, d)))


def explicit(q, k, v):
  return layers.dot_product_attention(q, k, v, impl='explicit')


def logsumexp(q, k):
  logits = jnp.einsum('bqhd,bkhd->bhqk', q, k) * q.shape[-1] ** -0.5
  return jax.nn.logsumexp(logits, axis=-1)


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
      layers.dot_product_attention(q, k, v, impl=impl) * g)
  ours = jax.jit(jax.grad(loss('cpu_flash'), argnums=(0, 1, 2)))(q, k, v)
  ref = jax.jit(jax.grad(loss('explicit'), argnums=(0, 1, 2)))(q, k, v)
  for a, b in zip(ours, ref):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=2e-5)


@pytest.mark.parametrize('shape', SHAPES)
def test_backward_kernel_equals_the_vjp_of_explicit_attention(shape):
  q, k, v = qkv(*shape)
  g = jax.random.normal(jax.random.key(3), q.shape)
  out, lse = cpu_attention.forward(q, k, v)
  grads = jax.jit(cpu_attention.backward)(q, k, v, out, lse, g)
  _, vjp = jax.vjp(explicit, q, k, v)
  for a, b in zip(grads, vjp(g)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=2e-5)


def test_vmap_folds_extra_batch_axes():
  q, k, v = qkv(2, 37, 29, 3, 16)
  stack = lambda x: jnp.stack([x, 2.0 * x, -x])
  out = jax.vmap(cpu_attention.flash_attention)(stack(q), stack(k), stack(v))
  ref = jax.vmap(explicit)(stack(q), stack(k), stack(v))
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
    out, lse = jax.jit(lambda q, k, v: cpu_attention.forward(q, k, v, suffix))(q, k, v)
    np.testing.assert_allclose(out, explicit(q, k, v), rtol=2e-5, atol=2e-6)
    np.testing.assert_allclose(lse, logsumexp(q, k), rtol=2e-6, atol=2e-6)
    grads = jax.jit(lambda *a: cpu_attention.backward(*a, suffix=suffix))(q, k, v, out, lse, g)
    _, vjp = jax.vjp(explicit, q, k, v)
    for a, b in zip(grads, vjp(g)):
      np.testing.assert_allclose(a, b, rtol=1e-4, atol=2e-5)


def calls_kernel(fn, *args) -> bool:
  return cpu_attention.TARGET in jax.jit(fn).lower(*args).as_text()


def test_default_impl_uses_the_kernel_only_where_it_applies():
  q, k, v = qkv(2, 37, 29, 3, 16)
  attend = lambda **kw: lambda q, k, v: layers.dot_product_attention(q, k, v, **kw)
  assert calls_kernel(attend(), q, k, v)
  bias = jnp.zeros((1, 3, 37, 29))
  assert not calls_kernel(lambda q, k, v: layers.dot_product_attention(q, k, v, bias=bias),
                          q, k, v)
  assert not cpu_attention.supports(q, k[:, :0], v[:, :0])   # no keys: left to XLA
  dropout = attend(dropout_rate=0.1, dropout_rng=jax.random.key(0), deterministic=False)
  assert not calls_kernel(dropout, q, k, v)
  assert not calls_kernel(attend(impl='chunked'), q, k, v)
  with layers.flop_counting():
    assert not calls_kernel(attend(), q, k, v)


def test_half_precision_inputs_run_in_float32():
  q, k, v = (x.astype(jnp.bfloat16) for x in qkv(2, 37, 29, 3, 16))
  out = jax.jit(lambda q, k, v: layers.dot_product_attention(q, k, v))(q, k, v)
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
  assert not calls_kernel(lambda q, k, v: layers.dot_product_attention(q, k, v), q, k, v)
  np.testing.assert_allclose(layers.dot_product_attention(q, k, v), explicit(q, k, v),
                             rtol=1e-5, atol=1e-6)
  with pytest.raises(ValueError, match="'cpu_flash'.*VIVIT_JAX_CPU_KERNEL=0"):
    layers.dot_product_attention(q, k, v, impl='cpu_flash')


def test_failed_build_names_the_command_and_falls_back(fresh_kernel_state, monkeypatch):
  monkeypatch.setenv('CXX', 'false')   # a "compiler" that always fails.
  assert 'false' in cpu_attention.unavailable_reason()
  assert 'failed (exit 1)' in cpu_attention.unavailable_reason()
  q, k, v = qkv(1, 9, 9, 2, 16)
  np.testing.assert_allclose(layers.dot_product_attention(q, k, v), explicit(q, k, v),
                             rtol=1e-5, atol=1e-6)
  assert not list(cpu_build.cache_dir().glob('*.so'))   # nothing half-written kept.


def test_a_rebuilt_library_does_not_replace_registered_targets():
  # XLA refuses to register a target name twice with other handlers (a source rebuilt in
  # a running process, another cache directory): the first registration is kept.
  first = cpu_attention.load()[0]
  rebuilt = cpu_build.build('flash_attention_cpu.cc', 'native', ('-DVIVIT_JAX_REBUILD',))
  assert cpu_build.register(rebuilt, {cpu_attention.TARGET: 'VivitFlashAttentionF32'}) is first
  q, k, v = qkv(1, 9, 9, 2, 16)
  np.testing.assert_allclose(jax.jit(cpu_attention.flash_attention)(q, k, v),
                             explicit(q, k, v), rtol=2e-5, atol=2e-6)
