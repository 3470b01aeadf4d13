"""ViViT-B/16 Model 1 with uniform frame sampling (2D patches per frame), Kinetics-400.

16 frames at 224^2 give 16 x 14 x 14 = 3136 tokens, the same as the 32-frame 16x2
tubelet model, so the two embeddings are compared at equal sequence length (Table 1).
"""
from vivit_jax import config as vc
from vivit_jax import recipes


def get_config(arg=None):
  del arg
  config = recipes.kinetics400_recipe(vc.default_config())
  config.experiment_name = 'k400_vivit_b16_uniform_frame'
  config.dataset.num_frames, config.dataset.stride = 16, 4
  m = recipes.set_vit_size(config.model, 'B')
  m.attention_type, m.classifier = 'spatio_temporal', 'token'
  m.embedding, m.patch_size, m.temporal_patch_size = 'uniform_frame', (16, 16), 1
  return config
