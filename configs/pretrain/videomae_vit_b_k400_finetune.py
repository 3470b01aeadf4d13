r"""Fine-tuning the VideoMAE ViT-B/16x2 pretraining (videomae_vit_b_k400.py) on
Kinetics-400: a ViViT Model 1 whose encoder comes from the pretraining workdir.

  python -m vivit_jax.main --config=configs/pretrain/videomae_vit_b_k400_finetune.py \
      --workdir=/tmp/videomae_b_ft --config.init_from.path=/tmp/videomae_b \
      --config.dataset.data_dir=/data/k400_shards

`init_from` loads `embedding` and `Transformer` (the pretraining's decoder and final
LayerNorm are left unused) and starts VideoMAE's head fresh: the mean of the tokens, a
LayerNorm `fc_norm`, a zero projection (classifier 'gap_fc_norm', use_mean_pooling).
Values from MCG-NJU/VideoMAE: scripts/kinetics/
videomae_vit_base_patch16_224_tubemasking_ratio_0.9_epoch_800/finetune.sh (16 frames at
rate 4, 224^2, AdamW lr 1e-3 with betas (0.9, 0.999), weight decay 0.05, 100 epochs, 8
clips per GPU on 64 GPUs = batch 512, test 5 clips x 3 crops at shorter side 224) and
run_class_finetuning.py's defaults (lr x batch / 256 = 2e-3, min lr 1e-6 x batch / 256,
5 warm-up epochs, layer-wise lr decay 0.75, drop path 0.1, label smoothing 0.1, mixup 0.8
and CutMix 1.0 switched with probability 0.5, random erasing 0.25, RandAugment
rand-m7-n4-mstd0.5-inc1, 2 repeated-augmentation samples per video, no gradient
clipping); its Kinetics loader's random-resized crop (scale 0.08-1, aspect 3/4-4/3) with
horizontal flip.

The position embedding stays the pretraining's fixed sinusoid table (lr multiplier 0), as
VideoMAE's. Not VideoMAE's: the head's projection starts at zero (VideoMAE: trunc-normal
scaled by init_scale 0.001).
"""
from vivit_jax import config as vc
from vivit_jax import recipes

FINETUNE_BATCH = 512           # 8 clips x 64 GPUs.


def get_config(arg=None):
  del arg
  c = vc.default_config()
  c.experiment_name = 'videomae_vit_b_k400_finetune'
  pretrain = vc.sibling_config(__file__, 'videomae_vit_b_k400.py')
  c.dataset = pretrain.dataset
  d = c.dataset
  d.min_resize, d.crop_area_range, d.crop_aspect_range = 224, (0.08, 1.0), (3 / 4, 4 / 3)
  d.random_flip = True
  d.randaugment_ops, d.randaugment_layers = 'timm_increasing', 4
  d.randaugment_magnitude, d.randaugment_magnitude_std = 7.0, 0.5
  d.random_erasing_prob = 0.25
  d.repeated_augmentation = 2
  d.num_test_clips, d.num_test_crops = 5, 3
  m = recipes.set_vit_size(c.model, 'B')
  m.attention_type, m.embedding, m.classifier = 'spatio_temporal', 'tubelet', 'gap_fc_norm'
  m.patch_size, m.temporal_patch_size = (16, 16), 2
  m.stochastic_depth, m.stochastic_depth_rescale = 0.1, True   # timm drop_path.
  o = c.optimizer
  o.name, o.b1, o.b2, o.weight_decay, o.grad_clip_norm = 'adamw', 0.9, 0.999, 0.05, None
  o.lr_multipliers = ((r'posembed_input', 0.0),)   # VideoMAE's fixed sinusoid table.
  o.layer_decay = 0.75
  recipes.train_epochs(c, 100, batch_size=FINETUNE_BATCH, warmup_epochs=5)
  s = c.schedule
  s.name, s.base_lr, s.end_lr = 'warmup_cosine', 1e-3 * FINETUNE_BATCH / 256, 1e-6 * FINETUNE_BATCH / 256
  t = c.trainer
  t.label_smoothing, t.mixup_alpha, t.cutmix_alpha, t.mixup_switch_prob = 0.1, 0.8, 1.0, 0.5
  t.eval_batch_size = 64
  c.init_from.path = None      # set to the pretraining workdir.
  return c
