r"""VTN (per-frame ViT, windowed temporal encoder) on the synthetic task.

CPU-sized: 16 frames of 32x32; backbone ViT with 8x8 patches (16 tokens + CLS per frame),
hidden 64, 2 layers, 4 heads, MLP 256; temporal encoder 2 layers, 4 heads, window 8
(each frame sees 4 on either side, CLS global); head MLP 64; no dropout, as the ViViT
synthetic configs. Same data, optimiser and budget as configs/synthetic/vivit_model*.py,
at lr 3e-4 like ViViT Model 2, its closest ViViT relative (a spatial encoder per time
index, then a temporal one): at 1e-3 both stayed on the initial loss plateau (VTN: loss
2.303 at step 1300).
  python -m vivit_jax.main --config=configs/synthetic/vtn.py --workdir=/tmp/vtn
Args ('tiny', 'shuffle', 'single_frame'): see vivit_jax.recipes.synthetic_recipe.
"""
from vivit_jax import config as vc
from vivit_jax import recipes
from vivit_jax.models import vtn


def tiny_model(m):
  """Test-sized: 4x8x8 clips, 4x4 patches, width 16, one layer each, window 2."""
  m.hidden_size, m.num_layers, m.num_heads, m.mlp_dim = 16, 1, 2, 32
  m.patch_size = (4, 4)
  m.temporal_num_layers, m.temporal_num_heads, m.temporal_mlp_dim = 1, 2, 32
  m.temporal_window, m.head_mlp_dim = 2, 16
  return m


def get_config(arg=None):
  c = vc.default_config()
  c.experiment_name = 'synthetic_vtn'
  m = c.model = vtn.model_config('B')
  m.hidden_size, m.num_layers, m.num_heads, m.mlp_dim = 64, 2, 4, 256
  m.patch_size = (8, 8)
  m.temporal_num_layers, m.temporal_num_heads, m.temporal_mlp_dim = 2, 4, 256
  m.temporal_window, m.head_mlp_dim = 8, 64
  m.temporal_dropout_rate = m.temporal_attention_dropout_rate = m.head_dropout_rate = 0.0
  return recipes.synthetic_recipe(c, arg, tiny_model=tiny_model, base_lr=3e-4)
