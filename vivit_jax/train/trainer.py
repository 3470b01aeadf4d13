"""The training loop: `train_and_evaluate(config, workdir)`.

Resumable and deterministic: the batch of step s comes from `dataset.train_batches(s)`
and its rngs from `fold_in(train_rng, s)`, and checkpoints hold params, optimiser state
and step, so a run killed at any point and restarted in the same workdir ends with
exactly the parameters of an uninterrupted run. Steps are counted 1-based: "step s"
is the s-th optimiser update, and checkpoint s holds the state after it.
"""
from __future__ import annotations

import json
import os
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from vivit_jax import convert
from vivit_jax.errors import NonFiniteError
from vivit_jax.train import checkpoint as ckpt_lib
from vivit_jax.train import evaluate as eval_lib
from vivit_jax.train import metrics as metrics_lib
from vivit_jax.train import setup as setup_lib
from vivit_jax.train import parallel, pretraining, steps


def _init_from(config, state):
  """Replaces params with a converted checkpoint when `config.init_from` is set."""
  if not config.get('init_from'):
    return state
  params = convert.init_from(config, state.params)
  return steps.TrainState(step=state.step, params=params, opt_state=state.opt_state)


@jax.jit
def _all_finite(tree) -> jnp.ndarray:
  leaves = [jnp.isfinite(x).all() for x in jax.tree.leaves(tree)
            if jnp.issubdtype(x.dtype, jnp.inexact)]
  return jnp.stack(leaves).all() if leaves else jnp.array(True)


def _write_config(config, workdir):
  if jax.process_index() == 0:
    with open(os.path.join(workdir, 'config.json'), 'w') as f:
      f.write(config.to_json_best_effort(indent=2, sort_keys=True))


def _write_label_names(dataset, workdir):
  """DIR/label_names.json: the dataset's class names in label order (for predict); with
  label groups {group: names}, as `data.video_files.load_group_names` reads them."""
  names = getattr(dataset, 'label_names', None)
  spec = getattr(dataset, 'label_spec', None)
  if names is None or jax.process_index() != 0:
    return
  names = [str(n) for n in names]
  if spec is not None and spec.grouped:
    names = {g: [n.split(':', 1)[-1] for n in names[s]]
             for g, s in zip(spec.group_names, spec.slices())}
  with open(os.path.join(workdir, 'label_names.json'), 'w') as f:
    json.dump(names, f, indent=1)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains `config` in `workdir` (resuming from its newest checkpoint), evaluating on
  'validation' every `trainer.eval_every` steps and at the end.

  Returns {'step': int, 'preempted': bool, 'train': last train metrics,
  'validation': last validation metrics, 'history': [(step, train metrics)] of this
  process's log points}, also written to DIR/train_summary.json (see _write_summary).
  Raises NonFiniteError naming the step if the
  loss or params become non-finite (nothing non-finite is ever saved).
  """
  from clu import metric_writers, periodic_actions   # imports TensorFlow.

  s = setup_lib.setup(config, workdir)
  t = config.trainer
  num_steps = int(t.num_train_steps)
  os.makedirs(workdir, exist_ok=True)
  _write_config(config, workdir)
  _write_label_names(s.dataset, workdir)
  writer = metric_writers.create_default_writer(workdir,
                                                just_logging=jax.process_index() > 0)
  ckpts = ckpt_lib.Checkpoints(workdir, keep=t.keep_checkpoints,
                               async_save=t.get('async_checkpointing', True))
  par = s.par
  train_rng = jax.random.fold_in(s.root_rng, 1)

  start = ckpts.latest_step()
  if start is not None:
    logging.info('Resuming from %s/%d.', ckpts.directory, start)
    state = ckpts.restore(start, par.with_sharding(s.abstract_state))
  else:
    start = 0
    init = jax.jit(s.init_state, out_shardings=par.shardings(s.abstract_state))
    state = _init_from(config, init(jax.random.fold_in(s.root_rng, 0)))   # in place.
  state = par.put_state(state)
  logging.info('Training %s for %d steps (batch %d on %d devices, %s).',
               config.get('experiment_name') or config.model.get('name'), num_steps,
               t.batch_size, jax.device_count(), par.name)

  summaries = None
  if int(t.get('summary_clips', 0) or 0) > 0:
    if jax.process_count() > 1:
      logging.warning('trainer.summary_clips is ignored with %d processes.',
                      jax.process_count())
    elif s.task == 'masked_pretraining':   # input / masked / reconstruction pictures.
      summaries = pretraining.ReconstructionSummaries(config, s.model, t.summary_clips)
    elif s.label_spec.grouped or s.label_spec.multi_label:
      logging.warning('trainer.summary_clips draws single-label clips only; ignored for '
                      'label groups and multi-label data.')
    else:
      summaries = eval_lib.AttentionSummaries(config, s.model, t.summary_clips,
                                              getattr(s.dataset, 'label_names', None))
  report = periodic_actions.ReportProgress(num_train_steps=num_steps, writer=None,
                                           every_steps=t.log_every)
  eval_bs = t.get('eval_batch_size', t.batch_size) // jax.process_count()   # local.
  pending, last_train, last_val, history = [], {}, {}, []
  last_saved = start if start else None
  timer = [time.time(), start]
  input_wait = [0.0]     # seconds blocked on next(batches) since the last flush.

  def flush(step):
    """Fetches pending per-step metrics, stops on non-finite loss, writes means."""
    nonlocal pending, last_train
    if not pending:
      return
    fetched = jax.device_get([m for _, m in pending])
    for (s_, _), m in zip(pending, fetched):
      if not np.isfinite(m['loss']):
        _fail(s_, f'loss {m["loss"]}')
    summary = {f'train_{k}': float(np.mean([m[k] for m in fetched])) for k in fetched[0]}
    summary['train_lr'] = float(fetched[-1]['lr'])
    dt = time.time() - timer[0]
    n = step - timer[1]
    if dt > 0 and n > 0:
      summary['steps_per_sec'] = n / dt
      summary['clips_per_sec'] = n * t.batch_size / dt
      summary['input_wait_fraction'] = input_wait[0] / dt
    summary.update(getattr(s.dataset, 'stats', dict)())   # e.g. data_failures_train.
    input_wait[0] = 0.0
    writer.write_scalars(step, summary)
    pending, last_train = [], summary
    history.append((step, summary))
    timer[:] = [time.time(), step]

  def _fail(step, what):
    ckpts.wait()
    where = (f'the newest checkpoint is {ckpts.directory}/{last_saved}' if last_saved
             else 'no checkpoint was saved')
    raise NonFiniteError(f'Non-finite {what} at training step {step} of {num_steps}; '
                         f'nothing after it was saved ({where}). Lower '
                         'schedule.base_lr or enable optimizer.grad_clip_norm.')

  def check_params(step):
    if not bool(_all_finite(par.get_state(state).params)):
      _fail(step, 'parameters after the update')

  step = start
  preempted = False
  ckpts.install_sigterm()
  try:
    if start < num_steps:
      batches = parallel.prefetch_to_device(   # device batches, transfers ahead.
          s.dataset.train_batches(start, t.batch_size // jax.process_count()),
          par.put_batch, t.get('prefetch_to_device', 2))
    for step in range(start + 1, num_steps + 1):
      waited = time.time()
      batch = next(batches)
      input_wait[0] += time.time() - waited
      state, metrics = par.train_step(state, batch, train_rng)
      pending.append((step, metrics))
      report(step)
      preempted = ckpts.preempted(step)
      last = step == num_steps
      if step % t.log_every == 0 or last or preempted:
        flush(step)
      if step % t.checkpoint_every == 0 or last or preempted:
        flush(step)
        check_params(step)
        ckpts.save(par.get_state(state))
        last_saved = step
      if preempted:
        logging.warning('Preempted: saved step %d, exiting.', step)
        break
      if step % t.eval_every == 0 or last:
        flush(step)
        check_params(step)
        with report.timed('eval'):
          last_val = eval_lib.run_eval(par, state, s.dataset, 'validation', eval_bs,
                                       s.num_classes, label_spec=s.label_spec,
                                       task=s.task)
        writer.write_scalars(step, {f'validation_{k}': v
                                    for k, v in metrics_lib.scalars(last_val).items()})
        if summaries is not None:
          writer.write_images(step, {f'validation_{summaries.name}': summaries(
              par.get_state(state).params, s.dataset)})
        ckpts.maybe_save_best(par.get_state(state), last_val)
        timer[:] = [time.time(), step]
    if start >= num_steps:
      logging.info('Nothing to do: checkpoint step %d >= num_train_steps %d.', start,
                   num_steps)
  finally:   # also on errors: finish pending saves before the process exits.
    ckpts.wait()
    ckpts.close()
    writer.flush()
    writer.close()
  result = {'step': step, 'preempted': preempted, 'train': last_train,
            'validation': last_val, 'history': history}
  _write_summary(result, workdir)
  return result


def _write_summary(result: dict, workdir: str) -> None:
  """DIR/train_summary.json: final step, last train/validation metrics, the median
  train clips/s over this run's log intervals (the first, which includes compilation,
  is left out when there are others) and the peak device memory where the backend
  reports it (GPU/TPU; None on CPU)."""
  if jax.process_index() != 0:
    return
  speeds = [m['clips_per_sec'] for _, m in result['history'] if 'clips_per_sec' in m]
  stats = jax.local_devices()[0].memory_stats() or {}
  summary = {k: result[k] for k in ('step', 'preempted', 'train', 'validation')}
  summary['train_clips_per_sec'] = float(np.median(speeds[1:] or speeds)) if speeds else None
  summary['peak_device_bytes'] = stats.get('peak_bytes_in_use')
  with open(os.path.join(workdir, 'train_summary.json'), 'w') as f:
    json.dump(summary, f, indent=2, default=float)
