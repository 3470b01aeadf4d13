r"""ViViT Model 3 (factorised self-attention: spatial then temporal inside each block) on the synthetic task.

CPU-sized: 16 frames of 32x32, tubelets 8x4x4 (2x8x8 = 128 tokens), hidden 64, 4 heads.
  python -m vivit_jax.main --config=configs/synthetic/vivit_model3.py --workdir=/tmp/m3
Args ('tiny', 'shuffle', 'single_frame'): see vivit_jax.recipes.synthetic_recipe.
"""
from vivit_jax import config as vc
from vivit_jax import recipes


def get_config(arg=None):
  c = vc.default_config()
  c.experiment_name = 'synthetic_vivit_model3'
  m = recipes.synthetic_transformer(c.model)
  # Max-pooled tokens (Scenic's 'gmp'): the motion is in the few tokens the shapes cover,
  # and their mean ('gap') kept Models 1, 3 and 4 on the initial loss plateau.
  m.attention_type, m.classifier = 'factorised_self_attention', 'gmp'
  return recipes.synthetic_recipe(c, arg, base_lr=3e-4)   # 1e-3 stalled on the plateau (gap).
