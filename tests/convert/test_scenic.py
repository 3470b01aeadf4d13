"""Scenic ViViT checkpoints: trees built to Scenic's naming (scenic/projects/vivit/model.py)
in flax msgpack and orbax form, for every attention type."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import serialization

from vivit_jax import config as vc
from vivit_jax import convert, models
from vivit_jax.convert import inflate
from vivit_jax.convert.common import flatten, unflatten

T, CROP, K = 4, 8, 5


def our_config(attention_type, classifier='token', **fields):
  c = vc.default_config()
  m = c.model
  m.attention_type, m.classifier = attention_type, classifier
  m.hidden_size, m.num_layers, m.num_heads, m.mlp_dim = 16, 2, 4, 32
  m.patch_size, m.temporal_patch_size, m.embedding = (4, 4), 2, 'tubelet'
  m.temporal_num_layers = 1
  m.gelu_approximate = True
  m.update(fields)
  c.dataset.num_frames, c.dataset.crop_size, c.dataset.num_classes = T, CROP, K
  vc.validate_config(c)
  return c


def random_params(c, seed=0):
  model = models.create_model(c.model, K)
  abstract = jax.eval_shape(model.init, jax.random.key(0),
                            jnp.zeros((1, T, CROP, CROP, 3)))['params']
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda s: (0.3 * rng.standard_normal(s.shape)).astype(np.float32),
                      abstract)


def to_scenic(params, attention_type):
  """Our tree in Scenic's layout (Model 4: heads re-ordered [time | space])."""
  flat = flatten(params)
  if attention_type == 'factorised_dot_product':
    for k in list(flat):
      if '/MultiHeadDotProductAttention_0/' in k and not k.endswith('out/bias'):
        axis = 0 if '/out/' in k or k.endswith('bias') else 1
        flat[k] = inflate.swap_head_halves(flat[k], axis)
  return unflatten(flat)


CASES = [('spatio_temporal', 'token', {}),
         ('factorised_encoder', 'token', {}),
         ('factorised_self_attention', 'gap', {'embedding': 'uniform_frame',
                                               'temporal_patch_size': 1}),
         ('factorised_dot_product', 'gap', {})]


@pytest.mark.parametrize('attention_type, classifier, fields', CASES,
                         ids=[c[0] for c in CASES])
def test_msgpack_train_state_roundtrip(tmp_path, attention_type, classifier, fields):
  c = our_config(attention_type, classifier, **fields)
  params = random_params(c)
  state = {'global_step': 7, 'optimizer': {'target': to_scenic(params, attention_type),
                                           'state': {'step': 7}}}
  (tmp_path / 'run').mkdir()
  for step in (3, 7):   # the newest checkpoint_<step> is read.
    (tmp_path / 'run' / f'checkpoint_{step}').write_bytes(serialization.msgpack_serialize(
        state if step == 7 else {'params': {}}))
  scenic_type = {'spatio_temporal': 'spacetime',
                 'factorised_dot_product': 'factorized_dot_product_attention'}.get(
                     attention_type)
  config, loaded = convert.load_scenic(str(tmp_path / 'run'), num_frames=T,
                                       attention_type=scenic_type)
  m = config.model
  assert (m.attention_type, m.classifier, m.embedding, m.num_layers, m.num_heads,
          m.mlp_dim, m.hidden_size) == (attention_type, classifier, c.model.embedding, 2, 4,
                                        32, 16)
  assert (config.dataset.num_frames, config.dataset.crop_size,
          config.dataset.num_classes) == (T, CROP, K)
  a, b = flatten(params), flatten(loaded)
  assert sorted(a) == sorted(b)
  for k in a:
    np.testing.assert_array_equal(a[k], b[k], err_msg=k)
  # Same function as the original tree under our model.
  model = models.create_model(config.model, K)
  x = np.random.default_rng(1).standard_normal((2, T, CROP, CROP, 3)).astype(np.float32)
  run = jax.jit(lambda p: model.apply({'params': p}, x))
  np.testing.assert_allclose(run(loaded), run(params), atol=1e-6)


def test_model4_head_halves_follow_scenic_time_then_space(tmp_path):
  c = our_config('factorised_dot_product', 'gap')
  scenic = flatten(to_scenic(random_params(c), 'factorised_dot_product'))
  (tmp_path / 'ckpt').write_bytes(serialization.msgpack_serialize(
      {'params': unflatten(scenic)}))
  _, loaded = convert.load_scenic(str(tmp_path / 'ckpt'), crop_size=CROP,
                                  attention_type='factorized_dot_product_attention')
  q = 'Transformer/encoderblock_0/MultiHeadDotProductAttention_0/query/kernel'
  # Scenic's first two heads attend over time; ours are the last two.
  np.testing.assert_array_equal(flatten(loaded)[q][:, 2:], scenic[q][:, :2])
  np.testing.assert_array_equal(flatten(loaded)[q][:, :2], scenic[q][:, 2:])


def test_orbax_directory_and_errors(tmp_path):
  import orbax.checkpoint as ocp
  c = our_config('spatio_temporal')
  params = random_params(c)
  with ocp.PyTreeCheckpointer() as ckptr:
    ckptr.save(str(tmp_path / 'orbax'), {'params': params})
  config, loaded = convert.load_scenic(str(tmp_path / 'orbax'), crop_size=CROP)
  assert config.dataset.num_frames == T
  np.testing.assert_array_equal(flatten(loaded)['cls'], params['cls'])
  with pytest.raises(convert.ConversionError, match='num_frames or crop_size'):
    convert.load_scenic(str(tmp_path / 'orbax'))
  (tmp_path / 'junk').write_bytes(b'\x00not msgpack')
  with pytest.raises(convert.ConversionError, match='junk'):
    convert.load_scenic(str(tmp_path / 'junk'), crop_size=CROP)


def _model3_checkpoint(tmp_path):
  """A Scenic Model 3 msgpack checkpoint (uniform-frame patches): (path, our-named params)."""
  c = our_config('factorised_self_attention', 'gap', embedding='uniform_frame',
                 temporal_patch_size=1)
  params = random_params(c, seed=3)
  path = tmp_path / 'checkpoint_5'
  path.write_bytes(serialization.msgpack_serialize({'optimizer': {'target': params}}))
  return str(path), params


@pytest.mark.parametrize('order', ['time_space', 'space_time'])
def test_model3_attention_order_from_the_scenic_config(tmp_path, order):
  """The imported model attends in the Scenic run's order: its logits are the float64
  reference's for that order (tanh GELU as in Scenic), not the other order's."""
  import vivit_reference as ref
  path, params = _model3_checkpoint(tmp_path)
  (tmp_path / 'scenic_config.py').write_text(
      'import ml_collections\n\n\ndef get_config():\n'
      '  c = ml_collections.ConfigDict()\n'
      '  c.model = ml_collections.ConfigDict()\n'
      "  c.model.attention_config = ml_collections.ConfigDict(\n"
      f"      {{'type': 'factorized_self_attention_block', 'attention_order': {order!r}}})\n"
      "  c.model.classifier = 'gap'\n"
      f"  c.dataset_configs = ml_collections.ConfigDict({{'num_frames': {T}}})\n"
      '  return c\n')
  config, loaded = convert.load_scenic(path, str(tmp_path / 'scenic_config.py'))
  assert config.model.attention_order == order
  vc.validate_config(config)
  model = models.create_model(config.model, K)
  x = np.random.default_rng(4).standard_normal((2, T, CROP, CROP, 3)).astype(np.float32)
  logits = jax.jit(lambda p: model.apply({'params': p}, x))(loaded)
  p64 = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
  reference = {o: np.stack([ref.model3(v, p64, 2, T, attention_order=o,
                                       gelu_approximate=True) for v in x.astype(np.float64)])
               for o in ('time_space', 'space_time')}
  np.testing.assert_allclose(logits, reference[order], rtol=1e-4, atol=1e-4)
  other = 'space_time' if order == 'time_space' else 'time_space'
  assert np.abs(reference[other] - reference[order]).max() > 1e-2


def test_model3_attention_order_default_argument_and_error(tmp_path):
  path, _ = _model3_checkpoint(tmp_path)
  config, _ = convert.load_scenic(path, num_frames=T)   # no Scenic config: its default.
  assert config.model.attention_order == 'time_space'
  config, _ = convert.load_scenic(path, num_frames=T, attention_order='space_time')
  assert config.model.attention_order == 'space_time'
  with pytest.raises(convert.ConversionError, match="attention_order='spacetime'"):
    convert.load_scenic(path, num_frames=T, attention_order='spacetime')
  # Other attention types keep the default order (a Scenic config may still carry one).
  c = our_config('spatio_temporal')
  (tmp_path / 'm1').write_bytes(serialization.msgpack_serialize({'params': random_params(c)}))
  config, _ = convert.load_scenic(str(tmp_path / 'm1'), num_frames=T,
                                  attention_order='time_space')
  assert config.model.attention_order == 'space_time'
  vc.validate_config(config)


@pytest.mark.parametrize('attention_type, pool', [('factorised_dot_product', 'gmp'),
                                                  ('factorised_encoder', 'gsp')])
def test_pooled_heads_import_with_scenics_classifier(tmp_path, attention_type, pool):
  """Scenic's 'gmp' (max) and 'gsp' (sum) heads, from its config or the argument, give
  the original function; Model 2 pools both encoders the same way, as Scenic does."""
  import ml_collections
  c = our_config(attention_type, pool, spatial_classifier=pool)
  params = random_params(c, seed=4)
  (tmp_path / 'ckpt').write_bytes(serialization.msgpack_serialize(
      {'params': to_scenic(params, attention_type)}))
  scenic_type = {'factorised_dot_product': 'factorized_dot_product_attention',
                 'factorised_encoder': 'factorized_encoder'}[attention_type]
  scenic_config = ml_collections.ConfigDict({
      'model': {'classifier': pool, 'attention_config': {'type': scenic_type}},
      'dataset_configs': {'num_frames': T, 'crop_size': CROP}})
  config, loaded = convert.load_scenic(str(tmp_path / 'ckpt'), scenic_config)
  assert config.model.classifier == pool
  if attention_type == 'factorised_encoder':
    assert config.model.spatial_classifier == pool
  x = np.random.default_rng(2).standard_normal((2, T, CROP, CROP, 3)).astype(np.float32)
  want = models.create_model(c.model, K).apply({'params': params}, x)
  got = models.create_model(config.model, K).apply({'params': loaded}, x)
  np.testing.assert_allclose(got, want, atol=1e-5)
  gap_config, _ = convert.load_scenic(str(tmp_path / 'ckpt'), crop_size=CROP,
                                      attention_type=scenic_type)
  assert gap_config.model.classifier == 'gap'      # what the arrays alone say.
  gap = models.create_model(gap_config.model, K).apply({'params': loaded}, x)
  assert np.abs(np.asarray(gap) - np.asarray(want)).max() > 1e-3


def test_pooled_classifier_on_a_cls_checkpoint_is_refused(tmp_path):
  c = our_config('spatio_temporal')
  (tmp_path / 'ckpt').write_bytes(serialization.msgpack_serialize(
      {'params': random_params(c)}))
  with pytest.raises(convert.ConversionError, match="classifier='gmp' does not match"):
    convert.load_scenic(str(tmp_path / 'ckpt'), crop_size=CROP, classifier='gmp')
  with pytest.raises(convert.ConversionError, match="classifier='max' is invalid"):
    convert.load_scenic(str(tmp_path / 'ckpt'), crop_size=CROP, classifier='max')


def test_multi_head_scenic_model_becomes_label_groups(tmp_path):
  """Scenic's ViViTMultiHeadClassificationModel: one output projection split by
  `class_splits` (named by `split_names`), here noun 3 + verb 2 = K."""
  import ml_collections
  c = our_config('spatio_temporal')
  params = random_params(c)
  (tmp_path / 'ckpt').write_bytes(serialization.msgpack_serialize({'params': params}))
  scenic_config = ml_collections.ConfigDict({'dataset_configs': {
      'num_frames': T, 'class_splits': [3, 2], 'split_names': ['noun', 'verb']}})
  config, _ = convert.load_scenic(str(tmp_path / 'ckpt'), scenic_config)
  assert config.dataset.label_groups == (('noun', 3), ('verb', 2))
  vc.validate_config(config)
  config, _ = convert.load_scenic(str(tmp_path / 'ckpt'), crop_size=CROP,
                                  label_groups=(('verb', 2), ('noun', 3)))
  assert config.dataset.label_groups == (('verb', 2), ('noun', 3))
  with pytest.raises(convert.ConversionError, match='add up to 6 classes.*has 5'):
    convert.load_scenic(str(tmp_path / 'ckpt'), crop_size=CROP,
                        label_groups=(('noun', 3), ('verb', 3)))


def test_convert_cli_takes_label_groups_and_classifier(tmp_path):
  import json
  import subprocess
  import sys
  c = our_config('factorised_dot_product', 'gmp')
  (tmp_path / 'ckpt').write_bytes(serialization.msgpack_serialize(
      {'params': to_scenic(random_params(c), 'factorised_dot_product')}))
  base = [sys.executable, '-m', 'vivit_jax.convert', '--from=scenic', str(tmp_path / 'ckpt'),
          f'--crop_size={CROP}', '--attention_type=factorized_dot_product_attention',
          '--classifier=gmp']
  done = subprocess.run(base + ['--label_groups=noun:3,verb:2', f'--out={tmp_path / "out"}'],
                        capture_output=True, text=True)
  assert done.returncode == 0, done.stderr[-2000:]
  written = json.loads((tmp_path / 'out' / 'config.json').read_text())
  assert written['dataset']['label_groups'] == [['noun', 3], ['verb', 2]]
  assert written['model']['classifier'] == 'gmp'
  bad = subprocess.run(base + ['--label_groups=noun=3', f'--out={tmp_path / "bad"}'],
                       capture_output=True, text=True)
  assert bad.returncode == 2
  assert "error: --label_groups='noun=3' is invalid" in bad.stderr
