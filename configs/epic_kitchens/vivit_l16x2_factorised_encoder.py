"""ViViT-L/16x2 Model 2 (factorised encoder, L_t=4), Epic-Kitchens-100 noun/verb, 32x224^2.

The paper's Epic-Kitchens model (Table 6c): one logit block per label group (noun 300,
then verb 97, as Scenic's `class_splits`); evaluation reports each group's top-1/5 and
the action accuracy (`train/metrics.py`). Trained as Scenic's projects/vivit/configs/
epic_kitchens/vivit_large_factorised_encoder.py (`recipes.epic_kitchens_recipe`), which
Scenic initialises from a Kinetics checkpoint: `--config.init_from=...`.
"""
from vivit_jax import config as vc
from vivit_jax import recipes


def get_config(arg=None):
  del arg
  config = recipes.epic_kitchens_recipe(vc.default_config())
  config.experiment_name = 'ek100_vivit_l16x2_factorised_encoder'
  recipes.vivit_large_factorised_encoder(config.model, temporal_num_layers=4)
  return config
