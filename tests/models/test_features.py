"""models.features.representations: for every family (tiny synthetic configs), the
pre-logits times the head's kernel plus bias give the model's logits, and the final
tokens are the final encoder_norm's output (pooling them gives the pre-logits where the
head is a plain pool + projection)."""
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vivit_jax import config as vc
from vivit_jax import models
from vivit_jax.models import features

CONFIGS = pathlib.Path(__file__).parents[2] / 'configs' / 'synthetic'
# case: (configs/synthetic/<file>.py, model overrides, tokens per 4x8x8 clip incl. CLS).
CASES = {
    'vivit_model1': ('vivit_model1', {}, 1 + 2 * 2 * 2),
    'vivit_model1_gap_repr': ('vivit_model1',
                              {'classifier': 'gap', 'representation_size': 8}, 8),
    'vivit_model2': ('vivit_model2', {}, 1 + 2),
    'vivit_model2_avgpool': ('vivit_model2', {'temporal_num_layers': 0}, 2 * (1 + 4)),
    'vivit_model3': ('vivit_model3', {}, 8),
    'vivit_model4': ('vivit_model4', {}, 8),
    'timesformer': ('timesformer', {}, None),
    'vtn': ('vtn', {}, None),
    'mvit': ('mvit', {}, None),
    'mvitv2': ('mvitv2', {}, None),
    'video_swin': ('video_swin', {}, None),
}


def tiny(file, overrides):
  config = vc.load_config(CONFIGS / f'{file}.py', 'tiny')
  for k, v in overrides.items():
    config.model[k] = v
  vc.validate_config(config)
  d = config.dataset
  model = models.create_model(config.model, d.num_classes)
  video = jnp.asarray(np.random.default_rng(1).standard_normal(
      (3, d.num_frames, d.crop_size, d.crop_size, 3)), jnp.float32)
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), video))['params']
  rng = np.random.default_rng(0)   # noise everywhere: a zero head would hide mistakes.
  params = jax.tree.map(lambda s: jnp.asarray(0.3 * rng.standard_normal(s.shape),
                                              s.dtype), shapes)
  return model, params, video


@pytest.mark.parametrize('name', sorted(CASES))
def test_pre_logits_times_head_are_the_logits(name):
  file, overrides, num_tokens = CASES[name]
  model, params, video = tiny(file, overrides)
  logits, pre_logits, tokens = jax.jit(
      lambda p, v: features.representations(model, p, v))(params, video)
  expected = model.apply({'params': params}, video, train=False)
  np.testing.assert_allclose(logits, expected, rtol=1e-6, atol=1e-6)
  head = params['output_projection']
  np.testing.assert_allclose(pre_logits @ head['kernel'] + head['bias'], expected,
                             rtol=1e-4, atol=1e-4)
  assert pre_logits.shape == (3, head['kernel'].shape[0])
  assert tokens.ndim == 3 and tokens.shape[0] == 3
  if num_tokens is not None:
    assert tokens.shape[1] == num_tokens
  # Clips differ, so their representations do.
  assert not np.allclose(pre_logits[0], pre_logits[1])
  if overrides.get('classifier') == 'gap' and 'representation_size' in overrides:
    ro = params['pre_logits']   # gap: the head pools the final tokens.
    np.testing.assert_allclose(np.tanh(tokens.mean(1) @ ro['kernel'] + ro['bias']),
                               pre_logits, rtol=1e-4, atol=1e-5)
  elif name in ('vivit_model1', 'timesformer', 'mvit'):
    # CLS-token heads: the pre-logits are the first final token.
    np.testing.assert_allclose(tokens[:, 0], pre_logits, rtol=1e-5, atol=1e-5)
