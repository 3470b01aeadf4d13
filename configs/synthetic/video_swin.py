r"""Video Swin on the synthetic task.

CPU-sized: 16 frames of 32x32; patches 2x4x4 -> 8x8x8 tokens of width 32; 3 stages of
2 blocks (widths 32 -> 64 -> 128, heads 2 -> 4 -> 8, grids 8x8x8 -> 8x4x4 -> 8x2x2),
windows 4x4x4 shifted by 2 in every second block (they shrink to the map in the last
stages, as in the original); no dropout or drop path; the head max-pools the last
stage's 32 tokens ('gmp'), and AdamW runs at lr 3e-4 (the Video Swin paper's SSv2 rate),
as for ViViT Models 3 and 4, whose mean-pooled heads stayed on the loss plateau (README).
Otherwise the same data, optimiser and budget as configs/synthetic/vivit_model*.py.
  python -m vivit_jax.main --config=configs/synthetic/video_swin.py --workdir=/tmp/swin
Args ('tiny', 'shuffle', 'single_frame'): see vivit_jax.recipes.synthetic_recipe.
"""
from vivit_jax import config as vc
from vivit_jax import recipes
from vivit_jax.models import video_swin


def tiny_model(m):
  """Test-sized: 4x8x8 clips, patches 2x2x2 -> 2x4x4 tokens, width 8, windows 2x2x2."""
  m.embed_dim, m.depths, m.num_heads = 8, (2, 2), (1, 2)
  m.patch_size, m.temporal_patch_size, m.window_size = (2, 2), 2, (2, 2, 2)
  return m


def get_config(arg=None):
  c = vc.default_config()
  c.experiment_name = 'synthetic_video_swin'
  m = c.model = video_swin.model_config('T')
  m.embed_dim, m.depths, m.num_heads = 32, (2, 2, 2), (2, 4, 8)
  m.window_size = (4, 4, 4)
  m.patch_size, m.temporal_patch_size = (4, 4), 2
  m.stochastic_depth = m.head_dropout_rate = 0.0
  m.classifier = 'gmp'
  return recipes.synthetic_recipe(c, arg, tiny_model=tiny_model, base_lr=3e-4)
