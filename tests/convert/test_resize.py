"""convert/resize.py: a checkpoint run on another clip size (position embeddings and
MViTv2 relative position tables resized) for every family; the same size changes
nothing."""

import jax
import numpy as np
import pytest

from train_helpers import classifier_config_names, tiny_config

from vivit_jax import models
from vivit_jax.convert import resize
from vivit_jax.errors import ConfigError

CONFIGS = classifier_config_names()
tiny = tiny_config


@pytest.mark.parametrize('name', CONFIGS)
def test_every_family_runs_on_another_clip_size(name):
  config = tiny(name)
  d = config.dataset
  model = models.create_model(config.model, d.num_classes)
  params = model.init(jax.random.key(0), np.zeros((1, d.num_frames, d.crop_size,
                                                   d.crop_size, 3), np.float32))['params']
  same = resize.resize_params(config, params, resize.clip_config(config))
  jax.tree.map(lambda a, b: np.testing.assert_array_equal(a, b), same, params)
  video = jax.random.normal(jax.random.key(1), (2, 8, 16, 16, 3))
  new = resize.clip_config(config, 8, 16)
  assert (new.dataset.num_frames, new.dataset.crop_size) == (8, 16)
  assert (config.dataset.num_frames, config.dataset.crop_size) == (4, 8)   # a copy.
  resized = resize.resize_params(config, params, new)
  logits = models.create_model(new.model, d.num_classes).apply({'params': resized}, video)
  assert logits.shape == (2, d.num_classes) and np.isfinite(logits).all()
  changed = [k for k, a, b in zip(
      range(len(jax.tree.leaves(params))), jax.tree.leaves(params),
      jax.tree.leaves(resized)) if a.shape != b.shape]
  if name == 'video_swin':
    assert not changed   # no size-dependent parameters.
  else:
    assert changed


def test_resized_position_embedding_interpolates_the_grid():
  config = tiny('vivit_model1')   # tubelets 2x4x4 on 4x8x8: grid 2x2x2 + CLS.
  model = models.create_model(config.model, 10)
  params = model.init(jax.random.key(0), np.zeros((1, 4, 8, 8, 3), np.float32))['params']
  pos = np.asarray(params['Transformer']['posembed_input']['pos_embedding'])
  new = resize.resize_params(config, params, resize.clip_config(config, 4, 16))
  out = np.asarray(new['Transformer']['posembed_input']['pos_embedding'])
  assert out.shape == (1, 1 + 2 * 4 * 4, pos.shape[-1])
  np.testing.assert_array_equal(out[0, 0], pos[0, 0])   # CLS kept.
  grid, old = out[0, 1:].reshape(2, 4, 4, -1), pos[0, 1:].reshape(2, 2, 2, -1)
  # Bilinear x2 with half-pixel centres: the corner keeps the old corner's value, and
  # each frame's mean is the old frame's mean.
  np.testing.assert_allclose(grid[:, 0, 0], old[:, 0, 0], atol=1e-6)
  np.testing.assert_allclose(grid.mean((1, 2)), old.mean((1, 2)), atol=1e-6)


def test_a_size_the_model_cannot_take_names_the_field():
  with pytest.raises(ConfigError, match='crop_size'):
    resize.clip_config(tiny('vivit_model1'), 4, 10)   # patches of 4 pixels.
