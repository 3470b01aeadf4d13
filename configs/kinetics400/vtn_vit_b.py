"""VTN with a ViT-B/16 backbone and a 3-layer windowed (Longformer-style) temporal
encoder, Kinetics-400: 16 frames at stride 8, 224^2 (bomri/SlowFast
configs/Kinetics/VIT_B_VTN.yaml: SGD momentum 0.9, lr 1e-3 dropped 10x at epochs 13
and 24 of 25, batch 16; here a cosine schedule over 25 epochs). The paper reports no
single per-view FLOPs figure; experiments/model_table.py prints ours.
"""
from vivit_jax import config as vc
from vivit_jax import recipes
from vivit_jax.models import vtn


def get_config(arg=None):
  del arg
  config = recipes.kinetics400_recipe(vc.default_config())
  config.experiment_name = 'k400_vtn_vit_b'
  config.model = vtn.model_config('B')
  d = config.dataset
  d.num_frames, d.stride = 16, 8
  d.color_augment_prob = d.color_drop_prob = 0.0   # (ViViT's; not the original's.)
  d.num_test_clips, d.num_test_crops = 1, 1
  t = config.trainer
  t.batch_size = 16
  steps_per_epoch = d.num_train_examples // t.batch_size
  t.num_train_steps = 25 * steps_per_epoch
  t.mixup_alpha, t.label_smoothing = 0.0, 0.0
  t.view_aggregation = 'softmax'             # PySlowFast-based test: mean of softmaxes.
  config.optimizer.name, config.optimizer.momentum = 'sgd', 0.9
  config.schedule.base_lr, config.schedule.warmup_steps = 1e-3, 0
  return config
