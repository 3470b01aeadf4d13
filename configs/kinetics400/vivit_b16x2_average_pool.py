"""ViViT-B/16x2 average-pool baseline (Model 2 with L_t=0), Kinetics-400, 32x224^2.

A spatial ViT per temporal index, representations averaged over time.
Paper Table 2: 283.9 GFLOPs, 86.7M params.
"""
from vivit_jax import config as vc
from vivit_jax import recipes


def get_config(arg=None):
  del arg
  config = recipes.kinetics400_recipe(vc.default_config())
  config.experiment_name = 'k400_vivit_b16x2_average_pool'
  m = recipes.set_vit_size(config.model, 'B')
  m.attention_type, m.temporal_num_layers = 'factorised_encoder', 0
  m.classifier, m.spatial_classifier = 'token', 'token'
  m.embedding, m.patch_size, m.temporal_patch_size = 'tubelet', (16, 16), 2
  return config
