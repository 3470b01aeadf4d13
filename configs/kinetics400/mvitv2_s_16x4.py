"""MViTv2-S 16x4, Kinetics-400: 16 frames at stride 4, 224^2, 5x1 test views.

Decomposed relative positions, residual pooling, widening in attention, Q pooled in
every block (PySlowFast configs/Kinetics/MVITv2_S_16x4.yaml); the mvit_b_16x4.py recipe.
Paper (Li et al. 2022, Table 5): 34.5M params, 64 GFLOPs per view.
"""
from vivit_jax import config as vc


def get_config(arg=None):
  del arg
  return vc.sibling_config(__file__, 'mvit_b_16x4.py', '16,4,v2-S')
