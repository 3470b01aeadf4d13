r"""ViViT Model 1 (spatio-temporal attention) on the synthetic task.

CPU-sized: 16 frames of 32x32, tubelets 8x4x4 (2x8x8 = 128 tokens), hidden 64, 4 heads.
  python -m vivit_jax.main --config=configs/synthetic/vivit_model1.py --workdir=/tmp/m1
Args ('tiny', 'shuffle', 'single_frame'): see vivit_jax.recipes.synthetic_recipe.
"""
from vivit_jax import config as vc
from vivit_jax import recipes


def get_config(arg=None):
  c = vc.default_config()
  c.experiment_name = 'synthetic_vivit_model1'
  m = recipes.synthetic_transformer(c.model)
  m.attention_type, m.classifier = 'spatio_temporal', 'token'
  return recipes.synthetic_recipe(c, arg)
