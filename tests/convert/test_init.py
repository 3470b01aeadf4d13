"""Initialising video models from image ViT checkpoints (`config.init_from`).

Value checks that hold exactly by construction of each rule:
  * Model 1 (GAP) and divided / space-only TimeSformer from a ViT, on a video of
    identical frames, give the ViT's logits on that frame (keys repeated the same number
    of times leave softmax attention unchanged; a single CLS key among repeated patch
    keys would not, so Model 1 is checked with GAP);
  * Model 3 with zero-initialised temporal attention and Model 2's average-pool baseline
    give the mean over frames of the ViT's logits, for any video.
"""
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from vivit_jax import config as vc
from vivit_jax import convert, models
from vivit_jax.convert import inflate, vit_npz
from vivit_jax.convert.common import flatten, unflatten

from train_helpers import REPO

T, CROP, K = 4, 8, 5


def tiny(model: ml_collections.ConfigDict, **fields):
  model.hidden_size, model.num_layers, model.num_heads, model.mlp_dim = 16, 2, 2, 32
  model.patch_size = (4, 4)
  model.update(fields)
  return model


def vit_config(classifier='token', crop=CROP, classes=K):
  c = vc.default_config()
  tiny(c.model, name='vit', classifier=classifier)
  c.dataset.num_frames, c.dataset.crop_size, c.dataset.num_classes = 1, crop, classes
  return c


def video_config(name='vivit', frames=T, crop=CROP, classes=K, **fields):
  c = vc.default_config()
  tiny(c.model, name=name, **fields)
  c.dataset.num_frames, c.dataset.crop_size, c.dataset.num_classes = frames, crop, classes
  vc.validate_config(c)
  return c


def random_params(config, seed=0):
  """Params of config's model: every leaf N(0, 0.3^2) (noise, not the trivial init)."""
  d = config.dataset
  model = models.create_model(config.model, d.num_classes)
  shape = ((1, d.crop_size, d.crop_size, 3) if config.model.name == 'vit' else
           (1, d.num_frames, d.crop_size, d.crop_size, 3))
  abstract = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros(shape))['params']
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda s: (0.3 * rng.standard_normal(s.shape)).astype(np.float32),
                      abstract)


def apply(config, params, x):
  model = models.create_model(config.model, config.dataset.num_classes)
  return np.asarray(jax.jit(lambda p, v: model.apply({'params': p}, v))(params, x))


def frames(seed=0, n=2, t=T, crop=CROP):
  return np.random.default_rng(seed).standard_normal((n, t, crop, crop, 3)).astype(np.float32)


def vit_logits_per_frame(vit_cfg, vit_params, x):
  b, t = x.shape[:2]
  logits = apply(vit_cfg, vit_params, x.reshape(b * t, *x.shape[2:]))
  return logits.reshape(b, t, -1)


def to_vision_transformer_npz(params, path):
  """Writes our ViT params with google-research/vision_transformer's names."""
  rename = {'MultiHeadDotProductAttention_0': 'MultiHeadDotProductAttention_1',
            'LayerNorm_1': 'LayerNorm_2', 'MlpBlock_0': 'MlpBlock_3'}
  flat = {}
  for k, v in flatten(params).items():
    parts = k.split('/')
    if parts[0] == 'output_projection':
      parts[0] = 'head'
    if len(parts) > 2 and parts[1].startswith('encoderblock_'):
      parts[2] = rename.get(parts[2], parts[2])
    flat['/'.join(parts)] = v
  np.savez(path, **flat)


def test_inflate_kernel_values():
  k = np.arange(2 * 2 * 3 * 4, dtype=np.float32).reshape(2, 2, 3, 4)
  central = inflate.inflate_kernel(k, 3, 'central_frame')
  np.testing.assert_array_equal(central[1], k)
  np.testing.assert_array_equal(central[[0, 2]], 0)
  average = inflate.inflate_kernel(k, 4, 'average')
  np.testing.assert_allclose(average, np.broadcast_to(k / 4, (4,) + k.shape))
  with pytest.raises(ValueError, match="kernel_init='mean'"):
    inflate.inflate_kernel(k, 2, 'mean')


def test_vit_npz_vision_transformer_and_big_vision_layouts(tmp_path):
  cfg = vit_config()
  params = random_params(cfg)
  to_vision_transformer_npz(params, tmp_path / 'vt.npz')
  config, loaded = convert.load_vit_npz(str(tmp_path / 'vt.npz'))
  m = config.model
  assert (m.name, m.hidden_size, m.num_layers, m.num_heads, m.mlp_dim, m.patch_size,
          m.classifier) == ('vit', 16, 2, 2, 32, (4, 4), 'token')
  assert (config.dataset.crop_size, config.dataset.num_classes) == (CROP, K)
  a, b = flatten(params), flatten(loaded)
  assert sorted(a) == sorted(b)
  for key in a:
    np.testing.assert_array_equal(a[key], b[key], err_msg=key)

  # big_vision: params/ prefix next to optimizer state, layers stacked by `scan`, and a
  # patch-only position embedding (added before CLS is prepended).
  bv = {}
  for key, value in a.items():
    key = key.replace('output_projection', 'head')
    if key == 'Transformer/posembed_input/pos_embedding':
      bv['params/pos_embedding'] = value[:, 1:]
      continue
    bv[f'params/{key}'] = value
  stacked = {}
  for key in [k for k in bv if '/encoderblock_' in k]:
    layer, rest = key.split('/encoderblock_')[1].split('/', 1)
    stacked.setdefault(rest, {})[int(layer)] = bv.pop(key)
  for rest, per_layer in stacked.items():
    bv[f'params/Transformer/encoderblock/{rest}'] = np.stack([per_layer[i] for i in (0, 1)])
  bv['opt/state/mu/embedding/kernel'] = np.ones(3, np.float32)
  np.savez(tmp_path / 'bv.npz', **bv)
  config, loaded = convert.load_vit_npz(str(tmp_path / 'bv.npz'))
  b = flatten(loaded)
  assert sorted(a) == sorted(b)
  pos = b['Transformer/posembed_input/pos_embedding']
  np.testing.assert_array_equal(pos[:, 0], 0)       # CLS gets no position embedding.
  np.testing.assert_array_equal(pos[:, 1:], a['Transformer/posembed_input/pos_embedding'][:, 1:])
  for key in a:
    if 'pos_embedding' not in key:
      np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_vit_npz_refuses_pickled_arrays(tmp_path):
  np.save(tmp_path / 'x.npy', np.array([{'a': 1}], dtype=object), allow_pickle=True)
  with open(tmp_path / 'x.npy', 'rb') as f:
    blob = f.read()
  import zipfile
  with zipfile.ZipFile(tmp_path / 'bad.npz', 'w') as z:
    z.writestr('embedding/kernel.npy', blob)
  with pytest.raises(ValueError, match='allow_pickle'):
    convert.load_vit_npz(str(tmp_path / 'bad.npz'))


@pytest.mark.parametrize('kernel_init', ['central_frame', 'average'])
def test_model1_from_vit_on_static_video_gives_vit_logits(kernel_init):
  vit_cfg = vit_config(classifier='gap')
  vit_params = random_params(vit_cfg)
  cfg = video_config(attention_type='spatio_temporal', embedding='tubelet',
                     temporal_patch_size=2, classifier='gap')
  cfg.init_from = vc.init_from_config(kernel_init=kernel_init)
  params, summary = convert.initialise(random_params(cfg, 1), vit_params, cfg,
                                       source_config=vit_cfg)
  actions = dict(summary)
  assert actions['embedding/kernel'] == 'inflated'
  assert actions['Transformer/posembed_input/pos_embedding'] == 'inflated'
  assert actions['output_projection/kernel'] == 'loaded'
  image = frames(0)[:, :1]
  static = np.repeat(image, T, axis=1)
  expected = apply(vit_cfg, vit_params, image[:, 0])
  np.testing.assert_allclose(apply(cfg, params, static), expected, atol=2e-5)
  # The position embedding is the image's, repeated over the 2 temporal indices.
  pos = flatten(params)['Transformer/posembed_input/pos_embedding']
  src = vit_params['Transformer']['posembed_input']['pos_embedding']
  np.testing.assert_array_equal(pos[:, :4], src)
  np.testing.assert_array_equal(pos[:, 4:8], src)


def test_model3_zero_temporal_attention_is_the_vit_per_frame():
  vit_cfg = vit_config(classifier='gap')
  vit_params = random_params(vit_cfg)
  cfg = video_config(attention_type='factorised_self_attention', embedding='uniform_frame',
                     temporal_patch_size=1, classifier='gap')
  cfg.init_from = vc.init_from_config(temporal_attention_init='zeros')
  params, summary = convert.initialise(random_params(cfg, 1), vit_params, cfg,
                                       source_config=vit_cfg)
  actions = dict(summary)
  blk = 'Transformer/encoderblock_0/'
  assert actions[blk + 'MultiHeadDotProductAttention_time/out/kernel'] == 'zeroed'
  assert actions[blk + 'MultiHeadDotProductAttention_space/query/kernel'] == 'loaded'
  x = frames(1)
  expected = vit_logits_per_frame(vit_cfg, vit_params, x).mean(1)
  np.testing.assert_allclose(apply(cfg, params, x), expected, atol=2e-5)
  # copy_spatial: the temporal attention is the spatial one.
  cfg.init_from.temporal_attention_init = 'copy_spatial'
  params, _ = convert.initialise(random_params(cfg, 1), vit_params, cfg,
                                 source_config=vit_cfg)
  f = flatten(params)
  np.testing.assert_array_equal(f[blk + 'MultiHeadDotProductAttention_time/value/kernel'],
                                f[blk + 'MultiHeadDotProductAttention_space/value/kernel'])


def test_model2_average_pool_is_the_mean_of_vit_logits():
  vit_cfg = vit_config()
  vit_params = random_params(vit_cfg)
  cfg = video_config(attention_type='factorised_encoder', embedding='uniform_frame',
                     temporal_patch_size=1, classifier='token', temporal_num_layers=0)
  params, summary = convert.initialise(random_params(cfg, 1), vit_params, cfg,
                                       source_config=vit_cfg)
  assert dict(summary)['cls_SpatialTransformer'] == 'loaded'
  x = frames(2)
  expected = vit_logits_per_frame(vit_cfg, vit_params, x).mean(1)
  np.testing.assert_allclose(apply(cfg, params, x), expected, atol=2e-5)


def test_model4_and_model2_temporal_encoder_actions():
  vit_cfg = vit_config()
  vit_params = random_params(vit_cfg)
  cfg = video_config(attention_type='factorised_dot_product', classifier='gap')
  _, summary = convert.initialise(random_params(cfg, 1), vit_params, cfg,
                                  source_config=vit_cfg)
  assert all(a in ('loaded', 'inflated', 'resized') for _, a in summary)
  cfg = video_config(attention_type='factorised_encoder', temporal_num_layers=1)
  _, summary = convert.initialise(random_params(cfg, 1), vit_params, cfg,
                                  source_config=vit_cfg)
  temporal = [a for p, a in summary if p.startswith(('TemporalTransformer',
                                                     'cls_TemporalTransformer'))]
  assert temporal and set(temporal) == {'fresh'}


def test_position_embedding_bilinear_resize_for_a_larger_crop():
  vit_cfg = vit_config()               # 8 px / 4 px patches: a 2x2 grid.
  vit_params = random_params(vit_cfg)
  cfg = video_config(crop=12, attention_type='spatio_temporal', classifier='token')
  params, summary = convert.initialise(random_params(cfg, 1), vit_params, cfg,
                                       source_config=vit_cfg)
  assert dict(summary)['Transformer/posembed_input/pos_embedding'] == 'resized'
  src = vit_params['Transformer']['posembed_input']['pos_embedding'][0, 1:].reshape(2, 2, -1)
  pos = flatten(params)['Transformer/posembed_input/pos_embedding'][0]
  grid = pos[1:].reshape(2, 3, 3, -1)   # 2 temporal indices of a 3x3 grid.
  # Half-pixel-centre bilinear 2 -> 3: corners copy, the centre averages all four.
  np.testing.assert_allclose(grid[:, 0, 0], np.broadcast_to(src[0, 0], grid[:, 0, 0].shape))
  np.testing.assert_allclose(grid[:, 2, 2], np.broadcast_to(src[1, 1], grid[:, 0, 0].shape))
  np.testing.assert_allclose(grid[0, 1, 1], src.mean((0, 1)), atol=1e-6)
  np.testing.assert_allclose(grid[1, 0, 1], (src[0, 0] + src[0, 1]) / 2, atol=1e-6)
  np.testing.assert_array_equal(pos[0], vit_params['Transformer']['posembed_input'][
      'pos_embedding'][0, 0])


def test_head_reinitialised_for_another_class_count_and_mismatch_errors():
  vit_cfg = vit_config(classes=7)
  vit_params = random_params(vit_cfg)
  cfg = video_config(attention_type='spatio_temporal', classifier='token')
  fresh = random_params(cfg, 1)
  params, summary = convert.initialise(fresh, vit_params, cfg, source_config=vit_cfg)
  assert dict(summary)['output_projection/kernel'] == 'fresh'
  np.testing.assert_array_equal(params['output_projection']['kernel'],
                                fresh['output_projection']['kernel'])
  wide = vit_config()
  wide.model.hidden_size, wide.model.mlp_dim = 32, 64
  with pytest.raises(convert.ConversionError,
                     match=r"Cannot initialise (\S+) \([^)]*16,?\) from the source's \1 "
                           r'\([^)]*32,?\)'):
    convert.initialise(fresh, random_params(wide), cfg, source_config=wide)


@pytest.mark.parametrize('attention_type', ['divided_space_time', 'space_only'])
def test_timesformer_from_vit_on_static_video_gives_vit_logits(attention_type):
  vit_cfg = vit_config()
  vit_params = random_params(vit_cfg)
  cfg = video_config(name='timesformer', attention_type=attention_type, classifier='token')
  params, summary = convert.initialise(random_params(cfg, 1), vit_params, cfg,
                                       source_config=vit_cfg)
  actions = dict(summary)
  if attention_type == 'divided_space_time':
    assert actions['encoderblock_1/temporal_fc/kernel'] == 'zeroed'
    assert actions['encoderblock_1/MultiHeadDotProductAttention_time/query/kernel'] == 'loaded'
    f = flatten(params)
    np.testing.assert_array_equal(f['encoderblock_1/LayerNorm_time/scale'],
                                  f['encoderblock_1/LayerNorm_0/scale'])
  if attention_type != 'space_only':
    assert actions['time_embed'] == 'zeroed'
  image = frames(3)[:, :1]
  expected = apply(vit_cfg, vit_params, image[:, 0])
  np.testing.assert_allclose(apply(cfg, params, np.repeat(image, T, axis=1)), expected,
                             atol=2e-5)


def test_init_from_a_converted_directory_through_the_config(tmp_path):
  vit_cfg = vit_config()
  vit_params = random_params(vit_cfg)
  out = convert.save_converted(vit_cfg, vit_params, str(tmp_path / 'vit'))
  assert os.path.isfile(os.path.join(out, 'config.json'))
  cfg = video_config(attention_type='spatio_temporal', classifier='token')
  fresh = random_params(cfg, 1)
  assert convert.init_from(cfg, fresh) is fresh          # init_from.path None: no-op.
  cfg.init_from.path = out
  params = convert.init_from(cfg, fresh)
  np.testing.assert_array_equal(params['cls'], vit_params['cls'])
  np.testing.assert_array_equal(
      params['Transformer']['encoderblock_1']['MlpBlock_0']['Dense_0']['kernel'],
      vit_params['Transformer']['encoderblock_1']['MlpBlock_0']['Dense_0']['kernel'])
  cfg.init_from.path = str(tmp_path / 'missing')
  with pytest.raises(FileNotFoundError, match='missing'):
    convert.init_from(cfg, fresh)


def test_cli_writes_a_directory_usable_as_init_from_and_config(tmp_path):
  import subprocess
  import sys
  vit_cfg = vit_config()
  vit_params = random_params(vit_cfg)
  to_vision_transformer_npz(vit_params, tmp_path / 'vit.npz')
  out = tmp_path / 'converted'
  run = subprocess.run([sys.executable, '-m', 'vivit_jax.convert', '--from=vit_npz',
                        str(tmp_path / 'vit.npz'), f'--out={out}'],
                       capture_output=True, text=True, timeout=120)
  assert run.returncode == 0, run.stderr[-2000:]
  assert 'Wrote' in run.stdout
  config, params = convert.load_converted(str(out))
  assert config.to_dict() == vc.load_config(out / 'config.py').to_dict()
  assert config.model.name == 'vit' and config.dataset.crop_size == CROP
  a, b = flatten(vit_params), flatten(params)
  for key in a:
    np.testing.assert_array_equal(a[key], b[key], err_msg=key)
  again = subprocess.run([sys.executable, '-m', 'vivit_jax.convert', '--from=vit_npz',
                          str(tmp_path / 'vit.npz'), f'--out={out}'],
                         capture_output=True, text=True, timeout=120)
  assert again.returncode != 0 and 'not empty' in again.stderr


def test_training_run_starts_from_a_converted_vit(tmp_path):
  """configs/synthetic/vivit_model1.py:tiny with init_from = a converted ViT .npz: the
  trainer's step-0 params are the initialised ones, and training then moves them.

  The warm-up schedule's lr is 0 at the first update, so checkpoint 1 holds exactly the
  step-0 params; checkpoint 3 holds trained ones.
  """
  from vivit_jax.train import checkpoint as ckpt_lib
  from vivit_jax.train import trainer
  config = vc.load_config(os.path.join(REPO, 'configs', 'synthetic', 'vivit_model1.py'),
                          'tiny')
  d, m = config.dataset, config.model
  # The ViT the tiny video model inflates: same width/depth/heads, 2D patches, crop, classes.
  vit_cfg = vc.default_config()
  vit_cfg.model.update(name='vit', classifier='token', patch_size=m.patch_size,
                       hidden_size=m.hidden_size, num_layers=m.num_layers,
                       num_heads=m.num_heads, mlp_dim=m.mlp_dim)
  vit_cfg.dataset.num_frames, vit_cfg.dataset.crop_size = 1, d.crop_size
  vit_cfg.dataset.num_classes = d.num_classes
  vit_params = random_params(vit_cfg)
  to_vision_transformer_npz(vit_params, tmp_path / 'vit.npz')
  src_config, src_params = convert.load_vit_npz(str(tmp_path / 'vit.npz'))
  converted = convert.save_converted(src_config, src_params, str(tmp_path / 'converted'))

  config.init_from.path = converted
  t = config.trainer
  t.num_train_steps, t.checkpoint_every, t.log_every, t.eval_every = 3, 1, 1, 3
  t.keep_checkpoints, t.async_checkpointing = 3, False
  out = trainer.train_and_evaluate(config, str(tmp_path / 'run'))
  assert out['step'] == 3
  lrs = [metrics['train_lr'] for _, metrics in out['history']]
  assert lrs[0] == 0.0 and lrs[-1] > 0.0
  assert all(np.isfinite(metrics['train_loss']) for _, metrics in out['history'])

  def params_at(step):
    step_dir, _ = ckpt_lib.resolve_checkpoint(str(tmp_path / 'run'),
                                              str(tmp_path / 'run' / 'checkpoints' / str(step)))
    return flatten(jax.device_get(ckpt_lib.load_params(step_dir)))

  start, trained = params_at(1), params_at(3)
  # Every leaf comes from the ViT (same class count: the head too), so the expected tree
  # is init_from applied to any params of the right shapes.
  expected = flatten(convert.init_from(config, random_params(config, seed=7)))
  assert sorted(start) == sorted(expected)
  for key in expected:
    np.testing.assert_array_equal(start[key], expected[key], err_msg=key)
  t_patch = m.temporal_patch_size   # central_frame: the 2D kernel at t // 2, zeros elsewhere.
  kernel = start['embedding/kernel']
  assert kernel.shape == (t_patch,) + vit_params['embedding']['kernel'].shape
  np.testing.assert_array_equal(kernel[t_patch // 2], vit_params['embedding']['kernel'])
  np.testing.assert_array_equal(np.delete(kernel, t_patch // 2, axis=0), 0.0)
  np.testing.assert_array_equal(start['output_projection/kernel'],
                                vit_params['output_projection']['kernel'])
  # Training moved the params away from the initialisation.
  assert np.abs(trained['embedding/kernel'] - kernel).max() > 0
  assert np.abs(trained['cls'] - start['cls']).max() > 0
