"""Label groups (Epic-Kitchens verb/noun) and multi-label data in training and
evaluation: targets, loss, view aggregation and metrics against hand computations."""
import itertools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from vivit_jax import errors
from vivit_jax.data import labels
from vivit_jax.train import metrics, objectives, steps

GROUPS = labels.LabelSpec((('verb', 2), ('noun', 3)))
MULTI = labels.LabelSpec((('label', 4),), multi_label=True)


def _softmax(x):
  e = np.exp(x - x.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def test_label_spec_from_config_and_its_errors():
  d = ml_collections.ConfigDict(dict(num_classes=5, label_groups=(('verb', 2), ('noun', 3)),
                                     multi_label=False))
  assert labels.label_spec(d) == GROUPS and GROUPS.slices() == [slice(0, 2), slice(2, 5)]
  d.num_classes = 6
  with pytest.raises(errors.ConfigError, match='num_classes=6 is invalid: expected 5'):
    labels.label_spec(d)
  for bad in ((('verb', 2),), (('verb', 2), ('verb', 3)), (('verb', 0), ('noun', 6))):
    d = ml_collections.ConfigDict(dict(num_classes=6, label_groups=bad), type_safe=False)
    with pytest.raises(errors.ConfigError, match='dataset.label_groups'):
      labels.label_spec(d)
  d = ml_collections.ConfigDict(dict(num_classes=5, label_groups=(('verb', 2), ('noun', 3)),
                                     multi_label=True))
  with pytest.raises(errors.ConfigError, match='dataset.multi_label=True'):
    labels.label_spec(d)


def test_parse_groups_names_and_multi_label():
  spec = GROUPS.with_names({'noun': ['cup', 'pan', 'tap']})
  np.testing.assert_array_equal(spec.parse(['1', 'tap']), [1, 2])
  np.testing.assert_array_equal(spec.parse([0, '1']), [0, 1])
  assert spec.flat_names() == ['verb:0', 'verb:1', 'noun:cup', 'noun:pan', 'noun:tap']
  with pytest.raises(errors.DecodeError, match="a.mp4: noun label 'bowl' is not a class"):
    spec.parse(['1', 'bowl'], 'a.mp4')
  with pytest.raises(errors.DecodeError, match='a.mp4: verb label .2. is not a class'):
    spec.parse(['2', '0'], 'a.mp4')
  with pytest.raises(errors.DecodeError, match='has 1 value'):
    spec.parse(['1'], 'a.mp4')
  np.testing.assert_array_equal(MULTI.parse(['1;3']), [0, 1, 0, 1])
  np.testing.assert_array_equal(MULTI.parse([[0, 2]]), [1, 0, 1, 0])
  np.testing.assert_array_equal(MULTI.parse(['']), [0, 0, 0, 0])
  assert MULTI.parse(['2']).dtype == np.float32 and GROUPS.empty().shape == (2,)


def test_group_targets_and_loss_by_hand():
  logits = jnp.array([[1.0, -1.0, 0.5, 2.0, -0.5], [0.0, 3.0, 1.0, 1.0, 1.0]])
  label = jnp.array([[0, 2], [1, 0]])
  t = objectives.targets(label, GROUPS, label_smoothing=0.2)
  np.testing.assert_allclose(t, [[0.9, 0.1, 0.2 / 3, 0.2 / 3, 0.8 + 0.2 / 3],
                                 [0.1, 0.9, 0.8 + 0.2 / 3, 0.2 / 3, 0.2 / 3]], rtol=1e-6)
  lx = np.asarray(logits)
  tx = np.asarray(t)
  verb = -(tx[:, :2] * np.log(_softmax(lx[:, :2]))).sum(-1).mean()
  noun = -(tx[:, 2:] * np.log(_softmax(lx[:, 2:]))).sum(-1).mean()
  np.testing.assert_allclose(objectives.loss(logits, t, GROUPS), (verb + noun) / 2, rtol=1e-5)
  # Example 0: verb argmax 0 (right), noun argmax 1 (wrong); example 1: both right.
  np.testing.assert_array_equal(objectives.correct(logits, label, GROUPS), [0.0, 1.0])
  probs = objectives.probabilities(logits, GROUPS)
  np.testing.assert_allclose(probs[:, :2].sum(-1), 1, rtol=1e-6)
  np.testing.assert_allclose(probs[:, 2:], _softmax(lx[:, 2:]), rtol=1e-6)


def test_multi_label_targets_and_loss_by_hand():
  logits = jnp.array([[2.0, -1.0, 0.0, 1.0]])
  label = jnp.array([[1.0, 0.0, 0.0, 1.0]])
  t = objectives.targets(label, MULTI, label_smoothing=0.2)
  np.testing.assert_allclose(t, [[0.85, 0.05, 0.05, 0.85]], rtol=1e-6)
  p = 1 / (1 + np.exp(-np.asarray(logits)))
  bce = -(t * np.log(p) + (1 - t) * np.log(1 - p)).mean()
  np.testing.assert_allclose(objectives.loss(logits, t, MULTI), bce, rtol=1e-5)
  np.testing.assert_array_equal(objectives.correct(logits, label, MULTI), [1.0])
  np.testing.assert_allclose(objectives.probabilities(logits, MULTI), p, rtol=1e-6)


def test_view_aggregation_per_group_and_per_class():
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(2, 3, 5)).astype(np.float32)
  by_softmax = steps.aggregate_views(jnp.asarray(logits), 'softmax', GROUPS)
  want = np.concatenate([_softmax(logits[..., :2]), _softmax(logits[..., 2:])], -1).mean(1)
  np.testing.assert_allclose(by_softmax, want, rtol=1e-5)
  by_logits = steps.aggregate_views(jnp.asarray(logits), 'logits', GROUPS)
  mean = logits.mean(1)
  np.testing.assert_allclose(by_logits, np.concatenate(
      [_softmax(mean[:, :2]), _softmax(mean[:, 2:])], -1), rtol=1e-5)
  spec4 = labels.LabelSpec((('label', 5),), multi_label=True)
  np.testing.assert_allclose(steps.aggregate_views(jnp.asarray(logits), 'softmax', spec4),
                             (1 / (1 + np.exp(-logits))).mean(1), rtol=1e-5)


def test_train_step_with_groups_and_multi_label_runs_the_objective():
  """One SGD step at lr 1 on a linear model: the parameter update is minus the gradient
  of objectives.loss, so a spec that is not passed through would change it."""
  import optax
  w0 = jnp.zeros((4, 5))
  video = jnp.asarray(np.random.default_rng(1).normal(size=(2, 1, 1, 1, 4)), jnp.float32)

  def apply_fn(variables, v, train=False, rngs=None):
    return v.reshape(v.shape[0], -1) @ variables['params']['w']
  tx = optax.sgd(1.0)
  for spec, label in ((GROUPS, jnp.array([[0, 2], [1, 1]])),
                      (labels.LabelSpec((('label', 5),), True),
                       jnp.array([[1, 0, 0, 1, 0], [0, 1, 1, 0, 0]], jnp.float32))):
    state = steps.create_train_state({'w': w0}, tx)
    new, m = steps.train_step(state, {'video': video, 'label': label}, jax.random.key(0),
                              apply_fn=apply_fn, tx=tx, lr_fn=lambda s: 1.0, num_classes=5,
                              label_spec=spec)
    grad = jax.grad(lambda w: objectives.loss(apply_fn({'params': {'w': w}}, video),
                                              objectives.targets(label, spec), spec))(w0)
    np.testing.assert_allclose(new.params['w'], -grad, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(m['loss'], objectives.loss(
        jnp.zeros((2, 5)), objectives.targets(label, spec), spec), rtol=1e-6)


def test_action_accuracy_is_the_top_of_the_joint_probability():
  """Action top-1/top-5 equal a brute-force ranking of all 6 (verb, noun) products;
  per-group metrics equal each group's argmax accuracy; padding is dropped."""
  rng = np.random.default_rng(3)
  n = 600
  verb = _softmax(rng.normal(size=(n, 2)) * 2)
  noun = _softmax(rng.normal(size=(n, 3)) * 2)
  probs = np.concatenate([verb, noun], 1)
  label = np.stack([rng.integers(0, 2, n), rng.integers(0, 3, n)], 1)
  mask = (np.arange(n) % 7 != 0).astype(np.float32)
  m = metrics.evaluation_metrics(probs, label, mask, GROUPS, confusion=True)
  keep = mask > 0
  combos = list(itertools.product(range(2), range(3)))
  joint = np.stack([verb[:, a] * noun[:, b] for a, b in combos], 1)[keep]
  truth = np.array([combos.index((a, b)) for a, b in label[keep]])
  rank = np.argsort(-joint, 1, kind='stable')
  assert m['action_top1'] == pytest.approx((rank[:, 0] == truth).mean())
  assert m['action_top5'] == pytest.approx((rank[:, :5] == truth[:, None]).any(1).mean())
  assert m['top1'] == m['action_top1'] and m['num_examples'] == keep.sum()
  assert m['verb_top1'] == pytest.approx((verb[keep].argmax(1) == label[keep, 0]).mean())
  assert m['noun_top1'] == pytest.approx((noun[keep].argmax(1) == label[keep, 1]).mean())
  assert len(m['noun_per_class_accuracy']) == 3 and len(m['verb_confusion_matrix']) == 2
  assert m['action_top1'] < min(m['verb_top1'], m['noun_top1'])
  # Blocks of 7 examples give what blocks of 256 give.
  whole = metrics.action_metrics(probs[keep], label[keep], GROUPS)
  assert whole['action_top1'] == pytest.approx(m['action_top1'])
  chunk = metrics.ACTION_CHUNK
  try:
    metrics.ACTION_CHUNK = 7
    assert metrics.action_metrics(probs[keep], label[keep], GROUPS) == whole
  finally:
    metrics.ACTION_CHUNK = chunk


def test_average_precision_by_hand_and_map():
  # Scores ranked: +, -, +, -  -> precisions at the positives 1/1 and 2/3.
  assert metrics.average_precision([0.9, 0.8, 0.7, 0.1], [1, 0, 1, 0]) == pytest.approx(
      (1 + 2 / 3) / 2)
  assert np.isnan(metrics.average_precision([0.5, 0.2], [0, 0]))
  probs = np.array([[0.9, 0.1, 0.3], [0.2, 0.8, 0.6], [0.7, 0.3, 0.2], [0.1, 0.6, 0.9]])
  label = np.array([[1, 0, 0], [0, 1, 1], [0, 0, 0], [0, 1, 0]], np.float32)
  m = metrics.evaluation_metrics(probs, label, None, labels.LabelSpec((('label', 3),), True))
  # class 0: ranks 0.9(+) -> AP 1; class 1: 0.8(+), 0.6(+) -> 1; class 2: 0.9(-), 0.6(+)
  # -> 1/2.
  np.testing.assert_allclose(m['per_class_ap'], [1.0, 1.0, 0.5])
  assert m['mAP'] == pytest.approx(2.5 / 3)
  # top class true: rows 0 (0), 1 (1), 2 (0: false), 3 (2: false).
  assert m['top1'] == pytest.approx(0.5) and m['num_examples'] == 4
  try:
    from sklearn.metrics import average_precision_score
  except ImportError:
    return
  for c in range(3):
    assert m['per_class_ap'][c] == pytest.approx(average_precision_score(label[:, c],
                                                                         probs[:, c]))
