"""TimeSformer with joint space time attention (the paper's Table 1 ablation), Kinetics-400:
the recipe of timesformer_divided_space_time.py with attention_type='joint_space_time'.
"""
from vivit_jax import config as vc


def get_config(arg=None):
  del arg
  return vc.sibling_config(__file__, 'timesformer_divided_space_time.py',
                           'joint_space_time')
