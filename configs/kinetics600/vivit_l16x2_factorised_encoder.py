"""ViViT-L/16x2 Model 2 (factorised encoder, L_s=24, L_t=24), Kinetics-600, 32x224^2.

The paper's Kinetics-600 model (Table 6b), trained as Scenic's
projects/vivit/configs/kinetics600/vivit_large_factorised_encoder.py trains it
(`recipes.kinetics600_recipe`).
"""
from vivit_jax import config as vc
from vivit_jax import recipes


def get_config(arg=None):
  del arg
  config = recipes.kinetics600_recipe(vc.default_config())
  config.experiment_name = 'k600_vivit_l16x2_factorised_encoder'
  recipes.vivit_large_factorised_encoder(config.model, temporal_num_layers=24)
  return config
