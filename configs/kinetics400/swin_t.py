"""Video Swin-T (window 8x7x7, patch 2x4x4), Kinetics-400, 32 frames (stride 2) at 224^2.

Paper (Liu et al. 2022, Table 1): 28M params, 88 GFLOPs per view, 4x3 test views.
Recipe of the official configs (swin_{tiny,small,base}_patch244_window877_kinetics400):
AdamW lr 1e-3, weight decay 0.02 (Swin-B 0.05), batch 64, 30 epochs with 2.5 warm-up,
drop path 0.1 / 0.2 / 0.3 (T / S / B), head dropout 0.5. swin_s.py and swin_b.py call
`get_config('S')` / `get_config('B')` of this file.
"""
from vivit_jax import config as vc
from vivit_jax import recipes
from vivit_jax.models import video_swin


def get_config(arg=None):
  variant = arg or 'T'
  config = recipes.kinetics400_recipe(vc.default_config())
  config.experiment_name = f'k400_swin_{variant.lower()}'
  config.model = video_swin.model_config(variant)
  config.optimizer.name = 'adamw'
  config.optimizer.weight_decay = 0.05 if variant == 'B' else 0.02
  config.schedule.base_lr = 1e-3
  config.trainer.mixup_alpha = 0.0
  config.trainer.label_smoothing = 0.0
  # mmaction2's test: average_clips='prob' (mean of the views' softmaxes).
  config.trainer.view_aggregation = 'softmax'
  return config
