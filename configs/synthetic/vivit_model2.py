r"""ViViT Model 2 (factorised encoder: spatial, then temporal transformer) on the synthetic task.

CPU-sized: 16 frames of 32x32, tubelets 8x4x4 (2x8x8 = 128 tokens), hidden 64, 4 heads.
  python -m vivit_jax.main --config=configs/synthetic/vivit_model2.py --workdir=/tmp/m2
Args ('tiny', 'shuffle', 'single_frame'): see vivit_jax.recipes.synthetic_recipe.
"""
from vivit_jax import config as vc
from vivit_jax import recipes


def get_config(arg=None):
  c = vc.default_config()
  c.experiment_name = 'synthetic_vivit_model2'
  m = recipes.synthetic_transformer(c.model)
  m.attention_type, m.classifier = 'factorised_encoder', 'token'
  m.temporal_num_layers = 2
  return recipes.synthetic_recipe(c, arg, base_lr=3e-4)   # 1e-3 stalls on the loss plateau.
