r"""VideoMAE ViT-B/16x2 masked pretraining on Kinetics-400 (Tong et al., NeurIPS 2022),
800 epochs, no labels.

  python -m vivit_jax.main --config=configs/pretrain/videomae_vit_b_k400.py \
      --workdir=/tmp/videomae_b --config.dataset.data_dir=/data/k400_shards

Values from the reference code, MCG-NJU/VideoMAE: scripts/kinetics/
videomae_vit_base_patch16_224_tubemasking_ratio_0.9_epoch_800/pretrain.sh (tube masking
0.9, decoder depth 4, 16 frames at sampling rate 4, AdamW betas (0.9, 0.95), 40 warm-up
epochs, 800 epochs, 32 clips per GPU on 64 GPUs = batch 2048) and run_mae_pretraining.py's
defaults (lr 1.5e-4 x batch / 256 = 1.2e-3, min lr 1e-5 x batch / 256 = 8e-5, weight
decay 0.05, no gradient clipping, no drop path, normalised targets, ImageNet mean/std);
modeling_pretrain.py's pretrain_videomae_base_patch16_224 (ViT-B encoder, decoder width
384 with 6 heads and MLP ratio 4, LayerNorm eps 1e-6, exact GELU, tubelet 2x16x16).
Augmentation: VideoMAE's GroupMultiScaleCrop(224, scales (1, .875, .75, .66)) without flip
or colour augmentation, approximated by our random-resized crop over area fractions
(0.66^2, 1) with aspect ratios (3/4, 4/3) after resizing the shorter side to 256.

Position embeddings: VideoMAE's fixed sinusoid tables, for the decoder (a constant) and
for the encoder (ViViT's embedding parameter, initialised to the table and kept fixed by an
lr multiplier of 0, so a fine-tuned ViViT loads it by name and a Hugging Face export holds
it). Evaluation reports the reconstruction loss on the validation and test splits (one
view each).
"""
from vivit_jax import config as vc
from vivit_jax import recipes
from vivit_jax.models import videomae

PRETRAIN_BATCH = 2048          # 32 clips x 64 GPUs.


def kinetics_videomae_data(config):
  """VideoMAE's Kinetics-400 clips: 16 frames at stride 4, 224^2, ImageNet mean/std; one
  test view (what pretraining evaluates is the reconstruction loss)."""
  recipes.kinetics400_recipe(config)
  d = config.dataset
  d.num_frames, d.stride, d.crop_size = 16, 4, 224
  d.mean_rgb, d.std_rgb = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
  d.num_test_clips = d.num_test_crops = 1
  return config


def get_config(arg=None):
  del arg
  c = vc.default_config()
  c.experiment_name = 'videomae_vit_b_k400_pretrain'
  c.task = 'masked_pretraining'
  kinetics_videomae_data(c)
  d = c.dataset
  d.min_resize, d.scale_jitter = 256, None
  d.crop_area_range, d.crop_aspect_range = (0.66 ** 2, 1.0), (3 / 4, 4 / 3)
  d.random_flip = False
  d.color_augment_prob = d.color_drop_prob = 0.0
  m = recipes.set_vit_size(c.model, 'B')
  m.patch_size, m.temporal_patch_size = (16, 16), 2
  videomae.pretraining_model_config(m, mask_ratio=0.9, masking='tube', norm_pix_loss=True,
                                    decoder_hidden_size=384, decoder_num_layers=4,
                                    decoder_num_heads=6, decoder_mlp_dim=1536,
                                    posemb_init='sinusoid')
  m.stochastic_depth = 0.0
  o = c.optimizer
  o.name, o.b1, o.b2, o.weight_decay, o.grad_clip_norm = 'adamw', 0.9, 0.95, 0.05, None
  o.lr_multipliers = ((r'posembed_input', 0.0),)   # VideoMAE's fixed sinusoid table.
  recipes.train_epochs(c, 800, batch_size=PRETRAIN_BATCH, warmup_epochs=40)
  s = c.schedule
  s.name, s.base_lr, s.end_lr = 'warmup_cosine', 1.5e-4 * PRETRAIN_BATCH / 256, 1e-5 * PRETRAIN_BATCH / 256
  t = c.trainer
  t.eval_batch_size = 256
  t.log_every, t.eval_every, t.checkpoint_every = 100, 2000, 1000
  return c
