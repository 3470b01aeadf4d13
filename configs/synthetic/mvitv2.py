r"""MViTv2 on the synthetic task: mvit.py's CPU-sized model with the v2 rules (relative
position bias, residual pooling, widening in attention, Q pooled in every block).
  python -m vivit_jax.main --config=configs/synthetic/mvitv2.py --workdir=/tmp/mvitv2
Args ('tiny', 'shuffle', 'single_frame'): see vivit_jax.recipes.synthetic_recipe.
"""
from vivit_jax import config as vc


def get_config(arg=None):
  return vc.sibling_config(__file__, 'mvit.py', arg, variant='v2-S')
