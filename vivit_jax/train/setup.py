"""What training and evaluation both build from a config, after validating all of it.

`validate(config)` is the whole check of a run's config, before any compute: the config
groups (`config.validate_config`: model, dataset), the trainer and optimiser fields, and
the dataset splits the run will read. `setup(config, workdir)` then builds the dataset,
model, optimiser and the parallel step functions.
"""
from __future__ import annotations

import functools
import types
from typing import Optional

import jax
import jax.numpy as jnp
import ml_collections

from vivit_jax import data, models
from vivit_jax.data import labels
from vivit_jax.config import is_pretraining, validate_config
from vivit_jax.errors import ConfigError, config_error
from vivit_jax.train import optim, parallel, pretraining, steps


def required_splits(config, for_training: bool = True) -> list[str]:
  """The dataset splits a run of `config` reads: train (+ validation when
  `trainer.eval_every` > 0, + test when `trainer.test_at_end`) or, to evaluate, test."""
  if not for_training:
    return ['test']
  t = config.trainer
  splits = ['train']
  if (t.get('eval_every') or 0) > 0:
    splits.append('validation')
  if t.get('test_at_end', True):
    splits.append('test')
  return splits


def validate(config: ml_collections.ConfigDict, for_training: bool = True) -> None:
  """Raises ConfigError (or DataFailureError for a missing split) for anything in
  `config` that cannot work; cheap (no model is built, no video decoded) and without
  starting JAX's backend, so the CLIs call it before `jax.distributed.initialize()`.
  (Batch sizes against the device count are checked by `setup`.)"""
  validate_config(config)
  check_trainer_config(config)
  optim.create_optimizer(config, config.trainer.num_train_steps)   # checks its fields.
  data.check_splits(config, required_splits(config, for_training))


def _temporal_control(config) -> Optional[str]:
  """On-device space-only control (`trainer.temporal_control`), see steps.py."""
  mode = config.trainer.get('temporal_control', None)
  if mode not in (None, '', 'none', 'shuffle', 'single_frame'):
    raise ConfigError(f"config.trainer.temporal_control={mode!r} is invalid: expected "
                      "one of None, 'shuffle', 'single_frame'.")
  return mode or None


def label_spec(config) -> labels.LabelSpec:
  """The run's LabelSpec (data/labels.py), as `config.dataset` describes it."""
  return labels.label_spec(config.dataset)


def view_aggregation(config) -> str:
  """`trainer.view_aggregation` ('softmax' default): see `steps.aggregate_views`."""
  method = config.trainer.get('view_aggregation', 'softmax')
  if method not in steps.VIEW_AGGREGATIONS:
    raise config_error('trainer.view_aggregation', method,
                       f'one of {list(steps.VIEW_AGGREGATIONS)}')
  return method


def check_trainer_config(config) -> None:
  """Trainer fields validate_config does not know; raises ConfigError naming them."""
  t = config.trainer
  for field in ('num_train_steps', 'log_every', 'eval_every', 'checkpoint_every',
                'keep_checkpoints'):
    v = t.get(field)
    if not isinstance(v, int) or v < (0 if field == 'num_train_steps' else 1):
      raise ConfigError(f'config.trainer.{field}={v!r} is invalid: expected a '
                        f'{"non-negative" if field == "num_train_steps" else "positive"} '
                        'integer.')
  ls = t.get('label_smoothing', 0.0) or 0.0
  if not 0.0 <= ls < 1.0:
    raise ConfigError(f'config.trainer.label_smoothing={ls!r} is invalid: expected a '
                      'value in [0, 1).')
  alpha = t.get('mixup_alpha', 0.0) or 0.0
  if alpha < 0:
    raise ConfigError(f'config.trainer.mixup_alpha={alpha!r} is invalid: expected >= 0 '
                      '(0 = no mixup).')
  clips = t.get('summary_clips', 0)
  if not isinstance(clips, int) or isinstance(clips, bool) or clips < 0:
    raise ConfigError(f'config.trainer.summary_clips={clips!r} is invalid: expected an '
                      'integer >= 0 (0 = off).')
  _temporal_control(config)
  view_aggregation(config)
  steps.check(config)
  parallel.check_mesh_config(config)
  pretraining.check(config)


def setup(config: ml_collections.ConfigDict, workdir: str, for_training: bool = True):
  """Validation and everything both training and evaluation build.

  Returns a namespace: dataset, num_classes, model, tx, lr_fn, par (parallel.Parallel),
  abstract_state (TrainState of ShapeDtypeStructs), init_state(rng) -> TrainState,
  root_rng, task (`config.task`; masked pretraining runs pretraining.py's steps).
  """
  validate(config, for_training=for_training)
  parallel.check_batch_sizes(config)   # needs the devices: after JAX's backend starts.
  dataset = data.get_dataset(config)
  num_classes = int(config.dataset.num_classes)
  ds_classes = getattr(dataset, 'num_classes', None)
  if ds_classes is not None and ds_classes != num_classes:
    raise ConfigError(f'config.dataset.num_classes={num_classes} is invalid: the '
                      f'dataset {config.dataset.get("name")!r} has {ds_classes} classes.')
  s = model_and_steps(config)
  s.dataset = dataset
  return s


def model_and_steps(config: ml_collections.ConfigDict):
  """The part of `setup` that needs no data: a namespace of num_classes, model, tx,
  lr_fn, par, abstract_state, init_state(rng), root_rng (see `setup`); for compile-only
  studies (e.g. experiments/fsdp_memory.py). Assumes a validated config."""
  tx, lr_fn = optim.create_optimizer(config, config.trainer.num_train_steps)
  num_classes = int(config.dataset.num_classes)
  model = models.create_model(config.model, num_classes)
  d = config.dataset
  dummy = jnp.zeros((1, d.num_frames, d.crop_size, d.crop_size, 3), jnp.float32)

  def init_state(rng):
    params = model.init({'params': rng, 'dropout': rng}, dummy, train=False)['params']
    return steps.create_train_state(params, tx)

  root_rng = jax.random.PRNGKey(config.trainer.seed)
  mode = _temporal_control(config)
  spec = label_spec(config)
  if is_pretraining(config):   # masked autoencoding: its own steps (pretraining.py).
    train_step, eval_step = pretraining.steps(config, model, tx, lr_fn, root_rng)
  else:
    train_step = functools.partial(
        steps.train_step, apply_fn=model.apply, tx=tx, lr_fn=lr_fn,
        num_classes=num_classes, label_spec=spec,
        label_smoothing=float(config.trainer.get('label_smoothing', 0.0) or 0.0),
        mixup_alpha=float(config.trainer.get('mixup_alpha', 0.0) or 0.0),
        cutmix_alpha=float(config.trainer.get('cutmix_alpha', 0.0) or 0.0),
        mixup_switch_prob=float(config.trainer.get('mixup_switch_prob', 0.5)),
        grad_accum_steps=int(config.trainer.get('grad_accum_steps', 1) or 1),
        temporal_control_mode=mode)
    eval_step = functools.partial(steps.eval_step, apply_fn=model.apply,
                                  temporal_control_mode=mode,
                                  base_rng=jax.random.fold_in(root_rng, 2),
                                  view_aggregation=view_aggregation(config),
                                  label_spec=spec)
  par = parallel.make_parallel(config, train_step_fn=train_step, eval_step_fn=eval_step)
  return types.SimpleNamespace(
      num_classes=num_classes, label_spec=spec, model=model, tx=tx, lr_fn=lr_fn, par=par,
      abstract_state=jax.eval_shape(init_state, root_rng), init_state=init_state,
      root_rng=root_rng, task=config.get('task', 'classification'))
