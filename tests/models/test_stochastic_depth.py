"""Stochastic depth: timm's rescaled drop path and Scenic's droplayer (no rescale), each
against hand-computed values; the paper configs pick their reference's."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vivit_jax import config as vc
from vivit_jax import models
from vivit_jax.errors import ConfigError
from vivit_jax.models import layers

REPO_CONFIGS = 'configs/kinetics400'


def drop(x, rate, rescale, seed=0):
  return layers.DropPath(rate, rescale).apply({}, x, deterministic=False,
                                              rngs={'dropout': jax.random.key(seed)})


def test_drop_path_rescales_kept_branches_or_not():
  x = jnp.arange(1, 65, dtype=jnp.float32).reshape(64, 1) * jnp.ones((64, 3))
  rate = 0.25
  timm, scenic = np.asarray(drop(x, rate, True)), np.asarray(drop(x, rate, False))
  keep = scenic[:, :1] != 0          # the same rng: the same examples kept.
  assert 0 < keep.sum() < 64        # both kinds of example in the batch.
  assert 0.5 < keep.mean() < 0.95   # about 1 - rate kept.
  np.testing.assert_allclose(timm, np.where(keep, np.asarray(x) / (1 - rate), 0.0),
                             rtol=1e-6)
  np.testing.assert_array_equal(scenic, np.where(keep, np.asarray(x), 0.0))
  # Evaluation and rate 0 leave the branch alone either way.
  for rescale in (True, False):
    np.testing.assert_array_equal(
        layers.DropPath(rate, rescale).apply({}, x, deterministic=True), x)
    np.testing.assert_array_equal(drop(x, 0.0, rescale), x)


def test_models_follow_the_switch_in_training():
  """A tiny ViViT trained-mode forward pass: with the switch off, every dropped-or-kept
  branch is unscaled, so the output differs from the rescaled model's exactly where a
  branch was kept."""
  config = vc.load_config('configs/synthetic/vivit_model1.py', 'tiny')
  config.model.stochastic_depth, config.model.num_layers = 0.5, 2   # block 1 drops.
  video = jax.random.normal(jax.random.key(1), (8, 4, 8, 8, 3))
  outs = {}
  for rescale in (True, False):
    config.model.stochastic_depth_rescale = rescale
    vc.validate_config(config)
    model = models.create_model(config.model, 10)
    params = model.init(jax.random.key(0), video)['params']
    head = params['output_projection']   # zero-initialised: give it weights to see through.
    head['kernel'] = jax.random.normal(jax.random.key(3), head['kernel'].shape)
    outs[rescale] = model.apply({'params': params}, video, train=True,
                                rngs={'dropout': jax.random.key(2)})
  assert not np.allclose(outs[True], outs[False])


def test_paper_configs_use_their_references_stochastic_depth():
  for name, rescale in (('vivit_b16x2_spatio_temporal.py', False),
                        ('vivit_b16x2_factorised_encoder.py', False),
                        ('timesformer_divided_space_time.py', True),
                        ('mvit_b_16x4.py', True), ('swin_t.py', True),
                        ('vtn_vit_b.py', True)):
    config = vc.load_config(f'{REPO_CONFIGS}/{name}')
    assert config.model.stochastic_depth_rescale is rescale, name


def test_a_non_boolean_switch_is_refused():
  config = vc.load_config('configs/synthetic/vivit_model1.py', 'tiny')
  config.model.stochastic_depth_rescale = None
  with pytest.raises(ConfigError, match='config.model.stochastic_depth_rescale=None'):
    vc.validate_config(config)
