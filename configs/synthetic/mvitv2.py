r"""MViTv2 on the synthetic task: mvit.py's CPU-sized model with the v2 rules (relative
position bias, residual pooling, widening in attention, Q pooled in every block).
  python -m vivit_jax.main --config=configs/synthetic/mvitv2.py --workdir=/tmp/mvitv2
Args ('tiny', 'shuffle', 'single_frame'): see vivit_jax.config.synthetic_recipe.
"""
import importlib.util
import os


def get_config(arg=None):
  path = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'mvit.py')
  spec = importlib.util.spec_from_file_location('synthetic_mvit', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg, variant='v2-S')
