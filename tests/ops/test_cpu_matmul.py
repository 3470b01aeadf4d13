"""The BLAS dense-layer products on CPU (models/cpu_matmul.py): values, VJP, routing,
for OpenBLAS and (where the `mkl` wheel is installed, as the test extra does on x86-64)
MKL."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vivit_jax.ops.cpu import build as cpu_build
from vivit_jax.ops.cpu import matmul as cpu_matmul
from vivit_jax import ops
from vivit_jax.ops import dense

pytestmark = pytest.mark.skipif(not cpu_matmul.available(),
                                reason=f'kernel unavailable: {cpu_matmul.unavailable_reason()}')


def normal(seed, shape):
  return np.asarray(jax.random.normal(jax.random.key(seed), shape))


# (M, K, N): row blocks (a larger than b) and column blocks (b larger), several of each
# on two or more threads, and a single block.
SHAPES = [(300, 40, 70), (50, 40, 300), (7, 5, 3), (129, 200, 129)]


def library_available(library):
  try:
    cpu_matmul.load(library)
    return True
  except cpu_build.KernelUnavailable:
    return False


LIBRARIES = [pytest.param(lib, marks=pytest.mark.skipif(
    not library_available(lib), reason=f'{lib} unavailable')) for lib in cpu_matmul.BLAS_LIBRARIES]


@pytest.mark.parametrize('library', LIBRARIES)
@pytest.mark.parametrize('m,k,n', SHAPES)
@pytest.mark.parametrize('transpose_a', [False, True])
@pytest.mark.parametrize('transpose_b', [False, True])
def test_products_equal_numpy(library, m, k, n, transpose_a, transpose_b):
  a, b = normal(0, (m, k)), normal(1, (k, n))
  args = (a.T.copy() if transpose_a else a, b.T.copy() if transpose_b else b)
  call = lambda x, y: cpu_matmul._call(x, y, transpose_a, transpose_b, library=library)
  assert cpu_matmul.target(library) in jax.jit(call).lower(*args).as_text()
  np.testing.assert_allclose(jax.jit(call)(*args), a @ b, rtol=1e-5, atol=1e-5)


def test_blas_choice_follows_the_environment(monkeypatch):
  monkeypatch.setenv('VIVIT_JAX_BLAS', 'openblas')
  assert cpu_matmul.blas() == 'openblas'
  assert cpu_matmul.target() == 'vivit_jax_matmul_f32_openblas'
  monkeypatch.setenv('VIVIT_JAX_BLAS', 'auto')
  assert cpu_matmul.blas() == ('mkl' if library_available('mkl') else 'openblas')
  monkeypatch.setenv('VIVIT_JAX_BLAS', 'atlas')
  with pytest.raises(ValueError, match=r"VIVIT_JAX_BLAS='atlas'.*'openblas', 'mkl'"):
    cpu_matmul.blas()


def test_vmap_loops_over_the_batch():
  a, b = normal(0, (3, 90, 20)), normal(1, (3, 20, 70))
  out = jax.jit(jax.vmap(cpu_matmul.matmul))(a, b)
  np.testing.assert_allclose(out, a @ b, rtol=1e-5, atol=1e-5)


def test_vjp_equals_xla():
  a, b, g = normal(0, (300, 40)), normal(1, (40, 70)), normal(2, (300, 70))
  ours = jax.grad(lambda a, b: jnp.sum(cpu_matmul.matmul(a, b) * g), argnums=(0, 1))(a, b)
  np.testing.assert_allclose(ours[0], g @ b.T, rtol=1e-5, atol=1e-4)
  np.testing.assert_allclose(ours[1], a.T @ g, rtol=1e-5, atol=1e-4)


def routed(lhs, rhs, dims) -> bool:
  fn = lambda x, y: dense.dot_general(x, y, dims)
  return cpu_matmul.TARGET in jax.jit(fn).lower(lhs, rhs).as_text()


def test_dense_layer_products_are_routed_and_equal_xla():
  x = normal(0, (2, 300, 4, 24))           # attention output [B, L, H, Dh]
  w = normal(1, (4, 24, 96))               # out projection [H, Dh, D]
  dims = (((2, 3), (0, 1)), ((), ()))
  assert routed(x, w, dims)
  g = normal(2, (2, 300, 96))
  loss = lambda dot: lambda x, w: jnp.sum(dot(x, w, dims) * g)
  ours = jax.value_and_grad(loss(dense.dot_general), argnums=(0, 1))(x, w)
  ref = jax.value_and_grad(loss(lambda *a: jax.lax.dot_general(*a, precision='highest')),
                           argnums=(0, 1))(x, w)
  np.testing.assert_allclose(ours[0], ref[0], rtol=1e-5)
  for a, b in zip(ours[1], ref[1]):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-4)


def test_other_products_stay_on_xla():
  big = (((1,), (0,)), ((), ()))
  x, w = jnp.ones((3000, 64)), jnp.ones((64, 64))
  assert routed(x, w, big)
  assert not routed(x.astype(jnp.bfloat16), w.astype(jnp.bfloat16), big)   # half precision
  assert not routed(jnp.ones((30, 8)), jnp.ones((8, 8)), big)                # tiny
  assert not routed(jnp.ones((64, 3000)), w, (((0,), (0,)), ((), ())))      # leading axis
  assert not routed(jnp.ones((4, 3000, 64)), jnp.ones((4, 64, 64)),        # batch axes
                    (((2,), (1,)), ((0,), (0,))))
  with ops.flop_counting():
    assert not routed(x, w, big)


def test_missing_openblas_falls_back_to_xla(monkeypatch):
  def missing():
    raise cpu_build.KernelUnavailable('scipy-openblas32 is not installed (test).')
  monkeypatch.setenv('VIVIT_JAX_BLAS', 'openblas')
  monkeypatch.setattr(cpu_matmul, '_openblas', missing)
  cpu_matmul.load.cache_clear()
  cpu_matmul.unavailable_reason.cache_clear()
  try:
    assert 'scipy-openblas32' in cpu_matmul.unavailable_reason()
    x, w = jnp.ones((3000, 64)), jnp.ones((64, 64))
    assert not routed(x, w, (((1,), (0,)), ((), ())))
    np.testing.assert_allclose(dense.dot_general(x, w, (((1,), (0,)), ((), ()))),
                               np.full((3000, 64), 64.0))
  finally:
    monkeypatch.undo()
    cpu_matmul.load.cache_clear()
    cpu_matmul.unavailable_reason.cache_clear()
  assert cpu_matmul.available()
