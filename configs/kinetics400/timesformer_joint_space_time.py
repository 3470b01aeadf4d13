"""TimeSformer with joint space time attention (the paper's Table 1 ablation), Kinetics-400:
the recipe of timesformer_divided_space_time.py with attention_type='joint_space_time'.
"""
import importlib.util
import os


def get_config(arg=None):
  del arg
  path = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                      'timesformer_divided_space_time.py')
  spec = importlib.util.spec_from_file_location('timesformer_divided_space_time', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.timesformer_config('joint_space_time', 'k400_timesformer_joint_space_time')
