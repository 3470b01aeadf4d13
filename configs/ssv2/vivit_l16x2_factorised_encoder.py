"""ViViT-L/16x2 Model 2 (factorised encoder, L_t=4), Something-Something v2, 32x256^2.

The paper's SSv2 model (Table 6e), trained as Scenic's projects/vivit/configs/
something_something_v2/vivit_large_factorised_encoder.py (`recipes.ssv2_recipe`: no
flips, RandAugment 20, mixup 0.3, label smoothing 0.3, stochastic depth 0.3).
"""
from vivit_jax import config as vc
from vivit_jax import recipes


def get_config(arg=None):
  del arg
  config = recipes.ssv2_recipe(vc.default_config())
  config.experiment_name = 'ssv2_vivit_l16x2_factorised_encoder'
  recipes.vivit_large_factorised_encoder(config.model, temporal_num_layers=4)
  return config
