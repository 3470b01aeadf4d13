"""The optimiser against hand-computed updates: coupled SGD / decoupled AdamW decay, decay
masks by parameter name for every family, lr multipliers and layer decay; batch CutMix."""
import pathlib

import jax
import ml_collections
import jax.numpy as jnp
import numpy as np
import pytest

from vivit_jax import config as vc
from vivit_jax import models
from vivit_jax.errors import ConfigError
from vivit_jax.train import optim, steps

CONFIGS = pathlib.Path(__file__).parents[2] / 'configs'


def opt_config(name, lr, wd, **optimizer):
  c = vc.default_config()
  c.optimizer.name, c.optimizer.weight_decay = name, wd
  for k, v in optimizer.items():
    setattr(c.optimizer, k, v)
  c.schedule.name, c.schedule.base_lr, c.schedule.warmup_steps = 'constant', lr, 0
  return c


def run_zero_grads(config, params, num_steps):
  tx, _ = optim.create_optimizer(config, num_steps)
  zeros = jax.tree.map(jnp.zeros_like, params)

  def body(carry, _):
    p, s = carry
    updates, s = tx.update(zeros, s, p)
    return (jax.tree.map(jnp.add, p, updates), s), None
  (params, _), _ = jax.lax.scan(body, (params, tx.init(params)), None, length=num_steps)
  return params


W0 = np.array([[1.0, -2.0], [0.5, 3.0]])
B0 = np.array([0.7, -0.4])


def test_sgd_weight_decay_enters_momentum_like_pytorch():
  lr, wd, mu, n = 0.005, 1e-4, 0.9, 1000
  with jax.enable_x64(True):
    params = {'dense': {'kernel': jnp.asarray(W0), 'bias': jnp.asarray(B0)}}
    out = run_zero_grads(opt_config('sgd', lr, wd, momentum=mu), params, n)
    w = np.asarray(out['dense']['kernel'])
    b = np.asarray(out['dense']['bias'])
  # torch.optim.SGD (dampening 0): g = grad + wd * p; buf = mu * buf + g; p -= lr * buf.
  p, buf = W0.copy(), np.zeros_like(W0)
  for _ in range(n):
    buf = mu * buf + (0.0 + wd * p)
    p = p - lr * buf
  np.testing.assert_allclose(w, p, rtol=1e-6, atol=0)
  shrink = 1 - w / W0
  np.testing.assert_allclose(shrink, 4.9e-3, atol=1e-4)   # issue 22: reference ~4.9e-3
  assert (shrink > 5 * n * lr * wd).all()                  # decoupled would give ~5.0e-4
  np.testing.assert_array_equal(b, B0)                      # biases: default rule, no decay


def test_adamw_weight_decay_is_decoupled():
  lr, wd, n = 1e-3, 0.05, 1000
  with jax.enable_x64(True):
    params = {'dense': {'kernel': jnp.asarray(W0), 'bias': jnp.asarray(B0)}}
    out = run_zero_grads(opt_config('adamw', lr, wd), params, n)
    w = np.asarray(out['dense']['kernel'])
    b = np.asarray(out['dense']['bias'])
  # torch.optim.AdamW: p *= 1 - lr * wd, then the Adam step (0 for zero gradients).
  np.testing.assert_allclose(w, W0 * (1 - lr * wd) ** n, rtol=1e-6, atol=0)
  np.testing.assert_array_equal(b, B0)


def test_sgd_clips_the_raw_gradient_then_adds_decay():
  lr, wd = 0.1, 0.01
  c = opt_config('sgd', lr, wd, momentum=0.9, grad_clip_norm=1.0, no_decay=())
  params = {'w': jnp.asarray(W0, jnp.float32)}
  grads = {'w': jnp.asarray([[30.0, 0.0], [0.0, 40.0]])}   # norm 50 -> scaled by 1/50
  tx, _ = optim.create_optimizer(c, 10)
  updates, _ = tx.update(grads, tx.init(params), params)
  expected = -lr * (np.asarray(grads['w']) / 50.0 + wd * W0)
  np.testing.assert_allclose(updates['w'], expected, rtol=1e-6)


# -- decay masks and lr multipliers, by parameter name, for every family -------------

def family_params(synthetic_name):
  """Abstract params of the tiny synthetic config (same names as the paper sizes)."""
  c = vc.load_config(CONFIGS / 'synthetic' / f'{synthetic_name}.py', 'tiny')
  d = c.dataset
  model = models.create_model(c.model, d.num_classes)
  x = jax.ShapeDtypeStruct((1, d.num_frames, d.crop_size, d.crop_size, 3), jnp.float32)
  rngs = {'params': jax.random.key(0), 'dropout': jax.random.key(0)}
  return jax.eval_shape(lambda v: model.init(rngs, v, train=False), x)['params']


def by_name(tree):
  return {optim._path_str(p): v for p, v in jax.tree_util.tree_leaves_with_path(tree)}


def decayed_names(params, kinetics_config):
  c = vc.load_config(CONFIGS / 'kinetics400' / kinetics_config)
  mask = by_name(optim.weight_decay_mask(params, c.optimizer.no_decay))
  return {n for n, d in mask.items() if d}, c


def test_timesformer_decays_every_parameter():
  params = family_params('timesformer')
  names = set(by_name(params))
  decayed, c = decayed_names(params, 'timesformer_divided_space_time.py')
  assert decayed == names
  assert {'time_embed', 'pos_embed', 'cls', 'encoder_norm/scale', 'embedding/bias'} <= names
  assert c.optimizer.name == 'sgd' and c.optimizer.grad_clip_norm is None


@pytest.mark.parametrize('synthetic, config', [('mvit', 'mvit_b_16x4.py'),
                                               ('mvit', 'mvit_b_32x3.py'),
                                               ('mvitv2', 'mvitv2_s_16x4.py')])
def test_mvit_decays_all_but_one_dimensional_params(synthetic, config):
  params = family_params(synthetic)
  shapes = by_name(params)
  decayed, _ = decayed_names(params, config)
  # PySlowFast: 1-D or name ending '.bias' (flax's q/k/v biases are [heads, head_dim]).
  assert decayed == {n for n in shapes if n.split('/')[-1] not in ('bias', 'scale')}
  assert all(len(shapes[n].shape) > 1 for n in decayed)
  assert 'cls_token' in decayed
  if synthetic == 'mvit':
    assert {'pos_embed_spatial', 'pos_embed_temporal', 'pos_embed_class'} <= decayed
  else:
    rel = {n for n in shapes if n.split('/')[-1] in ('rel_pos_t', 'rel_pos_h', 'rel_pos_w')}
    assert len(rel) == 6 and rel <= decayed     # 2 blocks x {t, h, w}
  assert 'block_0/LayerNorm_0/scale' not in decayed and 'patch_embed/bias' not in decayed


def test_swin_mask_and_backbone_lr_follow_mmcv_custom_keys():
  params = family_params('video_swin')
  names = set(by_name(params))
  decayed, c = decayed_names(params, 'swin_t.py')
  table = {n for n in names if n.endswith('relative_position_bias_table')}
  assert len(table) == 4 and decayed == names - table
  assert {'stage_0/block_0/LayerNorm_0/scale', 'embedding_norm/bias',
          'output_projection/bias', 'stage_0/merge/reduction/kernel'} <= decayed
  mult = by_name(optim.parameter_lr_multipliers(params, c.optimizer.lr_multipliers))
  for name, m in mult.items():
    expected = 1.0 if name in table or name.startswith('output_projection/') else 0.1
    assert m == expected, name
  assert c.optimizer.grad_clip_norm is None


@pytest.mark.parametrize('synthetic, config', [
    ('vivit_model1', 'vivit_b16x2_spatio_temporal.py'), ('vtn', 'vtn_vit_b.py')])
def test_default_rule_skips_biases_norms_embeddings(synthetic, config):
  params = family_params(synthetic)
  decayed, c = decayed_names(params, config)
  assert c.optimizer.no_decay is None
  assert decayed == {n for n in by_name(params)
                     if n.endswith('/kernel') and 'pos' not in n}


# -- layer-wise lr decay -------------------------------------------------------------

def vivit_params(num_layers):
  c = vc.default_config()
  m = c.model
  m.attention_type, m.classifier = 'spatio_temporal', 'token'
  m.hidden_size, m.num_layers, m.num_heads, m.mlp_dim = 8, num_layers, 2, 16
  m.patch_size, m.temporal_patch_size = (4, 4), 2
  model = models.create_model(m, 3)
  x = jax.ShapeDtypeStruct((1, 4, 8, 8, 3), jnp.float32)
  return jax.eval_shape(lambda v: model.init(jax.random.key(0), v, train=False), x)['params']


def test_layer_decay_and_multipliers_scale_each_update():
  params = jax.tree.map(lambda s: jnp.ones(s.shape, s.dtype), vivit_params(3))
  d, lr = 0.5, 0.1
  c = opt_config('sgd', lr, 0.0, momentum=0.0, grad_clip_norm=None, layer_decay=d,
                 lr_multipliers=(('output_projection/bias', 3.0), ('output_', 2.0)))
  tx, _ = optim.create_optimizer(c, 10)
  updates, _ = tx.update(params, tx.init(params), params)    # gradient 1 everywhere
  u = {n: float(np.asarray(v).ravel()[0]) for n, v in by_name(updates).items()}
  expected = {'embedding/kernel': d ** 4, 'embedding/bias': d ** 4, 'cls': d ** 4,
              'Transformer/posembed_input/pos_embedding': d ** 4,
              'Transformer/encoderblock_0/LayerNorm_0/scale': d ** 3,
              'Transformer/encoderblock_0/MlpBlock_0/Dense_0/kernel': d ** 3,
              'Transformer/encoderblock_1/MultiHeadDotProductAttention_0/query/kernel': d ** 2,
              'Transformer/encoderblock_2/LayerNorm_1/bias': d,
              'Transformer/encoder_norm/scale': 1.0,
              'output_projection/kernel': 2.0, 'output_projection/bias': 3.0}
  for name, mult in expected.items():
    assert u[name] == pytest.approx(-lr * mult, rel=1e-6), name


def test_layer_ids_of_each_family():
  ids, n = optim.layer_ids(list(by_name(family_params('timesformer'))))
  assert n == 1 and ids['time_embed'] == ids['pos_embed'] == ids['cls'] == 0
  assert ids['encoderblock_0/temporal_fc/kernel'] == 1 and ids['encoder_norm/scale'] == 2
  ids, n = optim.layer_ids(list(by_name(family_params('mvitv2'))))
  assert n == 2 and ids['patch_embed/kernel'] == ids['cls_token'] == 0
  assert ids['block_1/proj/kernel'] == 2 and ids['output_projection/kernel'] == 3
  ids, n = optim.layer_ids(list(by_name(family_params('video_swin'))))
  assert n == 4 and ids['embedding_norm/scale'] == 0
  assert ids['stage_0/block_1/LayerNorm_0/scale'] == 2
  assert ids['stage_0/merge/reduction/kernel'] == 2       # last block of its stage
  assert ids['stage_1/block_0/LayerNorm_0/scale'] == 3 and ids['encoder_norm/bias'] == 5
  with pytest.raises(ConfigError, match=r'config.optimizer.layer_decay=0.75 is invalid'):
    optim.layer_ids(list(by_name(family_params('vtn'))), 0.75)   # two encoders


@pytest.mark.parametrize('field, value', [
    ('no_decay', 'bias'), ('no_decay', ('(',)), ('layer_decay', 1.5), ('layer_decay', 0.0),
    ('lr_multipliers', (('x',),)), ('lr_multipliers', (('x', -1.0),)),
    ('weight_decay', -1.0), ('name', 'lamb')])
def test_bad_optimizer_fields_name_the_field(field, value):
  c = opt_config('sgd', 0.1, 0.0)
  c.optimizer = ml_collections.ConfigDict(c.optimizer.to_dict())  # untyped: any value
  c.optimizer[field] = value
  with pytest.raises(ConfigError, match=f'config.optimizer.{field}='):
    optim.create_optimizer(c, 10)


# -- CutMix with mixup switching -------------------------------------------------------

def test_cutmix_box_hand_computed():
  # lam 0.75: side ratio sqrt(0.25) = 0.5 -> cut 5 of 10, half 2: rows cy-2 : cy+2.
  box = lambda cy, cx: tuple(int(v) for v in steps.cutmix_box(jnp.float32(0.75), cy, cx,
                                                               10, 10))
  assert box(5, 5) == (3, 7, 3, 7)          # 16 pixels pasted: label weight 0.16
  assert box(1, 5) == (0, 3, 3, 7)          # clipped at the top: 12 pixels, weight 0.12
  assert box(9, 0) == (7, 10, 0, 2)         # clipped twice: 6 pixels


def test_cutmix_pastes_one_box_on_every_frame_with_area_label():
  b, t, h, w = 4, 3, 8, 8
  video = jnp.broadcast_to(jnp.arange(1.0, b + 1)[:, None, None, None, None],
                           (b, t, h, w, 1))
  targets = jnp.eye(b)
  seen_clipped = False
  for seed in range(20):
    out, y, lam = steps.cutmix(jax.random.key(seed), video, targets, alpha=1.0)
    out, y = np.asarray(out), np.asarray(y)
    pasted = out != np.asarray(video)                         # [B, T, H, W, 1]
    assert (pasted == pasted[:1, :1]).all()                   # same box everywhere
    np.testing.assert_array_equal(out[pasted], np.asarray(video[::-1])[pasted])
    rows, cols = np.nonzero(pasted[0, 0, :, :, 0])
    area = pasted[0, 0].sum()
    if area:
      assert area == (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)
      seen_clipped |= rows.min() == 0 or cols.min() == 0 or rows.max() == h - 1
    frac = area / (h * w)
    assert float(lam) == pytest.approx(1 - frac, abs=1e-6)
    for i in range(b):
      assert y[i, i] == pytest.approx(1 - frac, abs=1e-6)
      assert y[i, b - 1 - i] == pytest.approx(frac, abs=1e-6)
    again = steps.cutmix(jax.random.key(seed), video, targets, alpha=1.0)[0]
    np.testing.assert_array_equal(out, again)                 # deterministic in the rng
  assert seen_clipped


def test_switch_prob_chooses_cutmix_or_mixup():
  video = jnp.broadcast_to(jnp.arange(1.0, 5)[:, None, None, None, None], (4, 2, 8, 8, 1))
  for seed in range(5):
    rng = jax.random.key(seed)
    cut = np.asarray(steps.mix_batch(rng, video, jnp.eye(4), 0.8, 1.0, 1.0)[0])
    assert np.isin(cut, np.arange(1.0, 5)).all()          # pixels copied, never blended
    mixed, _, lam = steps.mix_batch(rng, video, jnp.eye(4), 0.8, 1.0, 0.0)
    if float(lam) < 1.0:
      assert not np.isin(np.asarray(mixed), np.arange(1.0, 5)).any()
  assert np.array_equal(steps.mix_batch(rng, video, jnp.eye(4), 0.8, 0.0, 1.0)[0],
                        steps.mixup(rng, video, jnp.eye(4), 0.8)[0])   # cutmix off


@pytest.mark.parametrize('field, value', [('cutmix_alpha', -1.0),
                                          ('mixup_switch_prob', 1.5)])
def test_bad_mixing_fields_name_the_field(field, value):
  c = vc.default_config()
  with c.unlocked():
    c.trainer[field] = value
  with pytest.raises(ConfigError, match=f'config.trainer.{field}='):
    steps.check(c)
  steps.check(vc.default_config())


def test_train_step_with_cutmix_and_mixup_is_deterministic():
  def apply_fn(variables, video, train=False, rngs=None):
    del train, rngs
    return video.mean(axis=(1, 2, 3)) @ variables['params']['w']     # [B, C] @ [C, K]
  c = opt_config('sgd', 0.1, 1e-4, momentum=0.9)
  tx, lr_fn = optim.create_optimizer(c, 10)
  state = steps.create_train_state({'w': jnp.ones((3, 4)) * 0.1}, tx)
  rng = np.random.default_rng(0)
  batch = {'video': jnp.asarray(rng.normal(size=(4, 2, 8, 8, 3)), jnp.float32),
           'label': jnp.asarray([0, 1, 2, 3])}
  step = jax.jit(lambda s, b: steps.train_step(
      s, b, jax.random.key(1), apply_fn=apply_fn, tx=tx, lr_fn=lr_fn, num_classes=4,
      mixup_alpha=0.8, cutmix_alpha=1.0, mixup_switch_prob=0.5))
  s1, m1 = step(state, batch)
  s2, m2 = step(state, batch)
  assert np.isfinite(float(m1['loss'])) and float(m1['loss']) == float(m2['loss'])
  np.testing.assert_array_equal(s1.params['w'], s2.params['w'])


# -- trainer.freeze (linear probing) ----------------------------------------------------

def _frozen_run(freeze, num_steps=3, **optimizer):
  """(params before, params after `num_steps` real train steps) of a tiny ViViT under
  AdamW with decay, clipping, layer decay and multipliers (all inside the mask)."""
  c = opt_config('adamw', 1e-2, 0.1, grad_clip_norm=1.0, layer_decay=0.8,
                 lr_multipliers=(('embedding', 2.0),), **optimizer)
  m = c.model
  m.hidden_size, m.num_layers, m.num_heads, m.mlp_dim = 16, 1, 2, 32
  m.patch_size, m.temporal_patch_size = (4, 4), 2
  c.trainer.freeze = freeze
  model = models.create_model(m, 3)
  params = model.init(jax.random.key(0), jnp.zeros((1, 4, 8, 8, 3)))['params']
  tx, lr_fn = optim.create_optimizer(c, num_steps)
  step = jax.jit(lambda s, b: steps.train_step(s, b, jax.random.key(1), apply_fn=model.apply,
                                               tx=tx, lr_fn=lr_fn, num_classes=3)[0])
  state = steps.create_train_state(params, tx)
  rng = np.random.default_rng(0)
  for _ in range(num_steps):
    state = step(state, {'video': rng.normal(size=(4, 4, 8, 8, 3)).astype(np.float32),
                         'label': rng.integers(0, 3, 4).astype(np.int32)})
  return by_name(params), by_name(state.params)


def test_freeze_backbone_trains_only_the_head():
  before, after = _frozen_run('backbone')
  for name in before:
    if name.startswith('output_projection/'):
      assert not np.allclose(before[name], after[name]), name
    else:
      np.testing.assert_array_equal(before[name], after[name], err_msg=name)


def test_freeze_regexes_freeze_the_matching_paths():
  before, after = _frozen_run(['^Transformer/', '^cls'])
  frozen = [n for n in before if n.startswith(('Transformer/', 'cls'))]
  assert frozen and len(frozen) < len(before)
  for name in before:
    if name in frozen:
      np.testing.assert_array_equal(before[name], after[name], err_msg=name)
    else:
      assert not np.array_equal(before[name], after[name]), name


@pytest.mark.parametrize('value', ['head', ['('], 7, []])
def test_bad_freeze_names_the_field(value):
  c = opt_config('sgd', 0.1, 0.0)
  c.trainer.freeze = value
  with pytest.raises(ConfigError, match='config.trainer.freeze='):
    optim.create_optimizer(c, 10)


def test_freezing_everything_is_refused():
  c = opt_config('sgd', 0.1, 0.0)
  c.trainer.freeze = ['.']
  tx, _ = optim.create_optimizer(c, 10)
  with pytest.raises(ConfigError, match=r'config.trainer.freeze=.*freezes 2 of 2'):
    tx.init({'a': jnp.zeros(2), 'b': jnp.ones(3)})
