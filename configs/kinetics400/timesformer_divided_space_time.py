"""TimeSformer (divided space-time attention), Kinetics-400: 8 frames at stride 32, 224^2,
ViT-B/16 (facebookresearch/TimeSformer configs/Kinetics/TimeSformer_divST_8x32_224.yaml).

Paper: about 121.4M params and 0.59 TFLOPs for 3 views (196 GFLOPs per view). Recipe of
the original: SGD momentum 0.9, lr 0.005, weight decay 1e-4, 15 epochs (steps of 10x at
epochs 11 and 14; here cosine), global batch 8 (TRAIN.BATCH_SIZE over 8 GPUs), drop path
0.1, no mixup or label smoothing, training short side 256-320 (TRAIN_JITTER_SCALES),
1 clip x 3 crops at test on short side 224 (TEST_CROP_SIZE), pixels normalised with mean
0.45 / std 0.225. Initialise from
an ImageNet ViT-B/16 with `--config.init_from.path=ViT-B_16.npz` (see
vivit_jax/convert/initialise.py for the TimeSformer rules).
"""
from vivit_jax import config as vc
from vivit_jax import recipes


def timesformer_config(attention_type: str, experiment_name: str):
  """The K400 recipe above for one TimeSformer attention type."""
  config = recipes.kinetics400_recipe(vc.default_config())
  config.experiment_name = experiment_name
  m = recipes.set_vit_size(config.model, 'B')
  m.name, m.attention_type, m.classifier = 'timesformer', attention_type, 'token'
  m.patch_size = (16, 16)
  m.stochastic_depth, m.layer_norm_epsilon, m.gelu_approximate = 0.1, 1e-6, False
  m.stochastic_depth_rescale = True          # timm's DropPath, as the original.
  d = config.dataset
  d.num_frames, d.stride, d.crop_size = 8, 32, 224
  d.num_test_clips, d.num_test_crops = 1, 3
  # Test views on short side 224; training short side 256-320 = 224 x [8/7, 10/7].
  d.min_resize, d.scale_jitter = 224, (256 / 224, 320 / 224)
  d.color_augment_prob = d.color_drop_prob = 0.0   # (ViViT's; not the original's.)
  d.mean_rgb, d.std_rgb = (0.45, 0.45, 0.45), (0.225, 0.225, 0.225)
  t = config.trainer
  t.batch_size = 8
  steps_per_epoch = d.num_train_examples // t.batch_size
  t.num_train_steps = 15 * steps_per_epoch
  t.mixup_alpha, t.label_smoothing = 0.0, 0.0
  t.view_aggregation = 'softmax'             # PySlowFast-style test: mean of softmaxes.
  o = config.optimizer
  o.name, o.momentum, o.weight_decay = 'sgd', 0.9, 1e-4
  # Decay mask: every parameter. facebookresearch/TimeSformer timesformer/models/
  # optimizer.py decays all parameters whose name lacks 'bn' (none do) at
  # SOLVER.WEIGHT_DECAY 1e-4; VisionTransformer.no_weight_decay() (pos_embed, cls_token,
  # time_embed) is never called. No gradient clipping (tools/train_net.py: backward, step).
  o.no_decay, o.grad_clip_norm = (), None
  config.schedule.base_lr, config.schedule.warmup_steps = 0.005, 0
  return config


def get_config(arg=None):
  """arg: the attention type (default 'divided_space_time'; the other two have their
  own config files that pass it)."""
  attention_type = arg or 'divided_space_time'
  return timesformer_config(attention_type, f'k400_timesformer_{attention_type}')
