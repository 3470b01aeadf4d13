r"""Masked pretraining of the ViViT Model 1 encoder on the synthetic videos, without
labels: the first half of the synthetic pretraining demo (README, "Masked pretraining").

  python -m vivit_jax.main --config=configs/synthetic/videomae.py --workdir=/tmp/mae
Then fine-tune on 512 labelled clips with configs/synthetic/videomae_finetune.py
(`--config.init_from.path=/tmp/mae`), and compare with the same run from scratch.

CPU-sized: the synthetic transformer (16 frames of 32x32, tubelets 8x4x4: 2x8x8 = 128
tokens, hidden 64, 2 layers, 4 heads) as the encoder; a decoder of width 64, 2 layers,
4 heads, MLP 256; AdamW with betas (0.9, 0.95) and weight decay 0.05 (VideoMAE's), lr
3e-3, 4000 steps of batch 32 (about 7 minutes on 2 CPU cores).

Where it leaves the paper recipes (configs/pretrain/), and why: MAE-ST's random
space-time masking at 0.75 on raw pixels (norm_pix_loss False), not VideoMAE's tube
masking at 0.9 on per-tubelet normalised pixels. The synthetic clips are 2 tubelets long
and their moving shape covers a few of the 64 positions: with tubes at 0.9 (6 visible
positions) the shape is rarely visible and the loss stayed on the plateau of predicting
the background; random masking leaves the other temporal half of a masked tubelet
visible about a quarter of the time (32 of the other 127 tokens are visible), so
reconstructing it takes the shape's motion. Normalised targets turn the flat background
tubelets into amplified pixel noise, and the model stayed at predicting each tubelet's
mean. The decoder of width 32 and 1 layer, and lr 1e-3, did not get off the plateau
either (measurements: experiments/README.md, "Masked pretraining on the synthetic
task").

Args (comma-separated): 'tiny' (test-sized, see vivit_jax.recipes.synthetic_recipe) and
'tube' (VideoMAE's tube masking at 0.9 instead).
"""
from vivit_jax import config as vc
from vivit_jax import recipes
from vivit_jax.models import videomae


def get_config(arg=None):
  c = vc.default_config()
  c.experiment_name = 'synthetic_videomae'
  c.task = 'masked_pretraining'
  recipes.synthetic_transformer(c.model)
  videomae.pretraining_model_config(c.model, masking='random', mask_ratio=0.75,
                                    norm_pix_loss=False, decoder_hidden_size=64,
                                    decoder_num_layers=2, decoder_num_heads=4,
                                    decoder_mlp_dim=256)
  args = [a.strip() for a in (arg or '').split(',') if a.strip()]
  if 'tube' in args:
    args.remove('tube')
    c.model.masking, c.model.mask_ratio = 'tube', 0.9
    c.experiment_name += '_tube'
  c = recipes.synthetic_recipe(c, ','.join(args), base_lr=3e-3)
  c.optimizer.b2, c.optimizer.weight_decay = 0.95, 0.05
  if 'tiny' in args:
    c.model.decoder_hidden_size, c.model.decoder_mlp_dim = 16, 32
    c.model.decoder_num_layers, c.model.decoder_num_heads = 1, 2
  return c
