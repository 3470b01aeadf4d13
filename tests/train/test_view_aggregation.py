"""How the test views of a video become one prediction: the mean of the views' softmaxes
(PySlowFast, mmaction2) or the softmax of their mean logits (Scenic), by hand."""
import jax.numpy as jnp
import numpy as np
import pytest

from vivit_jax import config as vc
from vivit_jax import train
from vivit_jax.errors import ConfigError
from vivit_jax.train import steps

# Two videos x three views x two classes.
LOGITS = np.array([[[6.0, 0.0], [0.0, 2.0], [0.0, 2.0]],
                   [[0.0, 3.0], [1.0, 0.0], [1.0, 0.0]]], np.float32)


def softmax(x):
  e = np.exp(x - x.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def test_softmax_and_logit_averaging_by_hand():
  by_softmax = np.asarray(steps.aggregate_views(jnp.asarray(LOGITS), 'softmax'))
  by_logits = np.asarray(steps.aggregate_views(jnp.asarray(LOGITS), 'logits'))
  np.testing.assert_allclose(by_softmax, softmax(LOGITS).mean(1), rtol=1e-6)
  np.testing.assert_allclose(by_logits, softmax(LOGITS.mean(1)), rtol=1e-6)
  # Video 0: one confident view against two mild ones. Mean logits [2, 4/3] pick class 0;
  # mean softmax (0.9975 + 2 x 0.1192) / 3 = 0.41 for class 0 picks class 1.
  assert by_logits[0].argmax() == 0 and by_softmax[0].argmax() == 1
  np.testing.assert_allclose(by_softmax[0, 0], (0.99753 + 2 * 0.11920) / 3, rtol=1e-4)
  with pytest.raises(ValueError, match="'median' is invalid"):
    steps.aggregate_views(jnp.asarray(LOGITS), 'median')


def test_eval_step_uses_the_configured_aggregation():
  batch = {'video': jnp.zeros((2, 3, 1, 1, 1, 1))}
  apply_fn = lambda variables, video, train: jnp.asarray(LOGITS.reshape(6, 2))
  for method in steps.VIEW_AGGREGATIONS:
    out = steps.eval_step({}, batch, apply_fn=apply_fn, view_aggregation=method)
    np.testing.assert_allclose(out, steps.aggregate_views(jnp.asarray(LOGITS), method))


def test_configs_choose_their_references_aggregation_and_bad_values_are_refused():
  for name, method in (('vivit_b16x2_spatio_temporal.py', 'logits'),
                       ('vivit_l16x2_factorised_encoder.py', 'logits'),
                       ('timesformer_divided_space_time.py', 'softmax'),
                       ('timesformer_space_only.py', 'softmax'),
                       ('mvit_b_16x4.py', 'softmax'), ('mvitv2_s_16x4.py', 'softmax'),
                       ('swin_b.py', 'softmax'), ('vtn_vit_b.py', 'softmax')):
    assert vc.load_config(f'configs/kinetics400/{name}').trainer.view_aggregation == method
  config = vc.load_config('configs/synthetic/vivit_model1.py', 'tiny')
  assert config.trainer.view_aggregation == 'softmax'   # the synthetic default is unchanged.
  config.trainer.view_aggregation = 'mean'
  with pytest.raises(ConfigError, match="config.trainer.view_aggregation='mean'"):
    train.validate(config)
