"""ViViT-L/16x2 Model 2 (factorised encoder, L_s=24, L_t=24), Kinetics-400, 32x224^2.

The paper's Kinetics state-of-the-art model (Table 6 reports it at 320^2 too:
`--config.dataset.crop_size=320`). The temporal encoder's depth follows Scenic's
released Kinetics configs (projects/vivit/configs/kinetics400 and kinetics600/
vivit_large_factorised_encoder.py: temporal_transformer.num_layers = 24), the code that
trained the published checkpoints; the paper's ViViT-B ablations, and Scenic's SSv2 and
Epic-Kitchens ViViT-L configs, use L_t = 4 (`--config.model.temporal_num_layers=4`).
"""
from vivit_jax import config as vc
from vivit_jax import recipes


def get_config(arg=None):
  del arg
  config = recipes.kinetics400_recipe(vc.default_config())
  config.experiment_name = 'k400_vivit_l16x2_factorised_encoder'
  recipes.vivit_large_factorised_encoder(config.model, temporal_num_layers=24)
  return config
