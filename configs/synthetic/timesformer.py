r"""TimeSformer (divided space-time attention) on the synthetic task.

CPU-sized: 16 frames of 32x32, 8x8 patches per frame (16 x 16 = 256 tokens + CLS),
hidden 64, 2 layers, 4 heads, MLP 256, no dropout: the width/depth of the ViViT synthetic
configs, with the same data, optimiser and budget (configs/synthetic/vivit_model*.py).
  python -m vivit_jax.main --config=configs/synthetic/timesformer.py --workdir=/tmp/tsf
  --config.model.attention_type=joint_space_time | space_only   for the other variants.
Args ('tiny', 'shuffle', 'single_frame'): see vivit_jax.recipes.synthetic_recipe.
"""
from vivit_jax import config as vc
from vivit_jax import recipes


def get_config(arg=None):
  c = vc.default_config()
  c.experiment_name = 'synthetic_timesformer'
  m = recipes.synthetic_transformer(c.model)
  m.name, m.attention_type, m.classifier = 'timesformer', 'divided_space_time', 'token'
  m.patch_size = (8, 8)   # per-frame patches: 16 x 16 = 256 tokens, as Model 1's count.
  return recipes.synthetic_recipe(c, arg)
