r"""Masked pretraining (VideoMAE) of the ViViT Model 1 encoder on the synthetic videos,
without labels.

CPU-sized: the synthetic transformer (16 frames of 32x32, tubelets 8x4x4: 2x8x8 = 128
tokens, hidden 64, 2 layers, 4 heads); tube masking at 0.9 (58 of 64 positions per
temporal index masked: 12 visible tokens), a 1-layer decoder of width 32, per-tubelet
normalised targets, AdamW with betas (0.9, 0.95) and weight decay 0.05 (VideoMAE's).
  python -m vivit_jax.main --config=configs/synthetic/videomae.py --workdir=/tmp/mae
Then fine-tune configs/synthetic/vivit_model1.py from it with
`--config.init_from.path=/tmp/mae` (README, "Masked pretraining").
Args (comma-separated): 'tiny' (test-sized, see vivit_jax.recipes.synthetic_recipe) and
'random' (MAE-ST's random space-time masking instead of tubes).
"""
from vivit_jax import config as vc
from vivit_jax import recipes
from vivit_jax.models import videomae


def get_config(arg=None):
  c = vc.default_config()
  c.experiment_name = 'synthetic_videomae'
  c.task = 'masked_pretraining'
  recipes.synthetic_transformer(c.model)
  videomae.pretraining_model_config(c.model, decoder_hidden_size=32, decoder_num_layers=1,
                                    decoder_num_heads=2, decoder_mlp_dim=128)
  args = [a.strip() for a in (arg or '').split(',') if a.strip()]
  if 'random' in args:
    args.remove('random')
    c.model.masking = 'random'
    c.experiment_name += '_random'
  c = recipes.synthetic_recipe(c, ','.join(args))
  c.optimizer.b2, c.optimizer.weight_decay = 0.95, 0.05
  if 'tiny' in args:
    c.model.decoder_hidden_size, c.model.decoder_mlp_dim = 16, 32
  return c
