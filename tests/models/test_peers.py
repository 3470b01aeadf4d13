"""VTN, MViT/MViTv2 and Video Swin: shapes, attention structure, paper sizes, training."""
import functools
import itertools
import pathlib

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from vivit_jax import config as vc
from vivit_jax import models
from vivit_jax.models import cost, layers, mvit, video_swin, vtn
from vivit_jax.ops import pooling
from vivit_jax.ops.cpu import depthwise_conv as cpu_depthwise_conv
from vivit_jax.ops.cpu import flash_attention as cpu_attention

CONFIGS = pathlib.Path(__file__).parents[2] / 'configs'
SYNTHETIC = ('vtn', 'mvit', 'mvitv2', 'video_swin')   # configs/synthetic/<name>.py
B = 2


def tiny(name, **overrides):
  config = vc.load_config(CONFIGS / 'synthetic' / f'{name}.py', 'tiny')
  for k, v in overrides.items():
    setattr(config.model, k, v)
  vc.validate_config(config)
  d = config.dataset
  return (models.create_model(config.model, d.num_classes),
          (B, d.num_frames, d.crop_size, d.crop_size, 3), d.num_classes)


def noise_params(model, shape, *args, seed=0, scale=0.3, **kwargs):
  """Abstract init, every leaf replaced by noise (zero heads would hide mistakes)."""
  x = jax.ShapeDtypeStruct(shape, jnp.float32)
  shapes = jax.eval_shape(lambda v: model.init(jax.random.key(0), v, *args, **kwargs), x)
  shapes = shapes['params']
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda s: jnp.asarray(scale * rng.standard_normal(s.shape), s.dtype),
                      shapes)


def changed_tokens(fn, x, index, atol=1e-6):
  """bool mask over fn(x)'s token axes: outputs that move when token `index` of x does."""
  bump = jnp.linspace(-1.0, 1.0, x.shape[-1])   # not constant: LayerNorm would hide it
  bumped = x.at[(0, *index)].add(bump)
  diff = jnp.abs(fn(bumped) - fn(x)).max(axis=-1)[0]
  return np.asarray(diff > atol)


# ---------------------------------------------------------------------------------
# Every family: shapes on tiny inputs.

@pytest.mark.parametrize('name, overrides', [
    ('vtn', {}), ('vtn', {'temporal_window': None}), ('mvit', {}), ('mvitv2', {}),
    ('mvit', {'cls_embed': False, 'sep_pos_embed': False}), ('video_swin', {}),
], ids=['vtn_windowed', 'vtn_full', 'mvit', 'mvitv2', 'mvit_gap', 'video_swin'])
def test_logits_shape_and_examples_independent(name, overrides):
  model, shape, num_classes = tiny(name, **overrides)
  params = noise_params(model, shape)
  video = jax.random.normal(jax.random.key(1), shape)
  apply = jax.jit(lambda p, v: model.apply({'params': p}, v, train=False))
  logits = apply(params, video)
  assert logits.shape == (B, num_classes) and logits.dtype == jnp.float32
  assert np.all(np.isfinite(logits)) and np.abs(logits).max() > 1e-3
  assert np.abs(logits[0] - logits[1]).max() > 1e-4          # the input matters ...
  other = apply(params, video.at[0].multiply(-1.0))          # ... per example only.
  assert np.abs(other[0] - logits[0]).max() > 1e-4
  np.testing.assert_allclose(other[1], logits[1], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('classifier, pool', [('gap', np.mean), ('gmp', np.max),
                                              ('gsp', np.sum)])
def test_swin_head_pools_the_last_stage_tokens(classifier, pool):
  """Logits = output_projection(pool over the normalised last-stage tokens)."""
  model, shape, _ = tiny('video_swin', classifier=classifier)
  params = noise_params(model, shape)
  video = jax.random.normal(jax.random.key(1), shape)
  logits, state = model.apply({'params': params}, video, train=False,
                              capture_intermediates=lambda m, _: m.name == 'encoder_norm')
  tokens = np.asarray(state['intermediates']['encoder_norm']['__call__'][0])
  head = params['output_projection']
  pooled = pool(tokens.reshape(B, -1, tokens.shape[-1]), axis=1)
  np.testing.assert_allclose(logits, pooled @ head['kernel'] + head['bias'],
                             rtol=1e-4, atol=1e-4)


def test_swin_refuses_a_cls_classifier():
  with pytest.raises(vc.ConfigError, match=r"config\.model\.classifier='token' .*'gmp'"):
    tiny('video_swin', classifier='token')


# ---------------------------------------------------------------------------------
# Video Swin: which tokens a (shifted-)window layer mixes.

def swin_block(shift, grid=(4, 4, 4), window=(2, 2, 2), dim=8):
  cfg = layers.TransformerConfig(hidden_size=dim, num_heads=2, mlp_dim=16)
  block = video_swin.SwinBlock(cfg, window, shift)
  x = jax.random.normal(jax.random.key(0), (1, *grid, dim))
  params = noise_params(block, x.shape, True, scale=0.1)
  return jax.jit(lambda v: block.apply({'params': params}, v, True)), x


@pytest.mark.parametrize('shift', [(0, 0, 0), (1, 1, 1)])
@pytest.mark.parametrize('index', [(0, 0, 0), (1, 2, 3), (3, 3, 3), (2, 1, 0)])
def test_swin_block_mixes_only_inside_its_windows(shift, index):
  window = (2, 2, 2)
  block, x = swin_block(shift)
  changed = changed_tokens(block, x, index)
  # The original's shifted windows are the regular partition displaced by `shift`, with
  # no wrap-around: tokens i, j share a window iff floor((x - s) / w) agrees per axis.
  group = lambda pos: tuple((p - s) // w for p, s, w in zip(pos, shift, window))
  expected = np.zeros_like(changed)
  for pos in itertools.product(*map(range, changed.shape)):
    expected[pos] = group(pos) == group(index)
  np.testing.assert_array_equal(changed, expected)
  assert expected.sum() < expected.size / 4   # a real restriction, not global attention


def test_swin_window_shrinks_and_pads_like_the_original():
  assert video_swin.window_and_shift((16, 7, 7), (8, 7, 7), (4, 3, 3)) == ((8, 7, 7), (4, 0, 0))
  assert video_swin.window_and_shift((4, 3, 14), (8, 7, 7), (4, 3, 3)) == ((4, 3, 7), (0, 0, 3))
  # A 3x5x5 map with 2x2x2 windows is zero-padded to 4x6x6: still only local mixing.
  block, x = swin_block((0, 0, 0), grid=(3, 5, 5))
  changed = changed_tokens(block, x, (2, 4, 4))
  expected = np.zeros_like(changed)
  expected[2:, 4:, 4:] = True
  np.testing.assert_array_equal(changed, expected)


def test_swin_relative_position_index_matches_the_original_formula():
  window = table = (2, 3, 3)
  index = video_swin.relative_position_index(window, table)
  coords = list(itertools.product(*map(range, window)))
  for (i, a), (j, b) in itertools.product(enumerate(coords), repeat=2):
    d, h, w = (p - q + n - 1 for p, q, n in zip(a, b, table))
    assert index[i, j] == (d * (2 * table[1] - 1) + h) * (2 * table[2] - 1) + w
  assert index.max() == (2 * 2 - 1) * 5 * 5 - 1
  # A shrunk window reads the configured table at the same relative offsets.
  small = video_swin.relative_position_index((1, 2, 2), (8, 7, 7))
  centre = (8 - 1) * 13 * 13 + (7 - 1) * 13 + (7 - 1)
  assert np.all(np.diag(small) == centre)


# ---------------------------------------------------------------------------------
# VTN: windowed temporal attention.

@pytest.mark.parametrize('index, expected', [
    (0, range(8)),                 # the global CLS is seen by every frame ...
    (1, [0, 1, 2, 3]),            # ... frames see |i - j| <= window // 2 = 2, plus CLS.
    (5, [0, 3, 4, 5, 6, 7]),
])
def test_vtn_sliding_window_mixes_only_neighbours_and_cls(index, expected):
  cfg = layers.TransformerConfig(hidden_size=8, num_heads=2, mlp_dim=16)
  layout = functools.partial(vtn.sliding_window_layout, window=4)
  attention = layers.MultiHeadAttention(cfg, layout)
  x = jax.random.normal(jax.random.key(0), (1, 8, 8))
  params = noise_params(attention, x.shape, deterministic=True, scale=0.1)
  fn = jax.jit(lambda v: attention.apply({'params': params}, v, deterministic=True))
  changed = changed_tokens(fn, x, (index,))
  np.testing.assert_array_equal(np.flatnonzero(changed), np.asarray(expected))


def test_vtn_backbone_is_a_per_frame_vit():
  """Frame order only matters through the temporal position embedding: with it zeroed
  (and the temporal encoder's full attention), permuting frames keeps the logits."""
  model, shape, _ = tiny('vtn', temporal_window=None)
  params = noise_params(model, shape)
  pos = params['TemporalTransformer']['posembed_input']['pos_embedding']
  params['TemporalTransformer']['posembed_input']['pos_embedding'] = jnp.zeros_like(pos)
  video = jax.random.normal(jax.random.key(2), shape)
  apply = jax.jit(lambda v: model.apply({'params': params}, v))
  np.testing.assert_allclose(apply(video[:, ::-1]), apply(video), rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------------------------
# MViT: stage shapes and pooled sequence lengths.

def test_mvit_b_schedule_matches_the_paper():
  """MViT-B (paper Table 3): scale2..5 at 8x56x56 / 8x28x28 / 8x14x14 / 8x7x7 with widths
  96 / 192 / 384 / 768 and 1 / 2 / 4 / 8 heads; K/V pooled to 8x7x7."""
  specs = mvit.block_specs(mvit.model_config('B'), (8, 56, 56))
  assert len(specs) == 16
  out_dims = [s.dim_out for s in specs]
  assert out_dims == [192, 192, 384] + [384] * 10 + [768] * 3   # v1 widens in the MLP
  assert [s.num_heads for s in specs] == [1, 2, 2] + [4] * 11 + [8] * 2
  grids = [s.grid for s in specs]
  assert grids == [(8, 56, 56)] * 2 + [(8, 28, 28)] * 2 + [(8, 14, 14)] * 11 + [(8, 7, 7)]
  assert [i for i, s in enumerate(specs) if s.q_stride] == [1, 3, 14]
  # K/V strides adapt at the Q-strided block itself, which still sees the finer grid.
  kv_grids = [mvit.pooled_grid(s.grid, s.kv_kernel, s.kv_stride) for s in specs]
  assert kv_grids == [(8, 7, 7) if i not in (1, 3, 14) else (8, 14, 14) for i in range(16)]
  v2 = mvit.block_specs(mvit.model_config('v2-S'), (8, 56, 56))
  assert [s.dim_out for s in v2] == [96, 192, 192, 384] + [384] * 10 + [768] * 2
  assert all(s.q_kernel == (3, 3, 3) for s in v2)       # v2 pools Q in every block


@pytest.mark.parametrize('variant', ['B', 'v2-S'])
def test_mvit_block_outputs_and_pooled_lengths_at_paper_size(variant):
  m = mvit.model_config(variant)
  model = models.create_model(m, 400)
  shape = (1, 16, 224, 224, 3)
  params = cost.abstract_params(model, shape)
  _, state = jax.eval_shape(
      lambda p, v: model.apply({'params': p}, v, capture_intermediates=True), params,
      jax.ShapeDtypeStruct(shape, jnp.float32))
  inter = state['intermediates']
  for i, spec in enumerate(mvit.block_specs(m, (8, 56, 56))):
    out_grid = mvit.pooled_grid(spec.grid, spec.q_kernel, spec.q_stride)
    tokens = 1 + int(np.prod(out_grid))
    assert inter[f'block_{i}']['__call__'][0].shape == (1, tokens, spec.dim_out)
    layout = inter[f'block_{i}']['MultiHeadDotProductAttention_0']['layout']
    head_dim = (spec.dim_out if m.dim_mul_in_att else spec.dim) // spec.num_heads
    kv_grid = mvit.pooled_grid(spec.grid, spec.kv_kernel, spec.kv_stride)
    assert kv_grid == ((8, 14, 14) if i in (1, 3, 14) else (8, 7, 7))
    assert layout['pool_k']['__call__'][0].shape == (spec.num_heads, *kv_grid, head_dim)
  last = inter['block_15']['__call__'][0]
  assert last.shape == (1, 1 + 8 * 7 * 7, 768)


@pytest.mark.parametrize('kernel, stride, shape', [
    ((3, 3, 3), (1, 2, 2), (2, 4, 6, 6, 3)), ((1, 5, 5), (1, 4, 4), (1, 2, 9, 8, 2)),
    ((3, 3, 3), (1, 1, 1), (1, 3, 3, 5, 2)),
    ((3, 7, 5), (2, 3, 2), (2, 5, 2, 9, 17)),   # kernel wider than h; strides that
    ((3, 3, 3), (1, 8, 8), (1, 4, 10, 17, 16))])  # leave a remainder (MViT's kv pools).
@pytest.mark.parametrize('cpu_kernel', [True, False])
def test_mvit_depthwise_conv_equals_a_grouped_conv(kernel, stride, shape, cpu_kernel,
                                                    monkeypatch):
  """Values and both gradients equal a grouped nn.Conv's, with the kernel gradient from
  the C++ kernel (CPU) or from XLA's reductions (elsewhere)."""
  if cpu_kernel and cpu_depthwise_conv.unavailable_reason():
    pytest.skip(cpu_depthwise_conv.unavailable_reason())
  if not cpu_kernel:
    monkeypatch.setattr(cpu_depthwise_conv, 'applies', lambda *a: False)
  x = jax.random.normal(jax.random.key(0), shape)
  conv = mvit.DepthwiseConv3D(kernel, stride)
  params = {'params': noise_params(conv, shape)}
  grouped = nn.Conv(shape[-1], kernel, stride, padding=[(k // 2, k // 2) for k in kernel],
                    feature_group_count=shape[-1], use_bias=False)
  out = jax.jit(conv.apply)(params, x)
  assert out.shape[1:4] == mvit.pooled_grid(shape[1:4], kernel, stride)
  np.testing.assert_allclose(out, jax.jit(grouped.apply)(params, x), rtol=1e-5, atol=1e-5)
  w = jax.random.normal(jax.random.key(1), out.shape)
  loss = lambda m: jax.jit(jax.grad(lambda p, v: jnp.sum(w * m.apply(p, v)), (0, 1)))
  got, want = loss(conv)(params, x), loss(grouped)(params, x)
  jax.tree.map(functools.partial(np.testing.assert_allclose, rtol=1e-4, atol=1e-4), got, want)
  hlo = loss(conv).lower(params, x).as_text()
  assert (cpu_depthwise_conv.TARGET in hlo) == cpu_kernel


def test_mvit_depthwise_conv_bfloat16_gradients_follow_float32():
  """bf16 compute (XLA's kernel-gradient path) rounds once: gradients within bf16's step
  of the float32 ones."""
  shape, kernel, stride = (2, 4, 6, 7, 8), (3, 3, 3), (1, 2, 2)
  x = jax.random.normal(jax.random.key(0), shape)
  convs = {d: mvit.DepthwiseConv3D(kernel, stride, dtype=d) for d in (jnp.float32,
                                                                        jnp.bfloat16)}
  params = {'params': noise_params(convs[jnp.float32], shape)}
  w = jax.random.normal(jax.random.key(1), (2, 4, 3, 4, 8))
  grads = {d: jax.jit(jax.grad(lambda p, v: jnp.sum(w * c.apply(p, v).astype(jnp.float32)),
                               (0, 1)))(params, x) for d, c in convs.items()}
  for a, b in zip(jax.tree.leaves(grads[jnp.bfloat16]), jax.tree.leaves(grads[jnp.float32])):
    assert a.dtype == b.dtype == jnp.float32
    np.testing.assert_allclose(np.float32(a), b, rtol=0.05, atol=0.05 * np.abs(b).max())


@pytest.mark.parametrize('kernel, stride', [((1, 3, 3), (1, 2, 2)), ((3, 3, 3), (2, 2, 2))])
def test_mvit_skip_max_pool_equals_flax_max_pool(kernel, stride):
  x = jax.random.normal(jax.random.key(1), (2, 4, 7, 6, 3))
  reference = functools.partial(nn.max_pool, window_shape=kernel, strides=stride,
                                padding=[(k // 2, k // 2) for k in kernel])
  out = pooling.max_pool(x, kernel, stride)
  np.testing.assert_array_equal(out, reference(x))
  # Gradients route to the same argmax (no ties in normal noise).
  g = jax.grad(lambda v: jnp.sum(pooling.max_pool(v, kernel, stride) ** 3))(x)
  g_ref = jax.grad(lambda v: jnp.sum(reference(v) ** 3))(x)
  np.testing.assert_allclose(g, g_ref, rtol=1e-6)


def test_mvit_relative_distances_follow_pyslowfast():
  np.testing.assert_array_equal(mvit.relative_distances(3, 3),
                                [[2, 1, 0], [3, 2, 1], [4, 3, 2]])
  # Keys pooled 4x coarser: each key step counts as 4 query steps.
  np.testing.assert_array_equal(mvit.relative_distances(4, 1), [[0], [1], [2], [3]])
  np.testing.assert_array_equal(mvit.relative_distances(1, 2), [[1, 0]])


def test_mvitv2_relative_position_and_residual_pooling_change_the_output():
  cfg = layers.TransformerConfig(hidden_size=8, num_heads=2, mlp_dim=16)
  x = jax.random.normal(jax.random.key(3), (1, 1 + 2 * 4 * 4, 8))

  def attention(residual_pooling):
    layout = mvit.PoolingAttentionLayout(
        cfg, (2, 4, 4), (1, 3, 3), (1, 2, 2), (1, 3, 3), (1, 2, 2), True,
        rel_pos_spatial=True, rel_pos_temporal=True, residual_pooling=residual_pooling)
    module = layers.MultiHeadAttention(cfg, layout)
    return jax.jit(lambda p: module.apply({'params': p}, x, deterministic=True))

  with_residual, without_residual = attention(True), attention(False)
  params = noise_params(layers.MultiHeadAttention(cfg, mvit.PoolingAttentionLayout(
      cfg, (2, 4, 4), (1, 3, 3), (1, 2, 2), (1, 3, 3), (1, 2, 2), True, True, True, True)),
      x.shape, deterministic=True)
  tables = params['layout']
  assert tables['rel_pos_t'].shape == (3, 4) and tables['rel_pos_h'].shape == (3, 4)
  base = with_residual(params)
  assert base.shape == (1, 1 + 2 * 2 * 2, 8)              # Q pooled to 2x2x2 (+ CLS)
  zeroed = jax.tree_util.tree_map_with_path(
      lambda path, p: jnp.zeros_like(p) if 'rel_pos' in jax.tree_util.keystr(path) else p,
      params)
  assert np.abs(with_residual(zeroed) - base).max() > 1e-3
  assert np.abs(without_residual(params) - base).max() > 1e-3


# ---------------------------------------------------------------------------------
# Paper sizes (abstract init only).

PAPER = {name: numbers for name, numbers in cost.PAPER_NUMBERS.items()
         if name.startswith(('mvit', 'swin'))}


@pytest.mark.parametrize('name', sorted(PAPER))
def test_paper_config_params(name):
  config = vc.load_config(CONFIGS / 'kinetics400' / f'{name}.py')
  vc.validate_config(config)
  d = config.dataset
  model = models.create_model(config.model, d.num_classes)
  params = cost.abstract_params(model, (1, d.num_frames, d.crop_size, d.crop_size, 3))
  params_m = cost.count_params(params) / 1e6
  assert abs(params_m / PAPER[name][1] - 1) <= 0.01, params_m


def test_vtn_paper_config_params():
  config = vc.load_config(CONFIGS / 'kinetics400' / 'vtn_vit_b.py')
  vc.validate_config(config)
  model = models.create_model(config.model, 400)
  params = cost.abstract_params(model, (1, 16, 224, 224, 3))
  # ViT-B/16 at 224^2 without its classifier: 86,567,656 - 768 * 1000 - 1000.
  assert cost.count_params(params['backbone']) == 85_798_656
  layer = 4 * (768 * 768 + 768) + 2 * 768 * 3072 + 3072 + 768 + 4 * 768
  assert cost.count_params(params['TemporalTransformer']) == 3 * layer + 17 * 768 + 2 * 768
  assert abs(cost.count_params(params) / 1e6 - 107.98) < 0.01


# ---------------------------------------------------------------------------------
# Training: a few SGD steps lower the loss.

def fan_in_init(model, shape, seed=0):
  """A plain init from abstract shapes (a jitted `model.init` costs a compile): kernels
  N(0, 1/fan_in), biases 0, LayerNorm scales 1, the classifier 0, other tables N(0, 0.02^2)."""
  rng = np.random.default_rng(seed)

  def leaf(path, s):
    path = jax.tree_util.keystr(path)
    if path.endswith("['scale']"):
      return jnp.ones(s.shape, s.dtype)
    if path.endswith("['bias']") or 'output_projection' in path:
      return jnp.zeros(s.shape, s.dtype)
    std = 1 / np.sqrt(np.prod(s.shape[:-1])) if path.endswith("['kernel']") else 0.02
    return jnp.asarray(std * rng.standard_normal(s.shape), s.dtype)

  return jax.tree_util.tree_map_with_path(leaf, cost.abstract_params(model, shape))


@pytest.mark.parametrize('name', SYNTHETIC)
def test_sgd_steps_lower_the_loss(name):
  model, shape, num_classes = tiny(name)
  shape = (8,) + shape[1:]
  video = jax.random.normal(jax.random.key(4), shape)
  labels = jnp.arange(shape[0]) % num_classes
  params = fan_in_init(model, shape)
  tx = optax.sgd(0.1, momentum=0.9)

  def loss_fn(p, rng):
    logits = model.apply({'params': p}, video, train=True, rngs={'dropout': rng})
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

  @jax.jit
  def step(p, opt_state, rng):
    loss, grads = jax.value_and_grad(loss_fn)(p, rng)
    updates, opt_state = tx.update(grads, opt_state, p)
    return optax.apply_updates(p, updates), opt_state, loss

  opt_state, losses = tx.init(params), []
  for i in range(10):
    params, opt_state, loss = step(params, opt_state, jax.random.key(i))
    losses.append(float(loss))
  assert np.isfinite(losses).all()
  assert losses[0] == pytest.approx(np.log(num_classes), rel=1e-3)   # zero-init head
  assert losses[-1] < 0.8 * losses[0], losses


@pytest.mark.parametrize('name', SYNTHETIC)
def test_remat_gives_identical_gradients(name):
  """`model.remat` + `remat_policy` reach every family's blocks (cfg.maybe_remat) and
  recompute exactly what the plain model computes."""
  grads = {}
  for remat in (False, True):
    model, shape, num_classes = tiny(name, remat=remat, remat_policy='dots_saveable')
    video = jax.random.normal(jax.random.key(5), shape)
    labels = jnp.arange(shape[0]) % num_classes
    params = noise_params(model, shape, scale=0.1)

    def loss_fn(p):
      logits = model.apply({'params': p}, video, train=False)
      return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

    jaxpr = str(jax.make_jaxpr(jax.grad(loss_fn))(params))
    assert ('remat' in jaxpr or 'checkpoint' in jaxpr) == remat, 'remat missed the blocks'
    grads[remat] = jax.jit(jax.grad(loss_fn))(params)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7),
               grads[False], grads[True])


@pytest.mark.skipif(not cpu_attention.available(),
                    reason=f'kernel unavailable: {cpu_attention.unavailable_reason()}')
@pytest.mark.parametrize('name', ['video_swin', 'mvitv2'])
def test_cpu_kernel_with_bias_and_mask_equals_explicit_attention(name):
  """Video Swin (relative position bias + shifted-window mask) and MViTv2 (decomposed
  relative positions, a per-query bias) through the C++ CPU kernel, which the default
  impl picks on CPU: logits and every parameter's gradient as the explicit path's."""
  video = jax.random.normal(jax.random.key(6), tiny(name)[1])
  results = {}
  for impl in ('explicit', 'auto'):
    model, shape, num_classes = tiny(name, attention_impl=impl)
    params = noise_params(model, shape, scale=0.1)
    labels = jnp.arange(shape[0]) % num_classes

    def loss_fn(p):
      logits = model.apply({'params': p}, video, train=False)
      return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean(), logits

    grad_fn = jax.jit(jax.grad(loss_fn, has_aux=True))
    if impl == 'auto':
      hlo = grad_fn.lower(params).as_text()
      assert cpu_attention.TARGET in hlo and cpu_attention.BACKWARD_TARGET in hlo
    results[impl] = grad_fn(params)
  (grads, logits), (want_grads, want_logits) = results['auto'], results['explicit']
  np.testing.assert_allclose(logits, want_logits, rtol=1e-5, atol=1e-5)
  flat, want = jax.tree.leaves_with_path(grads), jax.tree.leaves(want_grads)
  assert any('relative_position_bias_table' in jax.tree_util.keystr(p) or
             'rel_pos' in jax.tree_util.keystr(p) for p, _ in flat)
  for (path, a), b in zip(flat, want):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6, err_msg=jax.tree_util.keystr(path))
