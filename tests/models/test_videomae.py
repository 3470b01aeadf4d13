"""Masked video autoencoding (models/videomae.py): masks, token gather/scatter, targets
and loss against hand computations, and the encoder's cost at 90% masking."""
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vivit_jax import config as vc
from vivit_jax import models
from vivit_jax.models import cost, videomae

CONFIGS = pathlib.Path(__file__).parents[2] / 'configs'
GRID = (4, 6, 5)          # n_t, n_h, n_w: S = 30 positions, N = 120 tokens.


def tiny_config(**overrides):
  """A VideoMAE on 4x8x8 clips, tubelets 2x4x4: grid (2, 2, 2); VideoMAE's tube masking
  at 0.9 and normalised targets unless `overrides` say otherwise."""
  c = vc.load_config(CONFIGS / 'synthetic/videomae.py', 'tiny,tube')
  c.model.update({'norm_pix_loss': True, **overrides})
  vc.validate_config(c)
  return c


def run(model, video, seed=0):
  params = model.init(jax.random.key(1), video)['params']
  return params, model.apply({'params': params}, video,
                             rngs={'masking': jax.random.key(seed)})


@pytest.mark.parametrize('ratio', [0.9, 0.75, 0.5])
def test_tube_masks_have_the_exact_count_and_the_same_positions_at_every_time(ratio):
  visible, masked = videomae.mask_tokens(jax.random.key(0), 8, GRID, ratio, 'tube')
  n_t, s = GRID[0], GRID[1] * GRID[2]
  per_frame = round(ratio * s)
  assert masked.shape == (8, n_t * per_frame) and visible.shape == (8, n_t * (s - per_frame))
  mask = np.asarray(videomae.token_mask(masked, n_t * s)).reshape(8, n_t, s)
  assert (mask.sum(axis=(1, 2)) == n_t * per_frame).all()
  assert (mask == mask[:, :1]).all()             # the same spatial mask at every t.
  assert len({m.tobytes() for m in mask[:, 0]}) > 1   # but another one per clip.
  # visible and masked ids: ascending, together a permutation of range(N).
  ids = np.concatenate([visible, masked], axis=1)
  assert (np.sort(ids, axis=1) == np.arange(n_t * s)).all()
  assert (np.diff(np.asarray(masked), axis=1) > 0).all()
  assert (np.diff(np.asarray(visible), axis=1) > 0).all()


def test_random_masks_have_the_exact_count_and_differ_over_time():
  n = int(np.prod(GRID))
  visible, masked = videomae.mask_tokens(jax.random.key(0), 8, GRID, 0.9, 'random')
  assert masked.shape == (8, round(0.9 * n)) and visible.shape == (8, n - round(0.9 * n))
  mask = np.asarray(videomae.token_mask(masked, n)).reshape(8, GRID[0], -1)
  assert not (mask == mask[:, :1]).all()   # space-time masking: not tubes.


def test_masked_count_keeps_one_token_of_each_kind():
  assert videomae.num_masked(4, 0.9) == 3 and videomae.num_masked(4, 0.1) == 1
  assert videomae.num_masked(196, 0.9) == 176     # VideoMAE ViT-B/16: 176 of 196 per frame.


def test_masks_are_deterministic_in_the_rng():
  a = videomae.mask_tokens(jax.random.key(3), 4, GRID, 0.9, 'tube')
  b = videomae.mask_tokens(jax.random.key(3), 4, GRID, 0.9, 'tube')
  c = videomae.mask_tokens(jax.random.key(4), 4, GRID, 0.9, 'tube')
  assert all((np.asarray(x) == np.asarray(y)).all() for x, y in zip(a, b))
  assert not (np.asarray(a[1]) == np.asarray(c[1])).all()
  # ... and so are the model's masks and outputs, given its 'masking' rng.
  model = models.create_model(tiny_config().model, 10)
  video = jax.random.normal(jax.random.key(0), (4, 4, 8, 8, 3))
  params, out = run(model, video, seed=5)
  again = model.apply({'params': params}, video, rngs={'masking': jax.random.key(5)})
  other = model.apply({'params': params}, video, rngs={'masking': jax.random.key(6)})
  np.testing.assert_array_equal(out['pred'], again['pred'])
  assert not (np.asarray(out['mask']) == np.asarray(other['mask'])).all()


def test_gather_then_scatter_is_the_identity():
  x = jax.random.normal(jax.random.key(0), (3, int(np.prod(GRID)), 7))
  visible_ids, masked_ids = videomae.mask_tokens(jax.random.key(1), 3, GRID, 0.75, 'random')
  visible = videomae.take_tokens(x, visible_ids)
  masked = videomae.take_tokens(x, masked_ids)
  np.testing.assert_array_equal(videomae.merge_tokens(visible, masked, visible_ids,
                                                      masked_ids), x)
  # and the rows taken are the ones named.
  np.testing.assert_array_equal(visible[1, 2], x[1, int(visible_ids[1, 2])])


def test_tubelet_pixels_are_what_the_tubelet_embedding_multiplies():
  video = jax.random.normal(jax.random.key(0), (2, 4, 8, 12, 3))
  pixels = videomae.tubelet_pixels(video, (2, 4, 4))          # [2, 2*2*3, 96]
  np.testing.assert_array_equal(videomae.tubelet_video(pixels, (2, 2, 3), (2, 4, 4)), video)
  # token (t=1, h=0, w=2) = frames 2:4, rows 0:4, cols 8:12.
  np.testing.assert_array_equal(pixels[0, 1 * 6 + 0 * 3 + 2],
                                np.asarray(video)[0, 2:4, 0:4, 8:12].reshape(-1))
  # The tubelet embedding is these pixels times its flattened kernel.
  conv = videomae.embeddings.PatchConv(16, (2, 4, 4), (2, 4, 4))
  variables = conv.init(jax.random.key(0), video)
  kernel = variables['params']['kernel']                        # [2, 4, 4, 3, 16]
  np.testing.assert_allclose(
      (pixels @ kernel.reshape(-1, 16)).reshape(2, 2, 2, 3, 16) + variables['params']['bias'],
      conv.apply(variables, video), atol=1e-5)


def hand_target(video, token, grid, tubelet, norm):
  """Tubelet `token` of one clip [T, H, W, C] sliced out by hand (numpy), normalised per
  channel over its pixels with the unbiased std when `norm`."""
  (_, n_h, n_w), (t, ph, pw) = grid, tubelet
  it, rest = divmod(token, n_h * n_w)
  ih, iw = divmod(rest, n_w)
  x = np.asarray(video)[it * t:(it + 1) * t, ih * ph:(ih + 1) * ph, iw * pw:(iw + 1) * pw]
  x = x.reshape(-1, x.shape[-1]).astype(np.float64)
  if norm:
    x = (x - x.mean(0)) / (x.std(0, ddof=1) + 1e-6)
  return x.reshape(-1)


@pytest.mark.parametrize('norm', [True, False])
def test_targets_are_the_masked_tubelets_and_the_loss_their_mse(norm):
  model = models.create_model(tiny_config(norm_pix_loss=norm).model, 10)
  video = jax.random.normal(jax.random.key(0), (3, 4, 8, 8, 3)) * 2 + 1
  _, out = run(model, video)
  masked_ids = np.asarray(out['masked_ids'])
  assert masked_ids.shape == (3, 6) and np.asarray(out['mask']).sum() == 18
  for b in range(3):
    for j, token in enumerate(masked_ids[b]):
      np.testing.assert_allclose(out['target'][b, j],
                                 hand_target(video[b], token, (2, 2, 2), (2, 4, 4), norm),
                                 rtol=1e-4, atol=1e-4)
  pred, target = np.asarray(out['pred'], np.float64), np.asarray(out['target'], np.float64)
  hand = np.mean([np.mean((pred[b] - target[b]) ** 2) for b in range(3)])
  np.testing.assert_allclose(videomae.reconstruction_loss(out), hand, rtol=1e-5)


def test_only_masked_tubelets_enter_the_loss_as_targets():
  """Changing a visible tubelet's pixels leaves the targets alone (it changes the
  prediction through the encoder); changing a masked one changes its target."""
  model = models.create_model(tiny_config().model, 10)
  video = np.asarray(jax.random.normal(jax.random.key(0), (1, 4, 8, 8, 3)))
  params, out = run(model, video)
  apply = lambda v: model.apply({'params': params}, v, rngs={'masking': jax.random.key(0)})
  # tube masking on a 2x2x2 grid: 1 of 4 positions visible. Token -> (t, h, w) pixels.
  first_visible, first_masked = int(out['visible_ids'][0, 0]), int(out['masked_ids'][0, 0])

  def bumped(token):
    it, rest = divmod(token, 4)
    ih, iw = divmod(rest, 2)
    v = video.copy()
    # new pixels (not an affine change, which the per-tubelet normalisation removes).
    v[0, 2 * it:2 * it + 2, 4 * ih:4 * ih + 4, 4 * iw:4 * iw + 4] = np.random.default_rng(
        token).normal(size=(2, 4, 4, 3))
    return apply(v)
  vis = bumped(first_visible)
  np.testing.assert_array_equal(vis['target'], out['target'])
  assert not np.allclose(vis['pred'], out['pred'])
  msk = bumped(first_masked)
  assert not np.allclose(msk['target'][0, 0], out['target'][0, 0])
  np.testing.assert_array_equal(msk['target'][0, 1:], out['target'][0, 1:])


def test_norm_pix_target_ignores_the_datasets_per_channel_normalisation():
  model = models.create_model(tiny_config().model, 10)
  video = jax.random.uniform(jax.random.key(0), (2, 4, 8, 8, 3))
  params, out = run(model, video)
  scaled = model.apply({'params': params}, (video - jnp.array([0.4, 0.5, 0.6]))
                       / jnp.array([0.2, 0.25, 0.3]), rngs={'masking': jax.random.key(0)})
  np.testing.assert_allclose(scaled['target'], out['target'], atol=2e-3)


def test_decoder_position_table_is_the_transformer_sinusoid():
  table = videomae.sinusoid_table(50, 8)
  p, j = 7, 5   # odd feature: cos(p / 10000^(2*2/8)).
  np.testing.assert_allclose(table[p, j], np.cos(p / 10000 ** (4 / 8)), rtol=1e-6)
  np.testing.assert_allclose(table[p, 4], np.sin(p / 10000 ** (4 / 8)), rtol=1e-6)


def vit_b_pair(mask_ratio):
  """(VideoMAE ViT-B/16x2 encoder at `mask_ratio`, the same-size ViViT Model 1)."""
  c = vc.load_config(CONFIGS / 'pretrain/videomae_vit_b_k400.py')
  c.model.mask_ratio = mask_ratio
  ft = vc.load_config(CONFIGS / 'pretrain/videomae_vit_b_k400_finetune.py')
  return videomae.build(c.model, encoder_only=True), models.create_model(ft.model, 400)


def test_encoder_flops_scale_with_the_visible_fraction():
  shape = (1, 16, 224, 224, 3)
  _, full_model = vit_b_pair(0.9)
  full = cost.forward_gflops(full_model, shape)
  assert 170 < full < 185                         # VideoMAE ViT-B 16x224: 180 GFLOPs.
  for ratio in (0.9, 0.5):
    encoder, _ = vit_b_pair(ratio)
    visible = 1 - videomae.num_masked(196, ratio) / 196
    fraction = cost.forward_gflops(encoder, shape) / full
    # The linear layers scale with the visible tokens, attention with their square
    # (below), the tubelet embedding of all tubelets not at all (above).
    assert visible - 0.08 < fraction < visible + 0.02, (ratio, fraction, visible)
  assert fraction > 0.4


@pytest.mark.parametrize('change, message', [
    (dict(mask_ratio=1.0), r'config\.model\.mask_ratio=1\.0'),
    (dict(masking='tubes'), r"config\.model\.masking='tubes'"),
    (dict(decoder_num_heads=3), r'config\.model\.decoder_num_heads=3 .*decoder_hidden_size=16'),
    (dict(decoder_num_layers=0), r'config\.model\.decoder_num_layers=0'),
    (dict(mask_ratio=0.0), r'config\.model\.mask_ratio=0\.0'),
    (dict(embedding='uniform_frame'), r"config\.model\.embedding='uniform_frame'"),
])
def test_bad_videomae_fields_are_refused_by_name(change, message):
  c = tiny_config()
  c.model.update(change)
  with pytest.raises(vc.ConfigError, match=message):
    vc.validate_config(c)


def test_task_and_model_must_agree():
  c = tiny_config()
  c.task = 'classification'
  with pytest.raises(vc.ConfigError, match=r"config\.task='classification'.*videomae"):
    vc.validate_config(c)
  c.task = 'pretraining'
  with pytest.raises(vc.ConfigError, match=r"config\.task='pretraining'"):
    vc.validate_config(c)
  classifier = vc.load_config(CONFIGS / 'synthetic/vivit_model1.py', 'tiny')
  classifier.task = 'masked_pretraining'
  with pytest.raises(vc.ConfigError, match=r"config\.task='masked_pretraining'"):
    vc.validate_config(classifier)


@pytest.mark.parametrize('path, arg', [
    *[(p, None) for p in sorted((CONFIGS / 'pretrain').glob('*.py'))],
    *[(CONFIGS / 'synthetic/videomae.py', a) for a in (None, 'tiny', 'tube', 'tiny,tube')]],
    ids=str)
def test_every_pretraining_config_validates(path, arg):
  from vivit_jax.train import optim, setup
  config = vc.load_config(path, arg)
  # What a run checks before any compute, but the data splits (no Kinetics shards here).
  vc.validate_config(config)
  setup.check_trainer_config(config)
  optim.create_optimizer(config, config.trainer.num_train_steps)
  if config.model.name == 'videomae':
    assert config.task == 'masked_pretraining'
    # The paper configs: VideoMAE's tubes, MAE-ST's random; the synthetic demo random
    # (tubes with 'tube').
    synthetic = 'synthetic' in str(path)
    tube = 'tube' in (arg or '') if synthetic else 'mae_st' not in str(path)
    assert config.model.masking == ('tube' if tube else 'random')


@pytest.mark.parametrize('norm', [True, False])
def test_perfect_predictions_reconstruct_the_input(norm):
  model = models.create_model(tiny_config(norm_pix_loss=norm).model, 10)
  video = jax.random.normal(jax.random.key(0), (2, 4, 8, 8, 3)) + 0.5
  _, out = run(model, video)
  masked, recon = videomae.reconstruct(video, dict(out, pred=out['target']), (2, 4, 4), norm)
  np.testing.assert_allclose(recon, video, atol=1e-4)
  pixel_mask = np.asarray(videomae.tubelet_video(
      jnp.repeat(out['mask'][..., None], 96, -1), (2, 2, 2), (2, 4, 4)))
  assert pixel_mask.mean() == 0.75         # 3 of the 4 positions, at both time indices.
  assert not np.asarray(masked)[pixel_mask].any()
  np.testing.assert_array_equal(np.asarray(masked)[~pixel_mask], np.asarray(video)[~pixel_mask])
