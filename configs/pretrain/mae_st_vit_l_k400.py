r"""MAE-ST ViT-L/16x2 masked pretraining on Kinetics-400 (Feichtenhofer et al., "Masked
Autoencoders As Spatiotemporal Learners", NeurIPS 2022): random space-time masking at 0.9.

  python -m vivit_jax.main --config=configs/pretrain/mae_st_vit_l_k400.py \
      --workdir=/tmp/mae_st_l --config.dataset.data_dir=/data/k400_shards

Values from the reference code's config, facebookresearch/SlowFast:
configs/masked_ssl/k400_VIT_L_16x4_MAE_PT.yaml: ViT-L (24 layers, width 1024, 16 heads,
MLP ratio 4), tubelet 2x16x16, 16 frames at rate 4, 224^2; random masking (MAE_RND_MASK)
at 0.9; decoder width 512, depth 4; AdamW betas (0.9, 0.95), weight decay 0.05 (not on 1D
parameters; ZERO_DECAY_POS_CLS False, so the position embedding is decayed), gradient
clipping at L2 norm 0.02, lr 1e-4 (one shard) with 30 warm-up epochs and cosine to 1e-6
over 200 epochs; no drop path, colour jitter, RandAugment, random erasing or mixup;
random-resized crops of relative area 0.5-1 and aspect 3/4-4/3 from videos decoded at
shorter side 320, horizontal flip (PySlowFast's default); 4 temporal clips per video
(TRAIN_CROP_NUM_TEMPORAL): its BATCH_SIZE 32 counts videos, so a step sees 128 clips,
which is our batch_size 128 with repeated_augmentation 4. The decoder's 16 heads and the
normalised-pixel target are MAE-ST's defaults (facebookresearch/mae_st models_mae.py,
--norm_pix_loss).

Not MAE-ST's: its position embeddings are separable (space + time) and it has a CLS token;
ours is ViViT Model 1's joint learned embedding without CLS, so a fine-tuned ViViT loads it
by name. MAE-ST normalises a target patch over all its pixels, ours per channel
(VideoMAE's). The decoder's position table is fixed (VideoMAE's sinusoid), MAE-ST learns
its own.
"""
from vivit_jax import config as vc
from vivit_jax import recipes
from vivit_jax.models import videomae

VIDEOS_PER_BATCH, CLIPS_PER_VIDEO = 32, 4


def get_config(arg=None):
  del arg
  c = vc.default_config()
  c.experiment_name = 'mae_st_vit_l_k400_pretrain'
  c.task = 'masked_pretraining'
  pretrain = vc.sibling_config(__file__, 'videomae_vit_b_k400.py')
  c.dataset = pretrain.dataset
  d = c.dataset
  d.min_resize, d.scale_jitter = 320, None
  d.crop_area_range, d.crop_aspect_range = (0.5, 1.0), (3 / 4, 4 / 3)
  d.random_flip = True
  d.repeated_augmentation = CLIPS_PER_VIDEO
  m = recipes.set_vit_size(c.model, 'L')
  m.patch_size, m.temporal_patch_size = (16, 16), 2
  videomae.pretraining_model_config(m, mask_ratio=0.9, masking='random', norm_pix_loss=True,
                                    decoder_hidden_size=512, decoder_num_layers=4,
                                    decoder_num_heads=16, decoder_mlp_dim=2048)
  m.stochastic_depth = 0.0
  o = c.optimizer
  o.name, o.b1, o.b2, o.weight_decay, o.grad_clip_norm = 'adamw', 0.9, 0.95, 0.05, 0.02
  o.no_decay = (r'bias$', r'scale$')      # 1D parameters only (ZERO_WD_1D_PARAM).
  recipes.train_epochs(c, 200, batch_size=VIDEOS_PER_BATCH * CLIPS_PER_VIDEO,
                       warmup_epochs=30)
  s = c.schedule
  s.name, s.base_lr, s.end_lr = 'warmup_cosine', 1e-4, 1e-6
  t = c.trainer
  t.eval_batch_size = 128
  t.log_every, t.eval_every, t.checkpoint_every = 100, 5000, 1000
  return c
