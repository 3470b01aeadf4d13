"""ViViT-B/16x2 Model 1 (spatio-temporal attention), Kinetics-400, 32x224^2.

Paper Table 2: 455.2 GFLOPs, 88.9M params.
"""
from vivit_jax import config as vc
from vivit_jax import recipes


def get_config(arg=None):
  del arg
  config = recipes.kinetics400_recipe(vc.default_config())
  config.experiment_name = 'k400_vivit_b16x2_spatio_temporal'
  m = recipes.set_vit_size(config.model, 'B')
  m.attention_type, m.classifier = 'spatio_temporal', 'token'
  m.embedding, m.patch_size, m.temporal_patch_size = 'tubelet', (16, 16), 2
  return config
