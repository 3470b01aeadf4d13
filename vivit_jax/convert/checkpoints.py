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
  `abstract_params`' shapes/shardings; arrays without a sharding (or all, if
  `abstract_params` is None: the saved shapes) go to this process's first device,
  whatever topology or mesh wrote them."""
  ckptr = ocp.StandardCheckpointer()
  path = os.path.join(step_dir, 'params')
  if abstract_params is None:
    metadata = ckptr.metadata(path)
    abstract_params = getattr(metadata, 'item_metadata', metadata)
  params = ckptr.restore(path, _placed(abstract_params))
  ckptr.close()
  return params


def _placed(tree):
  """ShapeDtypeStructs of `tree` (arrays, structs or orbax metadata), each with its own
  sharding or else on jax.local_devices()[0]: a restore target (orbax refuses a
  checkpoint written by another topology without one)."""
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  def place(x):
    sharding = getattr(x, 'sharding', None)
    if not isinstance(sharding, jax.sharding.Sharding):    # none, or orbax metadata.
      sharding = device
    return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding)
  return jax.tree.map(place, tree)
