"""Video Swin-T (window 8x7x7, patch 2x4x4), Kinetics-400, 32 frames (stride 2) at 224^2.

Paper (Liu et al. 2022, Table 1): 28M params, 88 GFLOPs per view, 4x3 test views.
Recipe of the official configs (swin_{tiny,small,base}_patch244_window877_kinetics400):
AdamW lr 1e-3, weight decay 0.02 (Swin-B 0.05), batch 64, 30 epochs with 2.5 warm-up,
drop path 0.1 / 0.2 / 0.3 (T / S / B), head dropout 0.5. swin_s.py and swin_b.py call
`get_config('S')` / `get_config('B')` of this file.

Batch: the paper's 64 clips per update. The official configs accumulate gradients
(`update_interval` 4 for T, 8 for S and B, of `videos_per_gpu=8` per GPU), so their
update's batch depends on the GPU count they do not state (8 GPUs: 256 / 512). To train
that way: `--config.trainer.batch_size=256 --config.trainer.grad_accum_steps=4`.
"""
from vivit_jax import config as vc
from vivit_jax import recipes
from vivit_jax.models import video_swin


def get_config(arg=None):
  variant = arg or 'T'
  config = recipes.kinetics400_recipe(vc.default_config())
  config.experiment_name = f'k400_swin_{variant.lower()}'
  config.model = video_swin.model_config(variant)
  d = config.dataset
  # Data of the official config: train RandomResizedCrop (mmaction2's area 0.08-1, aspect
  # 3/4-4/3) and flips, test 4 clips x 3 crops on short side 224 (Resize (-1, 224),
  # ThreeCrop), ImageNet mean/std (img_norm_cfg / 255).
  d.min_resize, d.scale_jitter, d.crop_area_range = 224, None, (0.08, 1.0)
  d.mean_rgb, d.std_rgb = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
  d.color_augment_prob = d.color_drop_prob = 0.0   # (ViViT's; not the original's.)
  config.optimizer.name = 'adamw'
  config.optimizer.weight_decay = 0.05 if variant == 'B' else 0.02
  # Decay mask and lr multipliers of configs/recognition/swin/swin_*_patch244_window877_
  # kinetics400_1k.py: paramwise_cfg custom_keys absolute_pos_embed / relative_position_
  # bias_table / norm: decay_mult 0, backbone: lr_mult 0.1; grad_clip None. mmcv's
  # DefaultOptimizerConstructor takes the first key (longest first) that is a substring
  # of the name, so 'backbone' wins over 'norm': norms and biases are decayed at lr x0.1,
  # relative_position_bias_table gets lr x1 and no decay, the head (output_projection)
  # lr x1, decayed. (There is no absolute_pos_embed in the 3D backbone.)
  config.optimizer.no_decay = (r'relative_position_bias_table',)
  config.optimizer.lr_multipliers = ((r'relative_position_bias_table', 1.0),
                                     (r'^(?!output_projection/)', 0.1))
  config.optimizer.grad_clip_norm = None
  config.schedule.base_lr = 1e-3
  config.trainer.mixup_alpha = 0.0
  config.trainer.label_smoothing = 0.0
  # mmaction2's test: average_clips='prob' (mean of the views' softmaxes).
  config.trainer.view_aggregation = 'softmax'
  return config
