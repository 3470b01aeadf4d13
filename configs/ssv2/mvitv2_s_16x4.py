"""MViTv2-S 16x4, Something-Something v2: 16 uniformly sampled frames, 224^2.

PySlowFast configs/SSv2/MVITv2_S_16x4.yaml: relative positions (no absolute ones), drop
path 0.4, head dropout 0.5; training short side 256-320 (TRAIN_JITTER_SCALES, no random-
resized crop), no flip, timm RandAugment rand-m7-n4-mstd0.5-inc1, random erasing 0.25,
mixup 0.8 / CutMix 1.0 switching at 0.5, label smoothing 0.1, one sample per video
(NUM_SAMPLE 1); SGD momentum 0.9, lr 0.0025 (one shard), weight decay 1e-4 (1-D
parameters exempt), no gradient clipping (no CLIP_GRAD_L2NORM), 3 warm-up + cosine to
100 epochs, batch 16; test 1 clip x 3 crops on
short side 224. Initialised from Kinetics-400 in the paper: `--config.init_from.path=...`.
"""
from vivit_jax import config as vc
from vivit_jax import recipes


def get_config(arg=None):
  del arg
  config = vc.sibling_config(__file__, '../kinetics400/mvitv2_s_16x4.py')
  config.experiment_name = 'ssv2_mvitv2_s_16x4'
  config.model.stochastic_depth = 0.4
  d = config.dataset
  d.num_classes, d.num_train_examples = 174, 168_913
  d.temporal_sampling, d.random_flip = 'uniform', False
  d.crop_area_range = d.crop_aspect_range = None
  d.min_resize, d.scale_jitter = 224, (256 / 224, 320 / 224)
  d.repeated_augmentation = 1
  d.num_test_clips, d.num_test_crops = 1, 3
  config.optimizer.name, config.optimizer.momentum = 'sgd', 0.9
  config.optimizer.weight_decay, config.optimizer.grad_clip_norm = 1e-4, None
  config.schedule.base_lr = 0.0025
  recipes.train_epochs(config, 100, batch_size=16, warmup_epochs=3)
  return config
