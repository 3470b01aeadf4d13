"""ViT / ViViT models against an independent numpy reference, plus their structure."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import vivit_reference as ref
from vivit_jax import config as vc
from vivit_jax import models
from vivit_jax.models import layers, vivit

B, T, HW, C = 2, 4, 8, 3
NUM_CLASSES = 5


def tiny_config(attention_type, **overrides):
  config = vc.default_config()
  m = config.model
  m.attention_type = attention_type
  m.classifier = 'token' if attention_type in ('spatio_temporal', 'factorised_encoder') else 'gap'
  m.hidden_size, m.num_layers, m.num_heads, m.mlp_dim = 16, 2, 4, 32
  m.patch_size, m.temporal_patch_size, m.temporal_num_layers = (4, 4), 2, 1
  config.dataset.num_frames, config.dataset.crop_size = T, HW
  config.dataset.num_classes = NUM_CLASSES
  for k, v in overrides.items():
    setattr(m, k, v)
  vc.validate_config(config)
  return config


def randomised_params(model, *inputs, seed=0):
  """Init, then replace every leaf by noise: zero heads/cls and unit LayerNorms hide bugs."""
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), *inputs))['params']
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda s: jnp.asarray(0.3 * rng.standard_normal(s.shape), s.dtype),
                      shapes)


def jit_apply(model):
  """model.apply under jit (eager op-by-op dispatch makes tiny models slow to test)."""
  return jax.jit(model.apply, static_argnames=('train', 'mutable', 'capture_intermediates'))


def as_numpy(tree):
  return jax.tree.map(lambda a: np.asarray(a, np.float64), tree)


@pytest.fixture(scope='module')
def video():
  return jax.random.normal(jax.random.key(42), (B, T, HW, HW, C))


REFERENCES = {
    'spatio_temporal': lambda v, p: ref.model1(v, p, num_layers=2),
    'factorised_encoder': lambda v, p: ref.model2(v, p, 2, 1, num_frames=T // 2),
    'factorised_self_attention': lambda v, p: ref.model3(v, p, 2, num_frames=T // 2),
    'factorised_dot_product': lambda v, p: ref.model4(v, p, 2, num_frames=T // 2,
                                                      num_heads=4),
}


@pytest.mark.parametrize('attention_type', vivit.ATTENTION_TYPES)
def test_matches_numpy_reference(attention_type, video):
  config = tiny_config(attention_type)
  model = models.create_model(config.model, NUM_CLASSES)
  params = randomised_params(model, video)
  logits = jit_apply(model)({'params': params}, video, train=False)
  assert logits.shape == (B, NUM_CLASSES) and logits.dtype == jnp.float32
  expected = np.stack([REFERENCES[attention_type](np.asarray(v, np.float64), as_numpy(params))
                       for v in video])
  np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-4)
  assert np.abs(expected).max() > 0.1  # The comparison is not between two near-zeros.


@pytest.mark.parametrize('pool', ['gmp', 'gsp'])
@pytest.mark.parametrize('attention_type', ['factorised_self_attention',
                                            'factorised_dot_product'])
def test_token_pooling_matches_reference(attention_type, pool, video):
  """Scenic's max ('gmp') and sum ('gsp') pooling heads of the CLS-free Models 3 and 4."""
  model = models.create_model(tiny_config(attention_type, classifier=pool).model,
                              NUM_CLASSES)
  params = randomised_params(model, video)
  logits = jit_apply(model)({'params': params}, video, train=False)
  reference = {'factorised_self_attention': functools.partial(ref.model3, num_layers=2),
               'factorised_dot_product': functools.partial(ref.model4, num_layers=2,
                                                           num_heads=4)}[attention_type]
  expected = np.stack([reference(np.asarray(v, np.float64), as_numpy(params),
                                 num_frames=T // 2, pool=pool) for v in video])
  np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-4)
  gap = np.stack([reference(np.asarray(v, np.float64), as_numpy(params),
                            num_frames=T // 2) for v in video])
  assert np.abs(expected - gap).max() > 0.1   # The pooling changed the function.


def test_model3_time_space_order_matches_reference(video):
  """Scenic's order (temporal attention first): same parameter names, another function."""
  space_time = models.create_model(tiny_config('factorised_self_attention').model,
                                   NUM_CLASSES)
  time_space = models.create_model(
      tiny_config('factorised_self_attention', attention_order='time_space').model,
      NUM_CLASSES)
  params = randomised_params(time_space, video)
  assert (jax.tree.structure(params) ==
          jax.tree.structure(randomised_params(space_time, video)))
  logits = jit_apply(time_space)({'params': params}, video)
  x64, p64 = np.asarray(video, np.float64), as_numpy(params)
  expected = np.stack([ref.model3(v, p64, 2, T // 2, attention_order='time_space')
                       for v in x64])
  np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-4)
  # The order matters for these params: the other order is far from both.
  other = np.stack([ref.model3(v, p64, 2, T // 2, attention_order='space_time') for v in x64])
  assert np.abs(other - expected).max() > 1e-2
  np.testing.assert_allclose(jit_apply(space_time)({'params': params}, video), other,
                             rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize('attention_type, order, match', [
    ('factorised_self_attention', 'spacetime', r"attention_order='spacetime'.*'space_time'"),
    ('spatio_temporal', 'time_space', r"attention_order='time_space'.*'spatio_temporal'"),
    ('factorised_encoder', 'time_space', r"attention_order='time_space'.*Model 3"),
])
def test_attention_order_config_errors(attention_type, order, match):
  with pytest.raises(vc.ConfigError, match=match):
    tiny_config(attention_type, attention_order=order)
  tiny_config(attention_type, attention_order='space_time')   # the default is fine anywhere.


def test_average_pool_baseline_matches_reference(video):
  config = tiny_config('factorised_encoder', temporal_num_layers=0)
  model = models.create_model(config.model, NUM_CLASSES)
  params = randomised_params(model, video)
  assert 'TemporalTransformer' not in params
  logits = jit_apply(model)({'params': params}, video)
  expected = np.stack([ref.model2(np.asarray(v, np.float64), as_numpy(params), 2, 0, T // 2)
                       for v in video])
  np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-4)


def test_uniform_frame_equals_tubelet_of_length_one(video):
  """2D per-frame patches are a tubelet with t=1: same kernel (reshaped), same logits."""
  frame_cfg = tiny_config('spatio_temporal', embedding='uniform_frame', temporal_patch_size=1)
  tube_cfg = tiny_config('spatio_temporal', embedding='tubelet', temporal_patch_size=1)
  frame_model = models.create_model(frame_cfg.model, NUM_CLASSES)
  tube_model = models.create_model(tube_cfg.model, NUM_CLASSES)
  params = randomised_params(frame_model, video)
  assert params['embedding']['kernel'].shape == (4, 4, C, 16)
  tube_params = dict(params, embedding=dict(params['embedding'],
                                            kernel=params['embedding']['kernel'][None]))
  np.testing.assert_allclose(jit_apply(frame_model)({'params': params}, video),
                             jit_apply(tube_model)({'params': tube_params}, video),
                             rtol=1e-5, atol=1e-5)


def test_vit_matches_reference():
  config = tiny_config('spatio_temporal')
  config.model.name = 'vit'
  model = models.create_model(config.model, NUM_CLASSES)
  images = jax.random.normal(jax.random.key(3), (B, HW, HW, C))
  params = randomised_params(model, images)
  logits = jit_apply(model)({'params': params}, images)
  p = as_numpy(params)
  p['embedding']['kernel'] = p['embedding']['kernel'][None]  # A one-frame tubelet.
  expected = np.stack([ref.model1(np.asarray(x, np.float64)[None], p, 2) for x in images])
  np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-4)


# --- Structure: which tokens a sub-layer mixes -------------------------------------

NT, NS, D = 3, 4, 16  # temporal indices, spatial positions, width.


def changed_tokens(block, params, seed=0, t0=1, s0=2):
  """Perturbs input token (t0, s0) and returns bool[NT, NS]: which outputs changed."""
  x = jax.random.normal(jax.random.key(seed), (1, NT * NS, D))
  # A random direction: a constant shift of one token would vanish in LayerNorm.
  direction = jax.random.normal(jax.random.key(seed + 1), (D,))
  dx = jnp.zeros_like(x).at[0, t0 * NS + s0].set(direction)
  apply = jax.jit(block.apply, static_argnums=2)
  out = apply({'params': params}, x, True)
  out2 = apply({'params': params}, x + dx, True)
  return np.asarray(jnp.abs(out2 - out).max(-1)[0] > 1e-6).reshape(NT, NS)


def block_cfg():
  return layers.TransformerConfig(hidden_size=D, num_layers=1, num_heads=4, mlp_dim=32)


def init_block(block):
  x = jnp.zeros((1, NT * NS, D))
  return randomised_params(block, x, True)


def zero(params, path):
  params = jax.tree.map(lambda a: a, params)
  node = params
  for key in path[:-1]:
    node = node[key]
  node[path[-1]] = jnp.zeros_like(node[path[-1]])
  return params


SAME_T = np.arange(NT)[:, None] == 1 + 0 * np.arange(NS)[None, :]
SAME_S = np.arange(NS)[None, :] == 2 + 0 * np.arange(NT)[:, None]


def test_model3_spatial_sublayer_mixes_only_its_temporal_index():
  block = vivit.FactorisedSelfAttentionBlock(block_cfg(), num_frames=NT)
  params = init_block(block)
  # Silence the temporal sub-layer: what is left is spatial attention + a pointwise MLP.
  only_space = zero(params, ('MultiHeadDotProductAttention_time', 'out', 'kernel'))
  only_space = zero(only_space, ('MultiHeadDotProductAttention_time', 'out', 'bias'))
  np.testing.assert_array_equal(changed_tokens(block, only_space), SAME_T)


def test_model3_temporal_sublayer_mixes_only_its_spatial_position():
  block = vivit.FactorisedSelfAttentionBlock(block_cfg(), num_frames=NT)
  params = init_block(block)
  only_time = zero(params, ('MultiHeadDotProductAttention_space', 'out', 'kernel'))
  only_time = zero(only_time, ('MultiHeadDotProductAttention_space', 'out', 'bias'))
  np.testing.assert_array_equal(changed_tokens(block, only_time), SAME_S)
  # Both sub-layers together reach the frame first, then every frame: all tokens.
  assert changed_tokens(block, params).all()


@pytest.mark.parametrize('silenced_heads, expected', [(slice(2, 4), SAME_T),
                                                      (slice(0, 2), SAME_S)])
def test_model4_head_groups(silenced_heads, expected):
  layout = functools.partial(vivit.factorised_dot_product_layout, num_frames=NT)
  block = layers.EncoderBlock(block_cfg(), layout=layout)
  params = init_block(block)
  out = params['MultiHeadDotProductAttention_0']['out']
  out['kernel'] = out['kernel'].at[silenced_heads].set(0.0)
  np.testing.assert_array_equal(changed_tokens(block, params), expected)
  assert np.logical_or(SAME_T, SAME_S).sum() < NT * NS  # The two patterns differ.


def test_model2_spatial_encoder_never_mixes_temporal_indices(video):
  config = tiny_config('factorised_encoder')
  model = models.create_model(config.model, NUM_CLASSES)
  params = randomised_params(model, video)

  def spatial_output(v):
    _, state = jit_apply(model)({'params': params}, v, capture_intermediates=True,
                                mutable=('intermediates',))
    out = state['intermediates']['SpatialTransformer']['__call__'][0]
    return out.reshape(B, T // 2, *out.shape[1:])

  perturbed = video.at[0, 2:4, 0:4, 0:4].add(1.0)  # Tube (t=1, s=0) of example 0.
  changed = jnp.abs(spatial_output(perturbed) - spatial_output(video)).max((2, 3)) > 1e-6
  np.testing.assert_array_equal(changed, [[False, True], [False, False]])


# --- Options ---------------------------------------------------------------------

def test_dropout_and_stochastic_depth_are_active_only_in_training(video):
  config = tiny_config('spatio_temporal', dropout_rate=0.2, attention_dropout_rate=0.2,
                       stochastic_depth=0.5)
  model = models.create_model(config.model, NUM_CLASSES)
  params = randomised_params(model, video)
  apply = jit_apply(model)
  eval_a = apply({'params': params}, video)
  eval_b = apply({'params': params}, video, train=False)
  train = lambda seed: apply({'params': params}, video, train=True,
                             rngs={'dropout': jax.random.key(seed)})
  np.testing.assert_array_equal(eval_a, eval_b)
  np.testing.assert_array_equal(train(0), train(0))
  assert np.abs(train(0) - train(1)).max() > 1e-3
  assert np.abs(train(0) - eval_a).max() > 1e-3


def test_remat_gives_identical_gradients(video):
  grads = []
  for remat in (False, True):
    config = tiny_config('factorised_self_attention', remat=remat)
    model = models.create_model(config.model, NUM_CLASSES)
    params = randomised_params(model, video)
    loss = lambda p: jnp.sum(model.apply({'params': p}, video) ** 2)
    grads.append(jax.jit(jax.grad(loss))(params))
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6), *grads)


def test_bfloat16_compute_is_close_to_float32(video):
  out = {}
  for dtype in ('float32', 'bfloat16'):
    config = tiny_config('spatio_temporal', dtype=dtype)
    model = models.create_model(config.model, NUM_CLASSES)
    params = randomised_params(model, video)
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(params))
    out[dtype] = jit_apply(model)({'params': params}, video)
  assert out['bfloat16'].dtype == jnp.float32
  scale = np.abs(out['float32']).max()
  assert np.abs(out['bfloat16'] - out['float32']).max() < 0.05 * scale


def test_explicit_attention_equals_xla(video):
  out = []
  for impl in ('auto', 'explicit'):
    config = tiny_config('factorised_dot_product', attention_impl=impl)
    model = models.create_model(config.model, NUM_CLASSES)
    out.append(jit_apply(model)({'params': randomised_params(model, video)}, video))
  np.testing.assert_allclose(out[0], out[1], rtol=1e-5, atol=1e-5)


def test_representation_size_adds_pre_logits(video):
  config = tiny_config('spatio_temporal', representation_size=8)
  model = models.create_model(config.model, NUM_CLASSES)
  params = jax.eval_shape(lambda: model.init(jax.random.key(0), video))['params']
  assert params['pre_logits']['kernel'].shape == (16, 8)
  assert params['output_projection']['kernel'].shape == (8, NUM_CLASSES)
