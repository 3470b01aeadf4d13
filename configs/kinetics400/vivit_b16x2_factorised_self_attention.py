"""ViViT-B/16x2 Model 3 (factorised self-attention), Kinetics-400, 32x224^2.

Paper Table 2: 372.3 GFLOPs, 117.3M params.
"""
from vivit_jax import config as vc
from vivit_jax import recipes


def get_config(arg=None):
  del arg
  config = recipes.kinetics400_recipe(vc.default_config())
  config.experiment_name = 'k400_vivit_b16x2_factorised_self_attention'
  m = recipes.set_vit_size(config.model, 'B')
  m.attention_type, m.classifier = 'factorised_self_attention', 'gap'
  m.embedding, m.patch_size, m.temporal_patch_size = 'tubelet', (16, 16), 2
  return config
