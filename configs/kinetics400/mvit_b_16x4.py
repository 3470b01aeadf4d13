"""MViT-B 16x4 (v1), Kinetics-400: 16 frames at stride 4, 224^2, 5x1 test views.

Paper (Fan et al. 2021, Table 2): 36.6M params, 70.5 GFLOPs per view. Architecture and
recipe of PySlowFast configs/Kinetics/MVIT_B_16x4_CONV.yaml: AdamW lr 1e-4 (batch 16),
weight decay 0.05, gradient clip 1, 30 warm-up + cosine to 200 epochs, mixup 0.8, label
smoothing 0.1, drop path 0.2, head dropout 0.5. mvit_b_32x3.py and mvitv2_s_16x4.py call
`get_config` of this file with their clip and model.
"""
from vivit_jax import config as vc
from vivit_jax import recipes
from vivit_jax.models import mvit


def get_config(arg=None):
  """arg: 'num_frames,stride[,variant]' (default '16,4,B'; variant 'B' or 'v2-S')."""
  frames, stride, *variant = (arg or '16,4').split(',')
  variant = variant[0] if variant else 'B'
  config = recipes.kinetics400_recipe(vc.default_config())
  name = 'mvitv2_s' if variant == 'v2-S' else 'mvit_b'
  config.experiment_name = f'k400_{name}_{frames}x{stride}'
  config.model = mvit.model_config(variant)
  d = config.dataset
  d.num_frames, d.stride = int(frames), int(stride)
  d.num_test_clips, d.num_test_crops = 5, 1
  # PySlowFast's augmentation (MVIT_B_16x4_CONV.yaml, MVITv2_S_16x4.yaml): random-resized
  # crop (TRAIN_JITTER_SCALES_RELATIVE 0.08-1, TRAIN_JITTER_ASPECT_RELATIVE 3/4-4/3),
  # timm's RandAugment AA_TYPE rand-m7-n4-mstd0.5-inc1, random erasing RE_PROB 0.25,
  # AUG.NUM_SAMPLE 2 (each video twice per batch, augmented independently); no ViViT
  # colour augmentation. AUG.COLOR_JITTER 0.4 is not applied to Kinetics clips
  # (slowfast/datasets/kinetics.py reads only AA_TYPE; imagenet.py reads COLOR_JITTER).
  d.crop_area_range, d.crop_aspect_range = (0.08, 1.0), (0.75, 1.3333)
  d.randaugment_ops, d.randaugment_layers, d.randaugment_magnitude = 'timm_increasing', 4, 7.0
  d.randaugment_magnitude_std = 0.5
  d.random_erasing_prob, d.repeated_augmentation = 0.25, 2
  d.color_augment_prob = d.color_drop_prob = 0.0
  t = config.trainer
  # TRAIN.BATCH_SIZE 16 videos x NUM_SAMPLE 2 = 32 clips per step; epochs count videos.
  t.batch_size = 16 * d.repeated_augmentation
  t.view_aggregation = 'softmax'             # PySlowFast's test: mean of softmaxes.
  steps_per_epoch = d.num_train_examples // 16
  t.num_train_steps = 200 * steps_per_epoch
  # MIXUP: ALPHA 0.8, CUTMIX_ALPHA 1.0, SWITCH_PROB 0.5, LABEL_SMOOTH_VALUE 0.1.
  t.mixup_alpha, t.cutmix_alpha, t.mixup_switch_prob, t.label_smoothing = 0.8, 1.0, 0.5, 0.1
  config.optimizer.name, config.optimizer.weight_decay = 'adamw', 0.05
  config.optimizer.grad_clip_norm = 1.0
  # Decay mask (v1 and v2): all but 1-D parameters (biases, LayerNorm scales).
  # PySlowFast configs/Kinetics/MVIT_B_16x4_CONV.yaml, MVIT_B_32x3_CONV.yaml and
  # MVITv2_S_16x4.yaml: SOLVER.ZERO_WD_1D_PARAM True, MVIT.ZERO_DECAY_POS_CLS False, so
  # slowfast/models/optimizer.py decays pos_embed*, cls_token and rel_pos_{t,h,w} too.
  config.optimizer.no_decay = (r'(^|/)(bias|scale)$',)
  config.schedule.base_lr = 1e-4
  config.schedule.warmup_steps = 30 * steps_per_epoch
  return config
