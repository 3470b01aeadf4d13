r"""MViT (v1) on the synthetic task; `mvitv2.py` is the v2 variant of the same size.

CPU-sized: 16 frames of 32x32; stem (3,7,7)/(2,4,4) -> 8x8x8 tokens of width 32; 4 blocks
in 3 stages (widths 32 -> 64 -> 128, heads 1 -> 2 -> 4, Q stride (1,2,2) at blocks 1 and
3: grids 8x8x8 -> 8x4x4 -> 8x2x2), K/V stride (1,4,4) adaptive, pooling kernels 3x3x3;
no dropout or drop path. AdamW at lr 3e-4: at the recipe's 1e-3 both MViT and MViTv2 sat
on the loss plateau (train loss 2.3028, validation top-1 0.11 / 0.09 at step 1000, still
2.3028 at steps 1500 / 1200), as Video Swin, VTN and ViViT Models 3/4 did. Otherwise the
same data, optimiser and budget as configs/synthetic/vivit_model*.py.
  python -m vivit_jax.main --config=configs/synthetic/mvit.py --workdir=/tmp/mvit
Args ('tiny', 'shuffle', 'single_frame'): see vivit_jax.recipes.synthetic_recipe.
"""
from vivit_jax import config as vc
from vivit_jax import recipes
from vivit_jax.models import mvit


def synthetic_model(variant):
  """The CPU-sized MViT ('B' = v1 or 'v2-S' = v2 rules) described in the docstring."""
  m = mvit.model_config(variant)
  m.embed_dim, m.depth, m.num_heads = 32, 4, 1
  m.dim_mul = m.head_mul = ((1, 2.0), (3, 2.0))
  if m.dim_mul_in_att:
    m.pool_q_stride = tuple((i, 1, 2, 2) if i in (1, 3) else (i, 1, 1, 1) for i in range(4))
  else:
    m.pool_q_stride = ((1, 1, 2, 2), (3, 1, 2, 2))
  m.pool_kv_stride_adaptive = (1, 4, 4)
  m.stochastic_depth = m.head_dropout_rate = 0.0
  return m


def tiny_model(m):
  """Test-sized: 4x8x8 clips, stem 3x3x3/2x2x2 -> 2x4x4 tokens, width 8, 2 blocks,
  pooling kernels 1x3x3 (fewer taps to compile)."""
  m.patch_kernel, m.patch_stride, m.patch_padding = (3, 3, 3), (2, 2, 2), (1, 1, 1)
  m.embed_dim, m.depth = 8, 2
  m.pool_kvq_kernel = (1, 3, 3)
  m.dim_mul = m.head_mul = ((1, 2.0),)
  m.pool_q_stride = ((0, 1, 1, 1), (1, 1, 2, 2)) if m.dim_mul_in_att else ((1, 1, 2, 2),)
  m.pool_kv_stride_adaptive = (1, 2, 2)
  return m


def get_config(arg=None, variant='B'):
  c = vc.default_config()
  c.experiment_name = 'synthetic_mvitv2' if variant == 'v2-S' else 'synthetic_mvit'
  c.model = synthetic_model(variant)
  return recipes.synthetic_recipe(c, arg, tiny_model=tiny_model, base_lr=3e-4)
