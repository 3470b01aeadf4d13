"""Video Swin-S, Kinetics-400, 32x224^2: the swin_t.py recipe with the Swin-S model.

Paper (Liu et al. 2022, Table 1): 50M params, 166 GFLOPs per view.
"""
import importlib.util
import os


def get_config(arg=None):
  del arg
  path = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'swin_t.py')
  spec = importlib.util.spec_from_file_location('k400_swin_t', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config('S')
