"""ViViT-L/16x2 Model 2 (factorised encoder, L_t=4), Moments in Time, 32x224^2.

The paper reports ViViT-L/16x2 FE on Moments in Time (Table 6d). No reference config is
public (Scenic has none), so `recipes.moments_in_time_recipe` is the Kinetics recipe
with MiT's 339 classes; the temporal encoder has 4 layers as in the paper's factorised-
encoder ablations and Scenic's SSv2/Epic-Kitchens models.
"""
from vivit_jax import config as vc
from vivit_jax import recipes


def get_config(arg=None):
  del arg
  config = recipes.moments_in_time_recipe(vc.default_config())
  config.experiment_name = 'mit_vivit_l16x2_factorised_encoder'
  recipes.vivit_large_factorised_encoder(config.model, temporal_num_layers=4)
  return config
