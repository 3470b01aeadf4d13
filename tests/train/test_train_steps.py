"""Unit tests of train/: steps, optimiser, parallel wrappers, checkpoints, metrics."""
import functools
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vivit_jax import config as vc
from vivit_jax import models
from vivit_jax.config import ConfigError
from vivit_jax.train import checkpoint as ckpt_lib
from vivit_jax.train import metrics as metrics_lib
from vivit_jax.train import optim, parallel, steps, trainer

NUM_CLASSES = 5


def tiny_config(**trainer_overrides):
  c = vc.default_config()
  m = c.model
  m.attention_type, m.classifier = 'spatio_temporal', 'token'
  m.hidden_size, m.num_layers, m.num_heads, m.mlp_dim = 16, 1, 2, 32
  m.patch_size, m.temporal_patch_size = (4, 4), 2
  c.dataset.num_frames, c.dataset.crop_size, c.dataset.num_classes = 4, 8, NUM_CLASSES
  c.optimizer.name, c.optimizer.weight_decay = 'adamw', 0.1
  c.schedule.base_lr, c.schedule.warmup_steps = 3e-3, 2
  c.trainer.batch_size = c.trainer.eval_batch_size = 16
  c.trainer.num_train_steps = 10
  for k, v in trainer_overrides.items():
    setattr(c.trainer, k, v)
  return c


def random_batch(seed, b=16, t=4, hw=8):
  rng = np.random.default_rng(seed)
  return {'video': rng.normal(size=(b, t, hw, hw, 3)).astype(np.float32),
          'label': rng.integers(0, NUM_CLASSES, b).astype(np.int32)}


# -- multi-view evaluation ----------------------------------------------------------

# Logit rows a fake model returns; the video's single pixel value selects the row.
_LOGITS = np.array([[10., 0., 0.],    # 0: confident class 0
                    [0., 3., 0.],     # 1: class 1
                    [0., 0., 1.]])    # 2: class 2


def _lookup_apply(variables, video, train=False):
  del variables, train
  return jnp.asarray(_LOGITS)[video[:, 0, 0, 0, 0].astype(jnp.int32)]


def test_multiview_averages_softmax_not_logits():
  # Example 0 (label 1): views [row 0, row 1, row 1]. Mean softmax: class 0 gets
  # (1 + 2 * 0.045) / 3 = 0.36, class 1 gets 2 * 0.909 / 3 = 0.61 -> predicts 1 (right);
  # averaging logits ([3.3, 2, 0]) would predict 0.
  # Example 1 (label 0): three views of row 2 -> predicts 2 (wrong).
  # Example 2 (label 2, padding, mask 0): would be right but must not count.
  rows = np.array([[0, 1, 1], [2, 2, 2], [2, 2, 2]], np.float32)
  batch = {'video': rows[:, :, None, None, None, None],     # [B=3, V=3, T, H, W, C=1]
           'label': np.array([1, 0, 2]), 'mask': np.array([1., 1., 0.])}
  probs = np.asarray(steps.eval_step(None, batch, apply_fn=_lookup_apply))
  assert probs.shape == (3, 3)
  np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-6)
  assert probs[0].argmax() == 1 and _LOGITS[[0, 1, 1]].mean(0).argmax() == 0
  m = metrics_lib.classification_metrics(probs, batch['label'], batch['mask'],
                                      num_classes=3, confusion=True)
  assert m['top1'] == 0.5 and m['num_examples'] == 2
  assert m['confusion_matrix'] == [[0, 0, 1], [0, 1, 0], [0, 0, 0]]
  assert m['per_class_accuracy'][:2] == [0.0, 1.0] and np.isnan(m['per_class_accuracy'][2])


def test_top5_counts_label_in_five_highest():
  probs = np.array([np.arange(7) / 21.0] * 2)      # ranking: 6 > 5 > 4 > 3 > 2 > 1 > 0
  m = metrics_lib.classification_metrics(probs, np.array([2, 1]))
  assert m['top1'] == 0.0 and m['top5'] == 0.5


# -- optimiser ----------------------------------------------------------------------

def _tiny_params(config):
  model = models.create_model(config.model, NUM_CLASSES)
  video = jnp.zeros((1, 4, 8, 8, 3))
  init = jax.jit(lambda rng: model.init(rng, video, train=False)['params'])
  return model, init(jax.random.PRNGKey(0))


def test_weight_decay_mask_skips_biases_norms_embeddings():
  _, params = _tiny_params(tiny_config())
  flat = {optim._path_str(p): v for p, v in
          jax.tree_util.tree_leaves_with_path(optim.weight_decay_mask(params))}
  assert flat['cls'] is False
  assert flat['Transformer/posembed_input/pos_embedding'] is False
  assert flat['embedding/bias'] is False and flat['embedding/kernel'] is True
  assert flat['output_projection/kernel'] is True
  for name, decayed in flat.items():
    last = name.split('/')[-1]
    if last in ('bias', 'scale'):
      assert not decayed, name
    if last == 'kernel':
      assert decayed, name


def test_schedule_warmup_then_cosine_to_end_lr():
  c = tiny_config()
  c.schedule.base_lr, c.schedule.warmup_steps, c.schedule.end_lr = 0.4, 10, 0.04
  lr = optim.create_learning_rate_fn(c, 110)
  np.testing.assert_allclose([lr(0), lr(5), lr(10), lr(60), lr(110)],
                             [0.0, 0.2, 0.4, 0.22, 0.04], rtol=1e-5)
  c.schedule.name = 'constant'
  assert float(optim.create_learning_rate_fn(c, 110)(77)) == pytest.approx(0.4)
  c.schedule.name = 'linear'
  with pytest.raises(ConfigError, match="schedule.name='linear'"):
    optim.create_learning_rate_fn(c, 110)


def test_label_smoothing_and_mixup():
  t = steps.onehot_targets(jnp.array([0, 2]), 4, label_smoothing=0.2)
  np.testing.assert_allclose(t, [[0.85, 0.05, 0.05, 0.05], [0.05, 0.05, 0.85, 0.05]],
                             rtol=1e-6)
  video = jnp.arange(4.0).reshape(4, 1, 1, 1, 1)
  v, y, lam = steps.mixup(jax.random.PRNGKey(3), video, jnp.eye(4), alpha=0.4)
  assert 0.5 <= lam <= 1.0
  np.testing.assert_allclose(v[:, 0, 0, 0, 0], lam * np.arange(4) + (1 - lam) * np.arange(4)[::-1],
                             rtol=1e-6)
  np.testing.assert_allclose(y.sum(-1), 1.0, rtol=1e-6)
  assert (np.argmax(y, -1) == np.arange(4)).all()


def test_temporal_controls_remove_frame_order():
  video = jnp.arange(6.0)[None, :, None, None, None] * jnp.ones((2, 6, 2, 2, 3))
  single = steps.temporal_control(video, 'single_frame')
  assert (single == video[:, 3:4]).all()
  shuffled = steps.temporal_control(video, 'shuffle', jax.random.PRNGKey(0))
  order = np.asarray(shuffled[0, :, 0, 0, 0])
  assert sorted(order) == list(range(6)) and list(order) != list(range(6))
  assert steps.temporal_control(video, 'none') is video
  with pytest.raises(ValueError, match="'reverse'"):
    steps.temporal_control(video, 'reverse')


# -- data parallelism ---------------------------------------------------------------

def _run_steps(config, params, tx, lr_fn, apply_fn, batches, parallelism=None):
  """3 updates; parallelism None = one device, plain jit."""
  step_fn = functools.partial(steps.train_step, apply_fn=apply_fn, tx=tx, lr_fn=lr_fn,
                              num_classes=NUM_CLASSES,
                              grad_accum_steps=config.trainer.grad_accum_steps)
  rng = jax.random.PRNGKey(7)
  state = steps.create_train_state(params, tx)
  if parallelism is None:
    fn = jax.jit(step_fn)
    with jax.default_device(jax.devices()[0]):
      for b in batches:
        state, metrics = fn(state, b, rng)
    return state, metrics
  config.trainer.parallelism = parallelism
  par = parallel.make_parallel(config, train_step_fn=step_fn,
                               eval_step_fn=functools.partial(steps.eval_step,
                                                              apply_fn=apply_fn))
  state = par.put_state(state)
  for b in batches:
    state, metrics = par.train_step(state, par.put_batch(b), rng)
  return par.get_state(state), metrics


@pytest.mark.parametrize('accum', [1, 2])
def test_jit_and_pmap_match_single_device(accum):
  assert jax.device_count() == 8
  c = tiny_config(grad_accum_steps=accum)
  # SGD: Adam's g / sqrt(v) turns float rounding of near-zero gradients into lr-sized
  # differences, which would hide real bugs behind a loose tolerance.
  c.optimizer.name, c.schedule.base_lr = 'sgd', 0.1
  model, params = _tiny_params(c)
  tx, lr_fn = optim.create_optimizer(c, 10)
  batches = [random_batch(s) for s in range(3)]
  ref, ref_m = _run_steps(c, params, tx, lr_fn, model.apply, batches)
  assert int(ref.step) == 3
  for kind in ('jit', 'pmap'):
    got, m = _run_steps(c, params, tx, lr_fn, model.apply, batches, kind)
    assert int(got.step) == 3
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=2e-6),
                 jax.device_get(got.params), jax.device_get(ref.params))
    for k in ('loss', 'accuracy', 'grad_norm', 'lr'):
      np.testing.assert_allclose(m[k], ref_m[k], rtol=1e-5, err_msg=f'{kind} {k}')
  # The params moved: the comparison is not vacuous.
  moved = jax.tree.map(lambda a, b: float(np.abs(np.asarray(a) - b).max()), ref.params, params)
  assert max(jax.tree.leaves(moved)) > 1e-3


def test_pmap_eval_matches_jit_eval():
  c = tiny_config()
  model, params = _tiny_params(c)
  state = steps.TrainState(step=jnp.int32(0), params=params, opt_state=())
  batch = random_batch(0)
  batch = {'video': np.stack([batch['video']] * 2, 1), 'label': batch['label'],
           'mask': np.ones(16, np.float32)}
  outs = []
  for kind in ('jit', 'pmap'):
    c.trainer.parallelism = kind
    par = parallel.make_parallel(c, train_step_fn=lambda *a: a, eval_step_fn=functools.partial(
        steps.eval_step, apply_fn=model.apply))
    outs.append(par.predict(par.put_state(state), batch))
  np.testing.assert_allclose(outs[0]['probs'], outs[1]['probs'], rtol=1e-5, atol=1e-7)
  np.testing.assert_array_equal(outs[1]['label'], batch['label'])


# -- config errors before compute ---------------------------------------------------

def test_batch_not_divisible_by_devices_fails_before_compute(tmp_path, monkeypatch):
  def boom(*args, **kwargs):
    raise AssertionError('compute started before the config error')
  monkeypatch.setattr(models, 'create_model', boom)
  c = tiny_config(batch_size=12)
  workdir = str(tmp_path / 'run')
  with pytest.raises(ConfigError, match=r'trainer\.batch_size=12.*device count 8'):
    trainer.train_and_evaluate(c, workdir)
  assert not os.path.exists(workdir)
  c = tiny_config(eval_batch_size=20)
  with pytest.raises(ConfigError, match=r'trainer\.eval_batch_size=20'):
    trainer.train_and_evaluate(c, workdir)
  c = tiny_config(grad_accum_steps=3)
  with pytest.raises(ConfigError, match=r'trainer\.grad_accum_steps=3'):
    trainer.train_and_evaluate(c, workdir)
  c = tiny_config(parallelism='pmapp')
  with pytest.raises(ConfigError, match=r"trainer\.parallelism='pmapp'"):
    trainer.train_and_evaluate(c, workdir)
  assert not os.path.exists(workdir)


# -- checkpoints --------------------------------------------------------------------

def _fake_state(step):
  return steps.TrainState(step=jnp.int32(step), params={'w': jnp.full((3,), float(step))},
                          opt_state=(jnp.zeros(()),))


def test_best_checkpoint_keeps_highest_validation_top1(tmp_path):
  workdir = str(tmp_path)
  ck = ckpt_lib.Checkpoints(workdir, keep=2, async_save=False)
  for step, top1 in [(1, 0.2), (2, 0.6), (3, 0.4)]:
    ck.save(_fake_state(step))
    ck.maybe_save_best(_fake_state(step), {'top1': top1, 'loss': 1.0})
  ck.close()
  assert ckpt_lib.resolve_checkpoint(workdir, 'best')[1] == 2
  assert ckpt_lib.resolve_checkpoint(workdir)[1] == 3
  assert ckpt_lib.resolve_checkpoint(workdir, 'latest')[1] == 3
  step_dir, step = ckpt_lib.resolve_checkpoint(workdir, 'best')
  np.testing.assert_array_equal(ckpt_lib.load_params(step_dir)['w'], [2., 2., 2.])
  assert sorted(os.listdir(os.path.join(workdir, 'checkpoints'))) == ['2', '3', 'best']

  # A resumed run knows the best so far: a worse model does not replace it.
  ck = ckpt_lib.Checkpoints(workdir, keep=2, async_save=False)
  assert ck.best_top1() == pytest.approx(0.6)
  assert not ck.maybe_save_best(_fake_state(4), {'top1': 0.5})
  assert ck.maybe_save_best(_fake_state(5), {'top1': 0.9})
  ck.close()
  step_dir, step = ckpt_lib.resolve_checkpoint(workdir, 'best')
  assert step == 5 and step_dir.endswith(os.path.join('best', '5'))
  assert os.listdir(os.path.join(workdir, 'checkpoints', 'best')) == ['5']
  # A step directory given as a path.
  assert ckpt_lib.resolve_checkpoint(workdir, step_dir) == (step_dir, 5)
  with pytest.raises(FileNotFoundError, match='No checkpoint'):
    ckpt_lib.resolve_checkpoint(str(tmp_path / 'nowhere'))


def test_checkpoint_restores_state_exactly(tmp_path):
  c = tiny_config()
  model, params = _tiny_params(c)
  tx, _ = optim.create_optimizer(c, 10)
  state = steps.create_train_state(params, tx)
  state = state.replace(step=jnp.int32(7), opt_state=jax.tree.map(
      lambda x: x + 0.25 if jnp.issubdtype(x.dtype, jnp.floating) else x + 3, state.opt_state))
  ck = ckpt_lib.Checkpoints(str(tmp_path), async_save=False)
  ck.save(state)
  restored = ck.restore(7, jax.eval_shape(lambda: state))
  ck.close()
  assert int(restored.step) == 7
  assert jax.tree.structure(restored) == jax.tree.structure(state)
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(restored),
               jax.device_get(state))
