r"""ViViT Model 3 (factorised self-attention, spatial then temporal in each block) on the synthetic task.

CPU-sized: 16 frames of 32x32, tubelets 2x8x8 (8x4x4 = 128 tokens), hidden 64, 4 heads.
  python -m vivit_jax.main --config=configs/synthetic/vivit_model3.py --workdir=/tmp/m3
Args: see common.py ('tiny', 'shuffle', 'single_frame').
"""
import importlib.util
import os


def _load_common():
  path = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'common.py')
  spec = importlib.util.spec_from_file_location('synthetic_common', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def get_config(arg=None):
  common = _load_common()
  c = common.base_config()
  c.experiment_name = 'synthetic_vivit_model3'
  m = c.model
  m.attention_type = 'factorised_self_attention'
  m.classifier = 'gap'
  return common.apply_args(c, arg)
