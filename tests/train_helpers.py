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


def noise_workdir(workdir, config, seed=0, label_names=None):
  """A workdir (config.json, label_names.json, one checkpoint at step 5) holding noise
  params for `config`'s model (no zero head); returns (model, params)."""
  import json

  import jax.numpy as jnp
  import numpy as np

  from vivit_jax import models
  from vivit_jax.convert.common import config_to_json
  from vivit_jax.train import steps
  d = config.dataset
  model = models.create_model(config.model, d.num_classes)
  video = jnp.zeros((1, d.num_frames, d.crop_size, d.crop_size, 3))
  abstract = jax.eval_shape(model.init, jax.random.key(0), video)['params']
  rng = np.random.default_rng(seed)
  params = jax.tree.map(lambda s: (0.3 * rng.standard_normal(s.shape)).astype(np.float32),
                        abstract)
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, 'config.json'), 'w') as f:
    f.write(config_to_json(config))
  if label_names:
    with open(os.path.join(workdir, 'label_names.json'), 'w') as f:
      json.dump(list(label_names), f)
  ckpts = ckpt_lib.Checkpoints(str(workdir), async_save=False)
  ckpts.save(steps.TrainState(step=np.int32(5), params=params,
                              opt_state={'count': np.zeros((), np.int32)}))
  ckpts.close()
  return model, params


def classifier_config_names() -> list[str]:
  """The configs/synthetic/ files of classifiers (videomae.py is masked pretraining)."""
  import glob
  return sorted(os.path.basename(p)[:-3]
                for p in glob.glob(os.path.join(REPO, 'configs', 'synthetic', '*.py'))
                if os.path.basename(p) != 'videomae.py')


def tiny_config(name: str):
  """configs/synthetic/<name>.py:tiny."""
  path = os.path.join(REPO, 'configs', 'synthetic', f'{name}.py')
  spec = importlib.util.spec_from_file_location('cfg', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config('tiny')

