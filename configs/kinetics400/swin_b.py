"""Video Swin-B, Kinetics-400, 32x224^2: the swin_t.py recipe with the Swin-B model.

Paper (Liu et al. 2022, Table 1): 88M params, 282 GFLOPs per view.
"""
from vivit_jax import config as vc


def get_config(arg=None):
  del arg
  return vc.sibling_config(__file__, 'swin_t.py', 'B')
