"""TimeSformer: shapes, which tokens each attention step mixes, the K400 config's size,
config errors and a few training steps. (Numerical agreement with the PyTorch original,
through Hugging Face's TimesformerModel, is in test_convert_huggingface.py.)"""
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from vivit_jax import config as vc
from vivit_jax import models
from vivit_jax.models import cost, timesformer
from vivit_jax.models.layers import TransformerConfig

CONFIGS = pathlib.Path(__file__).parents[2] / 'configs'
B, T, CROP, K = 2, 4, 8, 5
S = (CROP // 4) ** 2   # patches per frame


def config(attention_type='divided_space_time'):
  c = vc.default_config()
  m = c.model
  m.name, m.attention_type = 'timesformer', attention_type
  m.hidden_size, m.num_layers, m.num_heads, m.mlp_dim = 16, 2, 2, 32
  m.patch_size = (4, 4)
  c.dataset.num_frames, c.dataset.crop_size, c.dataset.num_classes = T, CROP, K
  vc.validate_config(c)
  return c


def noise_like(tree, seed=0, scale=0.3):
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda s: (scale * rng.standard_normal(s.shape)).astype(np.float32),
                      tree)


def init_params(model, shape, seed=0):
  abstract = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros(shape))['params']
  return noise_like(abstract, seed)


@pytest.mark.parametrize('attention_type', timesformer.ATTENTION_TYPES)
def test_output_shapes_and_parameters(attention_type):
  c = config(attention_type)
  model = models.create_model(c.model, K)
  params = init_params(model, (B, T, CROP, CROP, 3))
  logits = jax.jit(lambda p, x: model.apply({'params': p}, x))(
      params, np.random.default_rng(0).standard_normal((B, T, CROP, CROP, 3)).astype(
          np.float32))
  assert logits.shape == (B, K) and np.isfinite(np.asarray(logits)).all()
  assert params['pos_embed'].shape == (1, 1 + S, 16)
  assert ('time_embed' in params) == (attention_type != 'space_only')
  assert ('temporal_fc' in params['encoderblock_0']) == (attention_type == 'divided_space_time')


def block_and_params(seed=0):
  cfg = TransformerConfig(hidden_size=16, num_layers=1, num_heads=2, mlp_dim=32)
  block = timesformer.DividedSpaceTimeBlock(cfg, num_frames=T)
  x = jnp.zeros((1, 1 + T * S, 16))
  params = noise_like(jax.eval_shape(lambda k: block.init(k, x, True), jax.random.key(0))[
      'params'], seed)
  # Silence the MLP so the block is x + temporal step + spatial step.
  params['MlpBlock_0']['Dense_1'] = jax.tree.map(np.zeros_like,
                                                 params['MlpBlock_0']['Dense_1'])
  return block, params


def changed_tokens(block, params, token):
  """Indices (0 = CLS, then t * S + s) whose output moves when input `token` moves."""
  x = np.random.default_rng(1).standard_normal((1, 1 + T * S, 16)).astype(np.float32)
  y = x.copy()
  y[0, token] += np.random.default_rng(2).standard_normal(16)   # not a constant shift,
  # which LayerNorm would remove.
  run = jax.jit(lambda p, v: block.apply({'params': p}, v, True))
  diff = np.abs(np.asarray(run(params, y) - run(params, x))).max(-1)[0]
  return set(np.nonzero(diff > 1e-6)[0].tolist())


def test_temporal_step_only_mixes_tokens_at_the_same_spatial_position():
  block, params = block_and_params()
  # Spatial attention off: the block is x + temporal_fc(temporal attention).
  params['MultiHeadDotProductAttention_0']['out'] = jax.tree.map(
      np.zeros_like, params['MultiHeadDotProductAttention_0']['out'])
  t, s = 1, 2
  same_position = {1 + tt * S + s for tt in range(T)}
  assert changed_tokens(block, params, 1 + t * S + s) == same_position
  assert changed_tokens(block, params, 0) == {0}   # CLS takes no part in time.


def test_spatial_step_mixes_one_frame_and_cls_joins_every_frame():
  block, params = block_and_params()
  # Temporal step off (temporal_fc zero): the block is x + spatial attention.
  params['temporal_fc'] = jax.tree.map(np.zeros_like, params['temporal_fc'])
  t, s = 1, 2
  frame = {1 + t * S + ss for ss in range(S)}
  assert changed_tokens(block, params, 1 + t * S + s) == frame | {0}
  assert changed_tokens(block, params, 0) == set(range(1 + T * S))


def test_k400_config_params_and_gflops_match_the_paper():
  gflops, params_m = cost.PAPER_NUMBERS['timesformer_divided_space_time']
  c = vc.load_config(CONFIGS / 'kinetics400' / 'timesformer_divided_space_time.py')
  vc.validate_config(c)
  d = c.dataset
  assert (d.num_frames, d.crop_size, tuple(c.model.patch_size)) == (8, 224, (16, 16))
  model = models.create_model(c.model, d.num_classes)
  shape = (1, d.num_frames, d.crop_size, d.crop_size, 3)
  params = cost.abstract_params(model, shape)
  assert abs(cost.count_params(params) / 1e6 / params_m - 1) <= 0.01
  assert abs(cost.forward_gflops(model, shape, params) / gflops - 1) <= 0.05


@pytest.mark.parametrize('change, message', [
    (lambda m: setattr(m, 'attention_type', 'divided'),
     r"config\.model\.attention_type='divided' .*'divided_space_time'"),
    (lambda m: setattr(m, 'classifier', 'gap'), r"config\.model\.classifier='gap'"),
    (lambda m: setattr(m, 'patch_size', (3, 3)), r'config\.model\.patch_size=\(3, 3\)'),
])
def test_config_errors_name_the_field(change, message):
  c = config()
  change(c.model)
  with pytest.raises(vc.ConfigError, match=message):
    vc.validate_config(c)


def test_synthetic_configs_are_valid():
  for arg in (None, 'tiny'):
    c = vc.load_config(CONFIGS / 'synthetic' / 'timesformer.py', arg)
    vc.validate_config(c)
    assert c.model.name == 'timesformer'


def test_a_few_training_steps_lower_the_loss():
  c = config()
  model = models.create_model(c.model, K)
  params = init_params(model, (B, T, CROP, CROP, 3), seed=3)
  rng = np.random.default_rng(0)
  x = rng.standard_normal((8, T, CROP, CROP, 3)).astype(np.float32)
  y = np.arange(8) % K
  tx = optax.adam(1e-2)

  def loss_fn(p):
    logits = model.apply({'params': p}, x)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

  @jax.jit
  def step(p, opt):
    loss, grads = jax.value_and_grad(loss_fn)(p)
    updates, opt = tx.update(grads, opt, p)
    return optax.apply_updates(p, updates), opt, loss

  opt = tx.init(params)
  losses = []
  for _ in range(15):
    params, opt, loss = step(params, opt)
    losses.append(float(loss))
  assert losses[-1] < 0.8 * losses[0], losses
