"""Parameter counts and forward-pass FLOPs from abstract shapes (nothing is executed).

GFLOPs follow the papers' convention: multiply-adds, i.e. XLA's `cost_analysis()['flops']`
of the lowered forward pass divided by 2. XLA counts every dot/conv multiply-add as two
flops and each elementwise op (softmax exp/div, GELU, LayerNorm, residual adds) as one,
so ours includes those elementwise terms too (about 1% of a ViViT-B forward pass).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from vivit_jax.ops import switches

# Published (GFLOPs per view, params in millions) of the paper-sized configs, keyed by the
# config file's stem under configs/kinetics400/.
PAPER_NUMBERS = {
    # ViViT (Arnab et al. 2021), Table 2: ViViT-B, Kinetics-400 head.
    'vivit_b16x2_spatio_temporal': (455.2, 88.9),
    'vivit_b16x2_factorised_encoder': (284.4, 115.1),
    'vivit_b16x2_factorised_self_attention': (372.3, 117.3),
    'vivit_b16x2_factorised_dot_product': (277.1, 88.9),
    'vivit_b16x2_average_pool': (283.9, 86.7),
    # MViT (Fan et al. 2021), Table 2 (K400): MViT-B, 16x4 and 32x3 clips at 224^2.
    'mvit_b_16x4': (70.5, 36.6),
    'mvit_b_32x3': (170.0, 36.6),
    # MViTv2 (Li et al. 2022), Table 5 (K400): MViTv2-S 16x4.
    'mvitv2_s_16x4': (64.0, 34.5),
    # Video Swin (Liu et al. 2022), Table 1 (K400): 32x224^2, window 8x7x7.
    'swin_t': (88.0, 28.0),
    'swin_s': (166.0, 50.0),
    'swin_b': (282.0, 88.0),
    # TimeSformer (Bertasius et al. 2021), 8x224^2, K400: 0.59 TFLOPs for 3 views
    # (Table 2) and Table 1's params; the paper gives no per-view FLOPs of the ablations.
    'timesformer_divided_space_time': (196.7, 121.4),
    'timesformer_joint_space_time': (None, 85.9),
    'timesformer_space_only': (None, 85.9),
    # Something-Something v2 (configs/ssv2/): MViTv2-S 16x4 (PySlowFast projects/mvitv2/
    # README.md: 64 GFLOPs x 3 views, 34.4M) and Video Swin-B with an 16x7x7 window
    # (Video-Swin-Transformer README.md: 320.6 GFLOPs, 89M).
    'ssv2/mvitv2_s_16x4': (64.0, 34.4),
    'ssv2/swin_b': (320.6, 89.0),
    # VideoMAE (Tong et al. 2022), Kinetics-400 table: ViT-B 16x224 fine-tuned, 180 GFLOPs
    # x 5 x 3 views, 87M params (configs/pretrain/).
    'pretrain/videomae_vit_b_k400_finetune': (180.0, 87.0),
}


def abstract_params(model, input_shape):
  """ShapeDtypeStruct tree of `model`'s params for inputs of `input_shape`."""
  dummy = jax.ShapeDtypeStruct(input_shape, jnp.float32)
  variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x), dummy)
  return variables['params']


def count_params(params) -> int:
  """Number of scalars in a (possibly abstract) params tree."""
  return int(sum(np.prod(p.shape) for p in jax.tree.leaves(params)))


def forward_gflops(model, input_shape, params=None) -> float:
  """Multiply-adds (in 1e9) of one inference forward pass on inputs of `input_shape`."""
  if params is None:
    params = abstract_params(model, input_shape)
  dummy = jax.ShapeDtypeStruct(input_shape, jnp.float32)
  with switches.flop_counting():   # loops/custom calls would hide attention FLOPs.
    lowered = jax.jit(lambda p, x: model.apply({'params': p}, x, train=False)).lower(
        params, dummy)
  cost = lowered.cost_analysis()
  if isinstance(cost, (list, tuple)):  # Older jax returned one dict per computation.
    cost = cost[0]
  return float(cost['flops']) / 2 / 1e9
