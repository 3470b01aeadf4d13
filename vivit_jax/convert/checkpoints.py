"""Reading vivit_jax checkpoints: a workdir's `checkpoints/<step>` (or `best/<step>`)
step directories, written by `train/checkpoint.py`, and converted directories.

A step directory holds orbax items `params`, `opt_state` and `meta` ({'step': int,
'metrics': {...}}); params restore alone.
"""
from __future__ import annotations

import json
import os
from typing import Any, Optional

import jax
import orbax.checkpoint as ocp

from vivit_jax.errors import CheckpointNotFoundError

CHECKPOINT_DIR = 'checkpoints'
BEST_DIR = 'best'


def abstract(tree):
  """ShapeDtypeStructs (with shardings) of `tree`: an orbax restore target."""
  return jax.tree.map(ocp.utils.to_shape_dtype_struct, tree)


def resolve_checkpoint(workdir: str, checkpoint: Optional[str] = None) -> tuple[str, int]:
  """Returns (step directory, step) for 'latest'/None, 'best', a workdir, a
  checkpoints/ directory or a step directory. Raises FileNotFoundError naming it."""
  ckpt_root = os.path.join(os.path.abspath(workdir), CHECKPOINT_DIR)
  if checkpoint in (None, '', 'latest', 'newest'):
    root, best = ckpt_root, False
  elif checkpoint == 'best':
    root, best = os.path.join(ckpt_root, BEST_DIR), True
  else:
    path = os.path.abspath(checkpoint)
    if os.path.isdir(os.path.join(path, 'params')):      # a step directory.
      return path, _read_step(path)
    if os.path.isdir(os.path.join(path, CHECKPOINT_DIR)):  # a workdir.
      path = os.path.join(path, CHECKPOINT_DIR)
    root, best = path, False
  if not os.path.isdir(root):
    raise CheckpointNotFoundError(f'No checkpoint directory {root} (checkpoint={checkpoint!r}, '
                            f'workdir={workdir!r}).')
  mngr = ocp.CheckpointManager(
      root, options=ocp.CheckpointManagerOptions(
          read_only=True, create=False,
          best_fn=(lambda m: m['top1']) if best else None))
  step = mngr.best_step() if best else mngr.latest_step()
  mngr.close()
  if step is None:
    raise CheckpointNotFoundError(f'No checkpoint found in {root} (checkpoint={checkpoint!r}).')
  return os.path.join(root, str(step)), step


def _read_step(step_dir: str) -> int:
  meta = os.path.join(step_dir, 'meta', 'metadata')
  if os.path.exists(meta):
    with open(meta) as f:
      return int(json.load(f)['step'])
  base = os.path.basename(os.path.normpath(step_dir))
  if base.isdigit():
    return int(base)
  raise ValueError(f'Cannot tell the step of checkpoint {step_dir!r}: expected a '
                   'meta/ item or a numeric directory name.')


def load_params(step_dir: str, abstract_params: Any = None):
  """Params saved in a step directory (see `resolve_checkpoint`), restored into
  `abstract_params`' shapes/shardings (if None: the saved shapes on this process's
  first device, whatever topology wrote them)."""
  ckptr = ocp.StandardCheckpointer()
  path = os.path.join(step_dir, 'params')
  if abstract_params is None:
    target = _on_one_device(ckptr.metadata(path))
  else:
    target = abstract(abstract_params)
  params = ckptr.restore(path, target)
  ckptr.close()
  return params


def _on_one_device(metadata):
  """ShapeDtypeStructs on jax.local_devices()[0] of a checkpoint's saved arrays (a
  restore target: orbax refuses a checkpoint written by another topology without one)."""
  tree = getattr(metadata, 'item_metadata', metadata)
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  return jax.tree.map(
      lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device), tree)
