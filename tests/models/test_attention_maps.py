"""Attention weights on request (models/attention_maps.py, layers.MultiHeadAttention) and
attention rollout: same logits as the default path, softmax rows, the hand-computed
weights of one layer, the default path untouched, and rollouts equal to the product of
the full token-to-token matrices."""

import jax
import numpy as np
import pytest

from train_helpers import classifier_config_names, tiny_config

from vivit_jax import models
from vivit_jax.models import attention_maps as am
from vivit_jax.models.layers import ATTENTION_WEIGHTS

CONFIGS = classifier_config_names()
tiny = tiny_config


def random_model(config, batch=2):
  """(model, params with noise on every leaf, so heads are not zero, video)."""
  d = config.dataset
  model = models.create_model(config.model, d.num_classes)
  video = jax.random.normal(jax.random.key(1), (batch, d.num_frames, d.crop_size,
                                                d.crop_size, 3))
  params = model.init(jax.random.key(0), video)['params']
  rng = np.random.default_rng(0)
  params = jax.tree.map(
      lambda a: a + 0.2 * rng.standard_normal(a.shape).astype(np.float32), params)
  return model, params, video


@pytest.mark.parametrize('name', CONFIGS)
def test_weights_on_request_keep_the_logits(name):
  config = tiny(name)
  model, params, video = random_model(config)
  reference = model.apply({'params': params}, video)
  logits, maps = am.attention_maps(model, params, video)
  np.testing.assert_allclose(logits, reference, atol=1e-5, rtol=1e-5)
  assert np.abs(np.asarray(reference)).max() > 1e-3
  assert maps
  for path, weights in maps.items():
    for w in weights:
      w = np.asarray(w)
      assert w.ndim == 4 and (w >= 0).all(), path
      np.testing.assert_allclose(w.sum(-1), 1.0, atol=1e-5)
  r = am.rollout(config.model, maps, video.shape)
  np.testing.assert_allclose(r.tokens.sum((1, 2, 3)), 1.0, atol=1e-9)
  pixels = am.to_pixels(r.tokens, r.footprint, *video.shape[1:4])
  assert pixels.shape == video.shape[:4]
  np.testing.assert_allclose(pixels.sum((1, 2, 3)), 1.0, atol=1e-9)


def test_default_path_builds_no_weights():
  config = tiny('vivit_model1')
  model, params, video = random_model(config)
  # 9 tokens (8 + CLS), 2 heads: the explicit weights are f32[2,2,9,9].
  default = str(jax.make_jaxpr(lambda p, v: model.apply({'params': p}, v))(params, video))
  requested = str(jax.make_jaxpr(lambda p, v: model.apply(
      {'params': p}, v, mutable=[ATTENTION_WEIGHTS]))(params, video))
  assert 'f32[2,2,9,9]' in requested and 'f32[2,2,9,9]' not in default
  # Another mutable collection does not turn the weights on.
  _, state = model.apply({'params': params}, video, mutable=['intermediates'])
  assert ATTENTION_WEIGHTS not in state
  assert ATTENTION_WEIGHTS not in model.init(jax.random.key(0), video)   # all mutable.


def test_weights_equal_a_hand_computed_softmax():
  config = tiny('vivit_model1')
  model, params, video = random_model(config)
  _, state = model.apply({'params': params}, video, capture_intermediates=lambda m, _: (
      m.name in ('query', 'key')))
  block = state['intermediates']['Transformer']['encoderblock_0'][
      'MultiHeadDotProductAttention_0']
  q, k = block['query']['__call__'][0], block['key']['__call__'][0]   # [B, L, H, Dh]
  logits = np.einsum('bqhd,bkhd->bhqk', q, k) / np.sqrt(q.shape[-1])
  expected = np.exp(logits - logits.max(-1, keepdims=True))
  expected /= expected.sum(-1, keepdims=True)
  _, maps = am.attention_maps(model, params, video)
  (weights,) = maps['Transformer/encoderblock_0/MultiHeadDotProductAttention_0']
  np.testing.assert_allclose(weights, expected, atol=1e-6)


def full_rollout(layers, readout):
  """readout [B, N] through full [B, N, N] matrices (forward order), (A + I) / 2 each."""
  v = readout
  for a in reversed(layers):
    v = 0.5 * (v + np.einsum('bq,bqk->bk', v, a))
  return v


def space_matrix(w, b, t, s):   # [B*T, H, S, S] -> [B, T*S, T*S] block diagonal.
  a = np.asarray(w, np.float64).mean(1).reshape(b, t, s, s)
  full = np.zeros((b, t * s, t * s))
  for i in range(t):
    full[:, i * s:(i + 1) * s, i * s:(i + 1) * s] = a[:, i]
  return full


def time_matrix(w, b, t, s):    # [B*S, H, T, T] -> [B, T*S, T*S].
  a = np.asarray(w, np.float64).mean(1).reshape(b, s, t, t)
  full = np.zeros((b, t, s, t, s))
  for j in range(s):
    full[:, :, j, :, j] = a[:, j]
  return full.reshape(b, t * s, t * s)


@pytest.mark.parametrize('name', ['vivit_model1', 'vivit_model3', 'vivit_model4'])
def test_rollout_equals_the_full_matrix_product(name):
  config = tiny(name)
  config.model.num_layers = 2
  model, params, video = random_model(config)
  _, maps = am.attention_maps(model, params, video)
  r = am.rollout(config.model, maps, video.shape)
  b, (t, h, w) = video.shape[0], r.tokens.shape[1:]
  s = h * w
  blocks = [f'Transformer/encoderblock_{i}/' for i in range(2)]
  if name == 'vivit_model1':
    layers = [np.asarray(maps[p + 'MultiHeadDotProductAttention_0'][0], np.float64).mean(1)
              for p in blocks]
    readout = np.zeros((b, 1 + t * s))
    readout[:, 0] = 1
    v = full_rollout(layers, readout)[:, 1:]
  elif name == 'vivit_model3':
    layers = []
    for p in blocks:
      layers.append(space_matrix(maps[p + 'MultiHeadDotProductAttention_space'][0], b, t, s))
      layers.append(time_matrix(maps[p + 'MultiHeadDotProductAttention_time'][0], b, t, s))
    v = full_rollout(layers, np.full((b, t * s), 1.0 / (t * s)))
  else:
    layers = [0.5 * space_matrix(maps[p + 'MultiHeadDotProductAttention_0'][0], b, t, s)
              + 0.5 * time_matrix(maps[p + 'MultiHeadDotProductAttention_0'][1], b, t, s)
              for p in blocks]
    v = full_rollout(layers, np.full((b, t * s), 1.0 / (t * s)))
  v = v / v.sum(1, keepdims=True)
  np.testing.assert_allclose(r.tokens.reshape(b, -1), v, atol=1e-12)
  assert not np.allclose(v, 1.0 / (t * s))   # the attention moved mass about.


def test_swin_rollout_with_one_window_is_the_plain_rollout():
  config = tiny('video_swin')
  m = config.model
  m.depths, m.num_heads, m.window_size = (2,), (1,), (8, 8, 8)   # one window per map.
  model, params, video = random_model(config)
  _, maps = am.attention_maps(model, params, video)
  r = am.rollout(m, maps, video.shape)
  layers = [np.asarray(maps[f'stage_0/block_{j}/MultiHeadDotProductAttention_0'][0],
                       np.float64).mean(1) for j in range(2)]
  n = layers[0].shape[-1]
  v = full_rollout(layers, np.full((video.shape[0], n), 1.0 / n))
  np.testing.assert_allclose(r.tokens.reshape(video.shape[0], -1),
                             v / v.sum(1, keepdims=True), atol=1e-12)


def test_to_pixels_spreads_mass_per_footprint():
  tokens = np.arange(8, dtype=np.float64).reshape(1, 2, 2, 2)
  pixels = am.to_pixels(tokens, (2, 4, 4), 4, 8, 8)
  assert pixels.shape == (1, 4, 8, 8)
  np.testing.assert_allclose(pixels[0, 2:, 4:, :4], 6 / 32)   # token (1, 1, 0).
  np.testing.assert_allclose(pixels.sum(), tokens.sum())


def test_divided_timesformer_rollout_equals_the_full_matrix_product():
  config = tiny('timesformer')
  config.model.num_layers = 2
  model, params, video = random_model(config)
  _, maps = am.attention_maps(model, params, video)
  r = am.rollout(config.model, maps, video.shape)
  b, (t, h, w) = video.shape[0], r.tokens.shape[1:]
  s, n = h * w, 1 + t * h * w
  layers = []
  for i in range(2):
    block = f'encoderblock_{i}/'
    time = np.zeros((b, n, n))
    time[:, 0, 0] = 1.0   # CLS waits during temporal attention.
    time[:, 1:, 1:] = time_matrix(maps[block + 'MultiHeadDotProductAttention_time'][0],
                                  b, t, s)
    am_ = np.asarray(maps[block + 'MultiHeadDotProductAttention_0'][0],
                     np.float64).mean(1).reshape(b, t, 1 + s, 1 + s)
    space = np.zeros((b, n, n))
    for f in range(t):
      rows = slice(1 + f * s, 1 + (f + 1) * s)
      space[:, 0, 0] += am_[:, f, 0, 0] / t     # CLS: the mean of its per-frame outputs.
      space[:, 0, rows] = am_[:, f, 0, 1:] / t
      space[:, rows, 0] = am_[:, f, 1:, 0]
      space[:, rows, rows] = am_[:, f, 1:, 1:]
    layers += [time, space]
  readout = np.zeros((b, n))
  readout[:, 0] = 1.0
  v = full_rollout(layers, readout)[:, 1:]
  np.testing.assert_allclose(r.tokens.reshape(b, -1), v / v.sum(1, keepdims=True),
                             atol=1e-12)
