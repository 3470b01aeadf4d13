"""MViTv2-S 16x4, Kinetics-400: 16 frames at stride 4, 224^2, 5x1 test views.

Decomposed relative positions, residual pooling, widening in attention, Q pooled in
every block (PySlowFast configs/Kinetics/MVITv2_S_16x4.yaml); the mvit_b_16x4.py recipe.
Paper (Li et al. 2022, Table 5): 34.5M params, 64 GFLOPs per view.
"""
import importlib.util
import os


def get_config(arg=None):
  del arg
  path = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'mvit_b_16x4.py')
  spec = importlib.util.spec_from_file_location('k400_mvit_b_16x4', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config('16,4,v2-S')
