"""MViT-B 32x3 (v1), Kinetics-400: 32 frames at stride 3, 224^2, 5x1 test views.

Paper (Fan et al. 2021, Table 2): 36.6M params, 170 GFLOPs per view: the 16-layer MViT-B
of mvit_b_16x4.py on longer clips (its recipe too). PySlowFast's MVIT_B_32x3_CONV.yaml
sets DEPTH twice (16, then 24); 24 layers is MViT-B-24, the paper's K600 model (52.9M,
236 GFLOPs), not this one.
"""
from vivit_jax import config as vc


def get_config(arg=None):
  del arg
  return vc.sibling_config(__file__, 'mvit_b_16x4.py', '32,3')
