"""The speed paths compute what the plain paths compute (issue 8); no timing here.

Patch convolutions as patches x matmul == nn.Conv (parameters, outputs, gradients).

Chunked attention == explicit attention (bias, mask, dropout, gradients, bf16); the
'auto' default (cuDNN on GPU only where its backward pass accepts the shapes, odd lengths
padded) and FLOP counting; bf16 compute in the real train step; remat policies
give identical gradients; buffer donation and device prefetch leave results unchanged.
"""
import contextlib
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vivit_jax import config as vc
from vivit_jax import models
import flax.linen as nn

from vivit_jax.models import cost, embeddings, layers
from vivit_jax.ops.cpu import flash_attention as cpu_attention
from vivit_jax.train import optim, parallel, steps
from vivit_jax import ops
from vivit_jax.ops import attention, dense, gelu, switches

B, T, HW, C = 2, 4, 8, 3
NUM_CLASSES = 5


def qkv(b, lq, lk, h, d, seed=0, dtype=jnp.float32):
  r = np.random.default_rng(seed)
  return tuple(jnp.asarray(r.standard_normal(s), dtype)
               for s in ((b, lq, h, d), (b, lk, h, d), (b, lk, h, d)))


def explicit(q, k, v, **kw):
  return attention.dot_product_attention(q, k, v, impl='explicit', **kw)


def chunked(chunk_size, **static):
  return jax.jit(functools.partial(attention.chunked_attention, chunk_size=chunk_size,
                                   **static))


# --- Patch convolutions ----------------------------------------------------------

@pytest.mark.parametrize('shape, kernel, strides, padding', [
    ((2, 8, 12, 3), (4, 4), (4, 4), 'VALID'),                       # ViT / uniform frame
    ((2, 4, 9, 13, 3), (2, 4, 4), (2, 4, 4), 'VALID'),              # tubelet, remainder
    ((2, 6, 11, 13, 3), (3, 7, 7), (2, 4, 4), [(1, 1), (3, 3), (3, 3)]),  # MViT stem
    ((1, 5, 6, 7, 2), (3, 3, 3), (1, 2, 2), [(1, 1), (0, 2), (1, 0)])])
@pytest.mark.parametrize('im2col', [True, False])
def test_patch_conv_equals_flax_conv(shape, kernel, strides, padding, im2col):
  x = jax.random.normal(jax.random.key(0), shape)
  reference = nn.Conv(5, kernel, strides, padding=padding)
  conv = embeddings.PatchConv(5, kernel, strides, padding=padding, im2col=im2col)
  params = reference.init(jax.random.key(1), x)
  # Same parameter tree and initial values, so checkpoints and seeds carry over.
  jax.tree.map(np.testing.assert_array_equal, conv.init(jax.random.key(1), x), params)
  params = jax.tree.map(lambda p: p + jax.random.normal(jax.random.key(2), p.shape), params)
  np.testing.assert_allclose(conv.apply(params, x), reference.apply(params, x),
                             rtol=1e-5, atol=1e-5)
  loss = lambda f: lambda p, v: jnp.sum(jnp.sin(f(p, v)))
  grads = jax.grad(loss(conv.apply), argnums=(0, 1))(params, x)
  ref_grads = jax.grad(loss(reference.apply), argnums=(0, 1))(params, x)
  jax.tree.map(functools.partial(np.testing.assert_allclose, rtol=1e-4, atol=1e-4),
               grads, ref_grads)


# --- Chunked attention --------------------------------------------------------------

@pytest.mark.parametrize('shape,dtype,param_dtype', [
    ((1, 37, 24), jnp.float32, jnp.float32), ((2, 3, 5, 24), jnp.bfloat16, jnp.float32),
    ((2, 37, 24), None, jnp.float32), ((6, 24), jnp.float32, jnp.bfloat16)])
def test_layer_norm_equals_flax_layer_norm(shape, dtype, param_dtype):
  """layers.LayerNorm (computed on a [rows, C] view, for XLA:CPU's reductions, with its
  own backward pass) has nn.LayerNorm's parameters, outputs and gradients."""
  x = 3.0 * jax.random.normal(jax.random.key(0), shape) + 1.0
  x = x if dtype is None else x.astype(dtype)
  ours = layers.LayerNorm(epsilon=1e-6, dtype=dtype, param_dtype=param_dtype)
  flax_ln = nn.LayerNorm(epsilon=1e-6, dtype=dtype, param_dtype=param_dtype)
  params = ours.init(jax.random.key(1), x)
  assert (jax.tree.map(lambda a: (a.shape, a.dtype), params) ==
          jax.tree.map(lambda a: (a.shape, a.dtype), flax_ln.init(jax.random.key(1), x)))
  params = jax.tree.map(
      lambda a: (a + 0.3 * jax.random.normal(jax.random.key(2), a.shape)).astype(a.dtype),
      params)
  out = jax.jit(ours.apply)(params, x)
  want = jax.jit(flax_ln.apply)(params, x)
  assert out.dtype == want.dtype and out.shape == x.shape
  np.testing.assert_array_equal(out, want)
  loss = lambda m: lambda p, x: jnp.sum(jnp.sin(m.apply(p, x).astype(jnp.float32)))
  got = jax.grad(loss(ours), (0, 1))(params, x)
  want = jax.grad(loss(flax_ln), (0, 1))(params, x)
  for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
    assert a.dtype == b.dtype
    # bf16 gradients: ours computes the backward pass in float32 and rounds once, flax's
    # autodiff rounds intermediates to bf16; they agree to a bf16 step of the largest.
    tol = 1e-5 if a.dtype == jnp.float32 else 2.0 ** -7 * float(np.abs(np.float32(b)).max())
    np.testing.assert_allclose(np.float32(a), np.float32(b), rtol=1e-5, atol=tol)


@pytest.mark.parametrize('approximate', [False, True])
@pytest.mark.parametrize('dtype', [jnp.float32, jnp.bfloat16])
def test_gelu_equals_jax_gelu(approximate, dtype):
  """gelu.gelu (own backward pass, recomputing the CDF) has jax.nn.gelu's values and
  gradients, inside jit, grad and remat."""
  x = (3.0 * jax.random.normal(jax.random.key(0), (3, 7, 33))).astype(dtype)
  x = x.at[0, 0, :4].set(jnp.asarray([0.0, -12.0, 12.0, -5.5], dtype))   # tails, zero.
  got = jax.jit(gelu.gelu, static_argnums=1)(x, approximate)
  want = jax.jit(jax.nn.gelu, static_argnums=1)(x, approximate)
  assert got.dtype == dtype
  np.testing.assert_array_equal(np.float32(got), np.float32(want))
  # A loss linear in the output: the gradient is w * gelu'(x), nothing rounded between.
  w = jax.random.normal(jax.random.key(1), x.shape)
  loss = lambda f: lambda x: jnp.sum(w * f(x).astype(jnp.float32))
  ours = lambda x: gelu.gelu(x, approximate)
  got = jax.jit(jax.grad(loss(ours)))(x)
  got_remat = jax.jit(jax.grad(loss(jax.checkpoint(ours))))(x)
  # Reference: float32 autodiff at the same input values (bf16 autodiff would round
  # its intermediates; ours rounds once).
  want = jax.jit(jax.grad(loss(lambda x: jax.nn.gelu(x, approximate=approximate))))(
      x.astype(jnp.float32))
  assert got.dtype == dtype
  np.testing.assert_array_equal(np.float32(got_remat), np.float32(got))
  tol = 1e-6 if dtype == jnp.float32 else 2.0 ** -8
  np.testing.assert_allclose(np.float32(got), want, rtol=tol, atol=tol)


def test_own_backward_passes_can_be_turned_off(monkeypatch):
  """VIVIT_JAX_OWN_BACKWARD=0 (for measuring both on a new backend) traces GELU and
  LayerNorm through autodiff: same values, gradients within float32 rounding, and no
  optimization barrier (the mark of our backward passes) in the lowered program."""
  cfg = layers.TransformerConfig(hidden_size=16, num_heads=2, mlp_dim=40, num_layers=1)

  class Block(nn.Module):
    @nn.compact
    def __call__(self, x):
      return layers.MlpBlock(cfg)(layers.LayerNorm()(x), deterministic=True)
  block = Block()
  x = jax.random.normal(jax.random.key(0), (2, 5, 16))
  params = block.init(jax.random.key(1), x)
  loss = lambda p, x: jnp.sum(jnp.sin(block.apply(p, x)))

  def run():   # a fresh trace each time: the switch is read while tracing.
    grad = jax.jit(jax.value_and_grad(loss, (0, 1)))
    return grad(params, x), grad.lower(params, x).as_text()
  (value, grads), text = run()
  monkeypatch.setenv('VIVIT_JAX_OWN_BACKWARD', '0')
  assert not switches.own_backward_passes()
  (value_off, grads_off), text_off = run()
  assert 'optimization_barrier' in text and 'optimization_barrier' not in text_off
  np.testing.assert_allclose(value_off, value, rtol=1e-6)
  for a, b in zip(jax.tree.leaves(grads_off), jax.tree.leaves(grads)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('lq,lk,chunk', [
    (37, 37, 8),     # 5 chunks, last one padded.
    (32, 19, 8),     # chunks divide Lq exactly; cross-attention (Lk != Lq).
    (70, 9, 32),     # 3 balanced chunks of 24 rows rather than 32 + 32 + 6.
    (6, 11, 8),      # Lq <= chunk: one batched computation.
])
def test_chunked_attention_equals_explicit(lq, lk, chunk):
  q, k, v = qkv(2, lq, lk, 3, 4)
  r = np.random.default_rng(1)
  bias = jnp.asarray(r.standard_normal((1, 3, lq, lk)), jnp.float32)   # per head.
  mask = jnp.asarray(r.random((2, 1, lq, lk)) > 0.3)                    # per example.
  row_bias = bias[:, :, :1]                                              # one row, all q.
  for kw in ({}, {'bias': bias}, {'mask': mask}, {'bias': bias, 'mask': mask},
             {'bias': row_bias, 'mask': mask[0, 0]}):
    want = explicit(q, k, v, **kw)
    got = chunked(chunk)(q, k, v, **kw)
    assert got.shape == (2, lq, 3, 4)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
  # The mask really removes keys: masking all but key 0 returns value 0.
  only_first = jnp.zeros((lq, lk), bool).at[:, 0].set(True)
  got = chunked(chunk)(q, k, v, mask=only_first)
  np.testing.assert_allclose(got, jnp.broadcast_to(v[:, :1], got.shape), rtol=1e-6)


def test_chunked_attention_gradients_equal_explicit():
  q, k, v = qkv(1, 21, 21, 2, 4, seed=3)
  bias = jnp.asarray(np.random.default_rng(4).standard_normal((1, 2, 21, 21)), jnp.float32)
  w = jnp.asarray(np.random.default_rng(5).standard_normal((1, 21, 2, 4)), jnp.float32)

  def loss(fn):
    return jax.jit(jax.grad(lambda q, k, v, b: jnp.sum(fn(q, k, v, bias=b) * w),
                            argnums=(0, 1, 2, 3)))
  want = loss(explicit)(q, k, v, bias)
  got = loss(functools.partial(attention.chunked_attention, chunk_size=4))(q, k, v, bias)
  for g, e in zip(got, want):
    np.testing.assert_allclose(g, e, rtol=1e-4, atol=1e-5)


def test_chunked_attention_dropout_is_explicit_attention_with_its_masks():
  b, lq, lk, h, chunk, rate = 2, 10, 7, 2, 4, 0.3
  q, k, v = qkv(b, lq, lk, h, 4, seed=6)
  rng = jax.random.key(7)
  got = chunked(chunk, dropout_rate=rate)(q, k, v, dropout_rng=rng)
  # The masks chunked_attention draws: per (head g = b * H + h, query chunk j).
  n = -(-lq // chunk)
  keep = jnp.stack([
      jnp.concatenate([attention.chunk_dropout_keep(rng, g, j, rate, (chunk, lk))
                       for j in range(n)])[:lq]
      for g in range(b * h)]).reshape(b, h, lq, lk)
  assert 0.5 < float(keep.mean()) < 0.9          # about 1 - rate are kept.
  logits = jnp.einsum('bqhd,bkhd->bhqk', q, k) / 2.0
  probs = jax.nn.softmax(logits, -1) * keep / (1 - rate)
  want = jnp.einsum('bhqk,bkhd->bqhd', probs, v)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
  no_dropout = chunked(chunk)(q, k, v)
  assert float(jnp.abs(got - no_dropout).max()) > 1e-2
  other = chunked(chunk, dropout_rate=rate)(q, k, v, dropout_rng=jax.random.key(8))
  assert float(jnp.abs(got - other).max()) > 1e-2


def test_chunked_attention_bfloat16_keeps_float32_softmax():
  q, k, v = qkv(1, 40, 40, 2, 8, seed=9)
  want = explicit(q, k, v)
  got = chunked(16)(*(a.astype(jnp.bfloat16) for a in (q, k, v)))
  assert got.dtype == jnp.bfloat16
  # bf16 inputs/outputs (8 bits of mantissa); fp32 logits, max, exp and normaliser.
  np.testing.assert_allclose(np.asarray(got, np.float32), want, atol=3e-2)
  # Large logits would overflow a bf16/fp16 exp without the fp32 max subtraction.
  big = chunked(16)(*(a.astype(jnp.bfloat16) * 30 for a in (q, k, v)))
  assert bool(jnp.isfinite(big.astype(jnp.float32)).all())


def test_attention_errors_name_the_bad_value():
  q, k, v = qkv(1, 5, 5, 2, 4)
  with pytest.raises(ValueError, match='bias of shape'):
    attention.chunked_attention(q, k, v, bias=jnp.zeros((3, 5, 5)))
  with pytest.raises(ValueError, match="'flash'"):
    attention.dot_product_attention(q, k, v, impl='flash')
  with pytest.raises(ValueError, match='dropout_rng'):
    attention.chunked_attention(q, k, v, dropout_rate=0.1)


def test_default_impl_is_chunked_on_cpu_and_explicit_when_counting_flops():
  assert jax.default_backend() == 'cpu'
  assert attention.resolve_attention_impl('auto') == 'chunked'
  assert attention.resolve_attention_impl('explicit') == 'explicit'
  with ops.flop_counting():
    assert attention.resolve_attention_impl('auto') == 'explicit'
    assert attention.resolve_attention_impl('cudnn') == 'explicit'
  assert attention.resolve_attention_impl('auto') == 'chunked'


def test_xla_is_a_deprecated_alias_of_auto(video):
  """Configs written before the rename keep working: 'xla' warns and runs as 'auto'."""
  with pytest.warns(FutureWarning, match="attention_impl='xla' is deprecated: use 'auto'"):
    assert attention.canonical_attention_impl('xla') == 'auto'
  with pytest.raises(ValueError, match="'flash' is invalid"):
    attention.canonical_attention_impl('flash')
  out = {}
  for impl in ('xla', 'auto'):
    config = tiny_config('spatio_temporal', attention_impl=impl)
    vc.validate_config(config)
    with pytest.warns(FutureWarning) if impl == 'xla' else contextlib.nullcontext():
      model = models.create_model(config.model, NUM_CLASSES)
    assert model.cfg.attention_impl == 'auto'
    out[impl] = model.apply({'params': noisy_params(model)}, video)
  np.testing.assert_array_equal(out['xla'], out['auto'])


# --- Half-precision products ------------------------------------------------------

@pytest.mark.parametrize('dtype', [jnp.bfloat16, jnp.float16])
def test_half_precision_dense_products_accumulate_in_float32_on_cpu(dtype):
  r = np.random.default_rng(0)
  x, w = (jnp.asarray(r.standard_normal(s), dtype) for s in ((5, 7, 96), (96, 48)))
  dims = (((2,), (0,)), ((), ()))
  out = jax.jit(lambda x, w: dense.dot_general(x, w, dims))(x, w)
  assert out.dtype == dtype
  ref = jnp.einsum('abk,kn->abn', x.astype(jnp.float32), w.astype(jnp.float32))
  np.testing.assert_allclose(np.asarray(out, np.float32), np.asarray(ref.astype(dtype), np.float32),
                             rtol=1e-2, atol=1e-2)
  # The form XLA:CPU runs on the matrix units: a float32 result, rounded after.
  text = str(jax.make_jaxpr(lambda x, w: dense.dot_general(x, w, dims))(x, w))
  assert 'preferred_element_type=float32' in text
  text = str(jax.make_jaxpr(lambda x, w: dense.dot_general(x, w, dims))(
      x.astype(jnp.float32), w.astype(jnp.float32)))
  assert 'preferred_element_type' not in text and 'convert_element_type' not in text


@pytest.mark.parametrize('lhs_shape, rhs_shape, dims', [
    ((4, 6, 32), (32, 24), (((2,), (0,)), ((), ()))),                 # Dense
    ((4, 6, 32), (32, 3, 8), (((2,), (0,)), ((), ()))),               # DenseGeneral q/k/v
    ((4, 6, 3, 8), (3, 8, 32), (((2, 3), (0, 1)), ((), ()))),         # DenseGeneral out
    ((5, 8, 3, 4), (4, 7, 8), (((3, 1), (0, 2)), ((), ()))),          # unsorted pairs
    ((2, 5, 16), (2, 16, 3), (((2,), (1,)), ((0,), (0,))))])          # batch axes
def test_half_precision_product_gradients_equal_float32_ones(lhs_shape, rhs_shape, dims):
  """Gradients of the CPU half-precision product (its own VJP where there are no batch
  axes) equal float32 gradients on the same bf16-rounded inputs, and its backward
  products take bf16 operands into float32 results too."""
  r = np.random.default_rng(1)
  x, w = (jnp.asarray(r.standard_normal(s), jnp.bfloat16) for s in (lhs_shape, rhs_shape))
  out_shape = jax.eval_shape(lambda: jax.lax.dot_general(x, w, dims)).shape
  cot = jnp.asarray(r.standard_normal(out_shape), jnp.float32)

  def grads(fn, dtype):
    loss = lambda x, w: jnp.sum(fn(x.astype(dtype), w.astype(dtype)).astype(jnp.float32) * cot)
    return jax.jit(jax.grad(loss, argnums=(0, 1)))(x, w)
  ours = grads(lambda x, w: dense.dot_general(x, w, dims), jnp.bfloat16)
  ref = grads(lambda x, w: jax.lax.dot_general(x, w, dims), jnp.float32)
  for a, b in zip(ours, ref):
    assert a.shape == b.shape
    np.testing.assert_allclose(np.asarray(a, np.float32), np.asarray(b, np.float32),
                               rtol=2e-2, atol=2e-2 * float(jnp.abs(b).max()))
  if any(dims[1]):
    return   # batch axes: jax's own transposes (no dense layer has batch axes).
  jaxpr = jax.make_jaxpr(jax.grad(
      lambda x, w: jnp.sum(dense.dot_general(x, w, dims).astype(jnp.float32) * cot),
      argnums=(0, 1)))(x, w)
  products = [(tuple(v.aval.dtype for v in e.invars), e.params['preferred_element_type'])
              for e in equations(jaxpr.jaxpr) if e.primitive.name == 'dot_general']
  assert products == [((jnp.bfloat16, jnp.bfloat16), jnp.float32)] * 3   # fwd, d lhs, d rhs


def equations(jaxpr):
  """Every equation of `jaxpr` and of the jaxprs nested in its equations' params."""
  for e in jaxpr.eqns:
    yield e
    for param in e.params.values():
      for sub in (param if isinstance(param, (tuple, list)) else [param]):
        if isinstance(sub, jax.extend.core.ClosedJaxpr):
          yield from equations(sub.jaxpr)
        elif isinstance(sub, jax.extend.core.Jaxpr):
          yield from equations(sub)


def test_dense_layers_use_the_half_precision_products(monkeypatch):
  calls = []
  real = dense.dot_general
  monkeypatch.setattr(dense, 'dot_general',
                      lambda *a, **k: calls.append(a[0].dtype) or real(*a, **k))
  model = models.create_model(tiny_config(dtype='bfloat16').model, NUM_CLASSES)
  model.init(jax.random.key(0), jnp.zeros((1, T, HW, HW, C)))
  # Per block: q, k, v, out, 2 MLP; plus the tubelet embedding and the head.
  assert len(calls) == 2 * 6 + 2 and set(calls) == {jnp.dtype(jnp.bfloat16)}


# --- Whole models and the train step --------------------------------------------------

def tiny_config(attention_type='spatio_temporal', **overrides):
  config = vc.default_config()
  m = config.model
  m.attention_type = attention_type
  m.classifier = 'token' if attention_type == 'spatio_temporal' else 'gap'
  m.hidden_size, m.num_layers, m.num_heads, m.mlp_dim = 16, 2, 4, 32
  m.patch_size, m.temporal_patch_size = (4, 4), 2
  config.dataset.num_frames, config.dataset.crop_size = T, HW
  config.dataset.num_classes = NUM_CLASSES
  config.trainer.batch_size = B
  config.optimizer.name, config.schedule.name, config.schedule.base_lr = 'sgd', 'constant', 0.1
  config.schedule.warmup_steps = 0
  for k, v in overrides.items():
    setattr(m, k, v)
  vc.validate_config(config)
  return config


def noisy_params(model, seed=0):
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, T, HW, HW, C))))
  r = np.random.default_rng(seed)
  return jax.tree.map(lambda s: jnp.asarray(0.3 * r.standard_normal(s.shape), s.dtype),
                      shapes['params'])


@pytest.fixture(scope='module')
def video():
  return jax.random.normal(jax.random.key(42), (B, T, HW, HW, C))


def test_models_with_chunked_attention_equal_explicit(video, monkeypatch):
  monkeypatch.setattr(attention, 'QUERY_CHUNK_SIZE', 4)   # 9 tokens -> 3 chunks in Model 1.
  for attention_type in ('spatio_temporal', 'factorised_dot_product'):
    out = {}
    for impl in ('explicit', 'chunked', 'cpu_flash', 'auto'):
      model = models.create_model(tiny_config(attention_type, attention_impl=impl).model,
                                  NUM_CLASSES)
      out[impl] = jax.jit(model.apply)({'params': noisy_params(model)}, video)
    np.testing.assert_allclose(out['chunked'], out['explicit'], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out['cpu_flash'], out['explicit'], rtol=1e-5, atol=1e-5)
    # The CPU default is the C++ kernel where it builds, the chunked kernel otherwise.
    default = 'cpu_flash' if cpu_attention.available() else 'chunked'
    np.testing.assert_array_equal(out['auto'], out[default])


def test_flops_are_counted_through_the_chunked_kernel():
  shape = (1, T, HW, HW, C)
  gflops = {}
  for impl in ('explicit', 'chunked', 'cpu_flash'):
    model = models.create_model(tiny_config(attention_impl=impl).model, NUM_CLASSES)
    gflops[impl] = cost.forward_gflops(model, shape)
  assert gflops['chunked'] == gflops['cpu_flash'] == gflops['explicit'] > 0


def make_step(config):
  model = models.create_model(config.model, NUM_CLASSES)
  tx, lr_fn = optim.create_optimizer(config, 10)
  step = functools.partial(steps.train_step, apply_fn=model.apply, tx=tx, lr_fn=lr_fn,
                           num_classes=NUM_CLASSES)
  return model, tx, step


def batch_of(video):
  return {'video': np.asarray(video), 'label': np.arange(B, dtype=np.int32) % NUM_CLASSES}


def test_bfloat16_train_step_keeps_float32_params_loss_and_grads(video):
  """bf16 compute: loss within 2% and updated params within 5% of the update size of
  the float32 step; params, grads and metrics stay float32."""
  out = {}
  for dtype in ('float32', 'bfloat16'):
    config = tiny_config(dtype=dtype)
    model, tx, step = make_step(config)
    params = noisy_params(model)
    state = steps.create_train_state(params, tx)
    new, metrics = jax.jit(step)(state, batch_of(video), jax.random.key(0))
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(new.params))
    assert metrics['loss'].dtype == jnp.float32
    out[dtype] = (params, new.params, metrics)
  (p0, p32, m32), (_, p16, m16) = out['float32'], out['bfloat16']
  assert abs(float(m16['loss']) - float(m32['loss'])) < 0.02 * float(m32['loss'])
  assert abs(float(m16['grad_norm']) - float(m32['grad_norm'])) < 0.05 * float(m32['grad_norm'])
  update = max(float(jnp.abs(a - b).max()) for a, b in
               zip(jax.tree.leaves(p32), jax.tree.leaves(p0)))
  diff = max(float(jnp.abs(a - b).max()) for a, b in
             zip(jax.tree.leaves(p32), jax.tree.leaves(p16)))
  assert 0 < diff < 0.05 * update


@pytest.mark.parametrize('policy', sorted(layers.REMAT_POLICIES))
def test_remat_policies_give_identical_gradients(video, policy):
  grads = {}
  for remat in (False, True):
    config = tiny_config(remat=remat, remat_policy=policy, dropout_rate=0.1,
                         stochastic_depth=0.2)
    model = models.create_model(config.model, NUM_CLASSES)
    params = noisy_params(model)
    loss = lambda p: jnp.sum(model.apply({'params': p}, video, train=True,
                                         rngs={'dropout': jax.random.key(1)}) ** 2)
    grads[remat] = jax.jit(jax.grad(loss))(params)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
               grads[False], grads[True])
  assert max(float(jnp.abs(g).max()) for g in jax.tree.leaves(grads[True])) > 0


def test_remat_policy_is_validated():
  config = tiny_config()
  config.model.remat_policy = 'save_everything'
  with pytest.raises(vc.ConfigError, match='model.remat_policy'):
    vc.validate_config(config)
  config = tiny_config()
  config.trainer.prefetch_to_device = -1
  with pytest.raises(vc.ConfigError, match='trainer.prefetch_to_device'):
    vc.validate_config(config)
  for bad in (0, -2):
    config = tiny_config()
    config.trainer.cpu_devices = bad
    with pytest.raises(vc.ConfigError, match=rf'trainer.cpu_devices={bad!r}.*positive'):
      vc.validate_config(config)


@pytest.mark.parametrize('kind', ['jit', 'pmap'])
def test_donated_train_step_equals_undonated(video, kind):
  config = tiny_config()
  config.trainer.parallelism = kind
  config.trainer.batch_size = jax.local_device_count()   # one example per device.
  model, tx, step = make_step(config)
  state0 = steps.create_train_state(noisy_params(model), tx)
  vid = jnp.concatenate([video] * (config.trainer.batch_size // B + 1))
  batch = batch_of(vid[:config.trainer.batch_size])
  batch['label'] = np.arange(config.trainer.batch_size, dtype=np.int32) % NUM_CLASSES
  rng = jax.random.key(3)
  plain = jax.jit(step)            # no donation.
  want, want_m = plain(state0, batch, rng)
  want, want_m2 = plain(want, batch, rng)
  par = parallel.make_parallel(config, train_step_fn=step, eval_step_fn=lambda p, b: p)
  dev_state = par.put_state(state0)
  dev_batch = par.put_batch(batch)
  for _ in range(2):
    before = dev_state
    dev_state, metrics = par.train_step(dev_state, dev_batch, rng)
    assert all(x.is_deleted() for x in jax.tree.leaves(before.params))   # donated.
  got = par.get_state(dev_state)
  np.testing.assert_allclose(metrics['loss'], want_m2['loss'], rtol=1e-5)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
               got.params, want.params)


def test_prefetch_to_device_keeps_order_and_places_batches():
  seen = []

  def put(batch):
    seen.append(batch)
    return jnp.asarray(batch)
  host = (np.full((2,), i) for i in range(5))
  it = parallel.prefetch_to_device(host, put, size=2)
  first = next(it)
  assert len(seen) == 3                        # two batches in flight ahead of step 1.
  assert isinstance(first, jax.Array) and int(first[0]) == 0
  assert [int(b[0]) for b in it] == [1, 2, 3, 4]
  assert [int(b[0]) for b in parallel.prefetch_to_device(iter([np.zeros(1)] * 3), put, 0)] \
      == [0, 0, 0]


@pytest.mark.parametrize('lq, lk', [(5, 5), (5, 8), (6, 7), (4, 6)])
def test_even_length_attention_equals_explicit_with_the_pad_masked(lq, lk):
  """cuDNN's backward pass rejects odd lengths; the pad that avoids them must change
  nothing. Run through XLA here, which honours the same sequence-length masks."""
  q, k, v = qkv(2, lq, lk, 3, 8, seed=lq + lk)
  cot = jnp.asarray(np.random.default_rng(1).standard_normal(q.shape), jnp.float32)

  def grads(fn):
    loss = lambda q, k, v: jnp.sum(fn(q, k, v) * cot)
    return jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2)))(q, k, v)
  (out, g), (ref, g_ref) = (
      grads(functools.partial(attention.even_length_attention, implementation='xla')),
      grads(explicit))
  np.testing.assert_allclose(out, ref, rtol=1e-5)
  for a, b in zip(g, g_ref):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def fake_cudnn(monkeypatch, rejects_backward):
  """jax.nn.dot_product_attention stood in for on a pretend GPU: 'cudnn' calls run XLA
  but, like jax's cuDNN wrapper, check their shapes in the backward pass's forward rule
  (traced under `jax.grad` only) and raise when `rejects_backward(Lq, Lk)`."""
  real, calls = jax.nn.dot_product_attention, []

  def fake(q, k, v, *, implementation=None, **kw):
    calls.append(implementation)
    attend = lambda q, k, v: real(q, k, v, implementation='xla', **kw)
    if implementation != 'cudnn':
      return attend(q, k, v)
    cudnn = jax.custom_vjp(attend)

    def fwd(q, k, v):
      if rejects_backward(q.shape[1], k.shape[1]):
        raise NotImplementedError(f'Unsupported sequence length Q {q.shape[1]}, '
                                  f'KV {k.shape[1]}.')
      return attend(q, k, v), (q, k, v)
    cudnn.defvjp(fwd, lambda res, g: jax.vjp(attend, *res)[1](g))
    return cudnn(q, k, v)
  monkeypatch.setattr(jax, 'default_backend', lambda: 'gpu')
  monkeypatch.setattr(jax.nn, 'dot_product_attention', fake)
  attention._cudnn_accepts.cache_clear()   # pylint: disable=protected-access
  return calls


@pytest.mark.parametrize('rejects, expected', [
    (lambda lq, lk: lq % 2 or lk % 2, 'cudnn'),   # jax 0.11: odd lengths -> padded.
    (lambda lq, lk: True, 'xla')])                 # rejected in any case -> XLA.
def test_gpu_default_picks_cudnn_only_where_its_backward_pass_accepts(
    monkeypatch, rejects, expected):
  calls = fake_cudnn(monkeypatch, rejects)
  q, k, v = qkv(2, 5, 5, 2, 8, dtype=jnp.bfloat16)
  attend = lambda q, k, v: attention.dot_product_attention(q, k, v)   # fresh: no trace cache.
  loss = lambda q: jnp.sum(jax.checkpoint(attend)(q, k, v).astype(jnp.float32) ** 2)
  grad = jax.grad(loss)(q)                        # no error escapes remat + grad.
  ref = jax.grad(lambda q: jnp.sum(explicit(q, k, v).astype(jnp.float32) ** 2))(q)
  np.testing.assert_allclose(np.asarray(grad, np.float32), np.asarray(ref, np.float32),
                             rtol=0.05, atol=0.05)
  assert calls[-1] == expected
  calls.clear()
  attention.dot_product_attention(*(x.astype(jnp.float32) for x in (q, k, v)))
  assert calls == ['xla']                         # float32: XLA directly.
  attention._cudnn_accepts.cache_clear()   # pylint: disable=protected-access


def test_forced_cudnn_does_not_fall_back(monkeypatch):
  fake_cudnn(monkeypatch, lambda lq, lk: True)
  q, k, v = qkv(1, 6, 6, 2, 8, dtype=jnp.bfloat16)
  with pytest.raises(NotImplementedError, match='Unsupported sequence length'):
    jax.grad(lambda q: jnp.sum(attention.dot_product_attention(q, k, v, impl='cudnn')
                               .astype(jnp.float32)))(q)
  attention._cudnn_accepts.cache_clear()   # pylint: disable=protected-access
