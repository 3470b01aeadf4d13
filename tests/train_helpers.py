"""Configs and checkpoint readers shared by the trainer and CLI tests."""
import importlib.util
import os

import jax

from vivit_jax.train import checkpoint as ckpt_lib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))   # the repository root.


def synthetic_config(model=1, arg='tiny', **trainer_overrides):
  """configs/synthetic/vivit_model<model>.py:<arg>, loaded like config_flags does."""
  path = os.path.join(REPO, 'configs', 'synthetic', f'vivit_model{model}.py')
  spec = importlib.util.spec_from_file_location('cfg', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config(arg)
  config.trainer.async_checkpointing = False     # deterministic files for the asserts.
  for k, v in trainer_overrides.items():
    setattr(config.trainer, k, v)
  return config


def final_params(workdir, checkpoint=None):
  """(step, params) of the newest checkpoint of `workdir` (or `checkpoint`)."""
  step_dir, step = ckpt_lib.resolve_checkpoint(workdir, checkpoint)
  return step, jax.device_get(ckpt_lib.load_params(step_dir))
