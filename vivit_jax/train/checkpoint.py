"""Orbax checkpoints of a run: the newest few, the best by validation top-1, preemption.

This is the write side; reading a checkpoint (`resolve_checkpoint`, `load_params`) lives in
`convert/checkpoints.py`, which the converters share.

Layout under the workdir:
  checkpoints/<step>/{params,opt_state,meta}        newest `trainer.keep_checkpoints`
  checkpoints/best/<step>/{params,opt_state,meta}    best validation top-1 (one kept)
`meta` is JSON: {'step': int, 'metrics': {...}}. Params and optimiser state are
separate items so evaluation and prediction restore params alone.
"""
from __future__ import annotations

import os
import signal
import threading
from typing import Optional

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging

from vivit_jax.convert.checkpoints import (  # noqa: F401  (the read side, re-exported)
    BEST_DIR, CHECKPOINT_DIR, abstract as _abstract, load_params, resolve_checkpoint)
from vivit_jax.train.steps import TrainState

class Checkpoints:
  """The run's two orbax managers (latest and best) and a SIGTERM flag.

  A small stateful wrapper because orbax managers are stateful; everything else in
  train/ is functions.
  """

  def __init__(self, workdir: str, keep: int = 3, async_save: bool = True):
    self.directory = os.path.join(os.path.abspath(workdir), CHECKPOINT_DIR)
    opts = dict(cleanup_tmp_directories=True, enable_async_checkpointing=async_save)
    self.latest = ocp.CheckpointManager(
        self.directory, options=ocp.CheckpointManagerOptions(max_to_keep=keep, **opts))
    self.best = ocp.CheckpointManager(
        os.path.join(self.directory, BEST_DIR),
        options=ocp.CheckpointManagerOptions(
            max_to_keep=1, best_fn=lambda m: m['top1'], best_mode='max', **opts))
    self._sigterm = threading.Event()
    self._old_handler = None
    step = self.best.best_step()
    self._best_top1 = -np.inf if step is None else float(self.best.metrics(step)['top1'])

  # -- saving ---------------------------------------------------------------------
  def save(self, state: TrainState, metrics: Optional[dict] = None) -> int:
    """Saves `state` (one copy, any sharding) as the newest checkpoint; async."""
    step = int(jax.device_get(state.step))
    self.latest.save(step, args=_save_args(_one_copy(state), step, metrics), force=True)
    return step

  def best_top1(self) -> float:
    """Validation top-1 of the best checkpoint so far (-inf if none)."""
    return self._best_top1

  def maybe_save_best(self, state: TrainState, metrics: dict) -> bool:
    """Saves `state` under best/ if `metrics['top1']` beats the best so far (never
    without a top-1: masked pretraining)."""
    if 'top1' not in metrics:
      return False
    top1 = float(metrics['top1'])
    if not top1 > self.best_top1():
      return False
    step = int(jax.device_get(state.step))
    self.best.save(step, args=_save_args(_one_copy(state), step, metrics),
                   metrics={'top1': top1}, force=True)
    self._best_top1 = top1
    return True

  def wait(self):
    self.latest.wait_until_finished()
    self.best.wait_until_finished()

  def close(self):
    self.latest.close()
    self.best.close()
    self.uninstall_sigterm()

  # -- restoring ------------------------------------------------------------------
  def latest_step(self) -> Optional[int]:
    return self.latest.latest_step()

  def restore(self, step: int, abstract_state: TrainState, best: bool = False) -> TrainState:
    """Restores the full state saved at `step` into `abstract_state`'s shapes/shardings."""
    mngr = self.best if best else self.latest
    r = mngr.restore(step, args=ocp.args.Composite(
        params=ocp.args.StandardRestore(_abstract(abstract_state.params)),
        opt_state=ocp.args.StandardRestore(_abstract(abstract_state.opt_state)),
        meta=ocp.args.JsonRestore()))
    return TrainState(step=jax.numpy.asarray(r.meta['step'], jax.numpy.int32),
                      params=r.params, opt_state=r.opt_state)

  # -- preemption -----------------------------------------------------------------
  def install_sigterm(self):
    """On SIGTERM, set a flag the train loop polls (`preempted`), then save and exit."""
    if threading.current_thread() is not threading.main_thread():
      return
    def handler(signum, frame):
      logging.warning('Received signal %d: saving a checkpoint and exiting.', signum)
      self._sigterm.set()
    self._old_handler = signal.signal(signal.SIGTERM, handler)

  def uninstall_sigterm(self):
    if self._old_handler is not None:
      signal.signal(signal.SIGTERM, self._old_handler)
      self._old_handler = None

  def preempted(self, step: int) -> bool:
    """True once SIGTERM arrived (single process) or on a multi-host preemption
    notice (orbax `reached_preemption`, agreed by all hosts)."""
    if jax.process_count() > 1:
      return self.latest.reached_preemption(step)
    return self._sigterm.is_set()


def _one_copy(tree):
  """Single-process: replicated arrays -> their device-0 copy (no data moves). Saves
  orbax slicing every array over the replicas (one compile per shape on CPU/TPU)."""
  if jax.process_count() > 1:
    return tree
  def one(x):
    if isinstance(x, jax.Array) and len(x.sharding.device_set) > 1 and x.is_fully_replicated:
      return x.addressable_data(0)
    return x
  return jax.tree.map(one, tree)


def _save_args(state: TrainState, step: int, metrics: Optional[dict]):
  meta = {'step': step}
  if metrics:
    meta['metrics'] = {k: float(v) for k, v in metrics.items() if np.ndim(v) == 0}
  return ocp.args.Composite(params=ocp.args.StandardSave(state.params),
                            opt_state=ocp.args.StandardSave(state.opt_state),
                            meta=ocp.args.JsonSave(meta))
