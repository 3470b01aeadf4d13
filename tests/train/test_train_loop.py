"""The training loop end to end, in process: outputs, pmap == jit, NaN guard, learning."""
import json
import os

import jax
import numpy as np
import pytest

import vivit_jax.data
from vivit_jax.train import trainer

from train_helpers import final_params, synthetic_config


def all_finite(tree):
  return all(np.isfinite(x).all() for x in jax.tree.leaves(tree))


def test_train_writes_run_and_pmap_matches_jit(tmp_path):
  config = synthetic_config(num_train_steps=20, checkpoint_every=10, eval_every=10,
                            log_every=5)
  config.optimizer.name, config.schedule.base_lr = 'sgd', 0.05   # see test_train_steps.
  jit_dir = str(tmp_path / 'jit')
  out = trainer.train_and_evaluate(config, jit_dir)
  assert out['step'] == 20 and not out['preempted']
  assert set(out['train']) >= {'train_loss', 'train_accuracy', 'train_grad_norm',
                               'train_lr', 'steps_per_sec', 'clips_per_sec'}
  assert out['validation']['num_examples'] == config.dataset.num_eval_examples
  files = os.listdir(jit_dir)
  assert 'config.json' in files and any(f.startswith('events.out.tfevents') for f in files)
  with open(os.path.join(jit_dir, 'config.json')) as f:
    assert json.load(f)['model']['attention_type'] == 'spatio_temporal'
  assert sorted(os.listdir(os.path.join(jit_dir, 'checkpoints'))) == ['10', '20', 'best']
  assert len(os.listdir(os.path.join(jit_dir, 'checkpoints', 'best'))) == 1

  # Rerunning a finished run is a no-op that keeps the parameters.
  step, params = final_params(jit_dir)
  assert trainer.train_and_evaluate(config, jit_dir)['step'] == 20
  jax.tree.map(np.testing.assert_array_equal, final_params(jit_dir)[1], params)

  config.trainer.parallelism = 'pmap'
  pmap_dir = str(tmp_path / 'pmap')
  trainer.train_and_evaluate(config, pmap_dir)
  step_p, params_p = final_params(pmap_dir)
  assert step_p == step == 20
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
               params_p, params)


def _poison(monkeypatch, bad_step):
  """Makes the batch of (1-based) step `bad_step` contain a NaN pixel."""
  get_dataset = vivit_jax.data.get_dataset

  def patched(config, **kwargs):
    ds = get_dataset(config, **kwargs)
    batches = ds.train_batches

    def train_batches(start_step, batch_size):
      for step, batch in enumerate(batches(start_step, batch_size), start_step + 1):
        if step == bad_step:
          batch = dict(batch, video=batch['video'].copy())
          batch['video'][0, 0, 0, 0, 0] = np.nan
        yield batch
    ds.train_batches = train_batches
    return ds
  monkeypatch.setattr(vivit_jax.data, 'get_dataset', patched)


def test_nan_loss_stops_with_step_and_keeps_finite_checkpoint(tmp_path, monkeypatch):
  workdir = str(tmp_path / 'nan')
  config = synthetic_config(num_train_steps=20, checkpoint_every=5, eval_every=100,
                            log_every=5)
  _poison(monkeypatch, bad_step=13)
  with pytest.raises(FloatingPointError, match=r'loss nan at training step 13 of 20'):
    trainer.train_and_evaluate(config, workdir)
  step, params = final_params(workdir)
  assert step == 10 and all_finite(params)
  assert sorted(os.listdir(os.path.join(workdir, 'checkpoints'))) == ['10', '5', 'best']


def test_exploding_lr_never_saves_non_finite_params(tmp_path):
  workdir = str(tmp_path / 'lr')
  config = synthetic_config(num_train_steps=20, checkpoint_every=1, log_every=10)
  config.schedule.name, config.schedule.base_lr = 'constant', 1e30
  config.schedule.warmup_steps, config.optimizer.grad_clip_norm = 0, None
  with pytest.raises(FloatingPointError, match=r'Non-finite .* at training step \d+ of 20'):
    trainer.train_and_evaluate(config, workdir)
  steps = [int(d) for d in os.listdir(os.path.join(workdir, 'checkpoints')) if d.isdigit()]
  assert max(steps, default=0) < 5      # it stopped within a few steps...
  for step in steps:                    # ...and everything it saved is finite.
    assert all_finite(final_params(workdir, os.path.join(workdir, 'checkpoints', str(step)))[1])


def test_training_loss_falls_on_synthetic_task(tmp_path):
  config = synthetic_config(num_train_steps=60, log_every=10, eval_every=60,
                            checkpoint_every=60)
  # 64 videos seen 15 times: the tiny model can at least fit its training set.
  config.schedule.base_lr, config.dataset.num_train_examples = 1e-2, 64
  out = trainer.train_and_evaluate(config, str(tmp_path / 'learn'))
  losses = [m['train_loss'] for _, m in out['history']]
  assert [step for step, _ in out['history']] == [10, 20, 30, 40, 50, 60]
  assert losses[-1] < losses[0] - 0.2, losses
