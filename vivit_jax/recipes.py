"""Recipes: the paper-sized and CPU-sized settings that config files build on.

Config files under `configs/` start from `config.default_config()` and apply these
(big_vision style): `kinetics400_recipe` (the ViViT paper's Kinetics-400 data and
optimisation), `synthetic_recipe` (the generated motion task, CPU-sized, with its
`tiny`/`shuffle`/`single_frame` args), the synthetic transformers, and ViT sizes.
"""
from __future__ import annotations

from typing import Callable, Optional

import ml_collections

from vivit_jax.errors import config_error
from vivit_jax.models.vit import SIZES as VIT_SIZES, set_vit_size  # noqa: F401


def kinetics400_recipe(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The ViViT Kinetics-400 recipe as its reference code trains it (Scenic,
  projects/vivit/configs/kinetics400/vivit_base_k400.py): 32 frames at stride 2, shorter
  side 256, 224^2 crops, scale jitter 0.9-1.33, 4 temporal x 3 spatial test views, SGD
  momentum 0.9, no weight decay (l2_decay_factor 0), gradient clipping at 1, DMVR colour
  augmentation with probability 0.8 and colour drop 0.1, batch 64,
  lr 0.1 with linear warm-up (2.5 epochs) and cosine decay over 30 epochs; no label
  smoothing (None), mixup or stochastic depth. The views' logits are averaged, and
  stochastic depth (where a config turns it on) drops a residual branch without
  rescaling the kept ones (Scenic's `EncoderBlock`: x * (1 - drop_pattern) + inputs).
  Other families' configs that start from this recipe set their own references' choices.
  """
  d = config.dataset
  d.name = 'tfrecord'
  d.data_dir = ''                           # shards of SequenceExamples (see data/).
  d.num_frames, d.stride, d.crop_size, d.num_classes = 32, 2, 224, 400
  d.num_test_clips, d.num_test_crops = 4, 3
  d.min_resize = 256
  d.scale_jitter = (0.9, 1.33)
  d.random_flip = True
  d.color_augment_prob, d.color_drop_prob = 0.8, 0.1   # DMVR colour augmentation.
  d.mean_rgb, d.std_rgb = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)
  d.num_train_examples = 240_000            # approx. Kinetics-400 train clips.
  steps_per_epoch = d.num_train_examples // 64
  config.optimizer.name, config.optimizer.momentum = 'sgd', 0.9
  config.optimizer.weight_decay, config.optimizer.grad_clip_norm = 0.0, 1.0
  config.schedule.name, config.schedule.base_lr = 'warmup_cosine', 0.1
  config.schedule.warmup_steps = int(2.5 * steps_per_epoch)
  t = config.trainer
  t.batch_size, t.num_train_steps = 64, 30 * steps_per_epoch
  t.log_every, t.eval_every, t.checkpoint_every = 100, 5000, 1000
  t.label_smoothing, t.mixup_alpha = 0.0, 0.0
  config.model.stochastic_depth = 0.0
  config.model.stochastic_depth_rescale = False
  t.view_aggregation = 'logits'
  return config


def synthetic_transformer(model: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The CPU-sized transformer of the synthetic configs: tubelets 8x4x4 on 16x32x32 clips
  (2x8x8 = 128 tokens), hidden 64, 2 layers, 4 heads, MLP 256.

  Why these sizes: 8x8 patches learned the moves but not the direction of growth, 4x4
  patches did (t=8 as well as t=4 at half the cost), and neither 4 layers nor lr 3e-3 did
  better (experiments/README.md, "Synthetic model size and CPU devices")."""
  model.embedding, model.patch_size, model.temporal_patch_size = 'tubelet', (4, 4), 8
  model.hidden_size, model.num_layers, model.num_heads, model.mlp_dim = 64, 2, 4, 256
  return model


def tiny_transformer(model: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Test-sized transformer for the synthetic 'tiny' arg (4x8x8 clips, patches 2x4x4)."""
  model.hidden_size, model.num_layers, model.num_heads, model.mlp_dim = 16, 1, 2, 32
  model.patch_size, model.temporal_patch_size = (4, 4), 2
  if model.get('attention_type') == 'factorised_encoder':
    model.temporal_num_layers = 1
  return model


SYNTHETIC_ARGS = ('tiny', 'shuffle', 'single_frame')


def synthetic_recipe(config: ml_collections.ConfigDict, arg: Optional[str] = None, *,
                     tiny_model: Callable = tiny_transformer,
                     base_lr: float = 1e-3,
                     warmup_steps: int = 100) -> ml_collections.ConfigDict:
  """Data, optimisation and trainer of the synthetic motion task; then applies `arg`.

  16 frames of 32x32, 10 classes, 16384 training videos; AdamW at `base_lr` (1e-3;
  the factorised ViViT Models 2-4 pass 3e-4: at 1e-3 they sat on the initial loss
  plateau until the cosine had brought the rate down to about 5e-4), warm-up
  `warmup_steps` (100) + cosine, batch 32, 4000 steps on two CPU devices where the
  backend is a CPU (Model 1: about 7 minutes on 2 cores, test included); the test
  split is read as 3 clips x 3 crops (the papers' multi-view protocol). `arg` is
  comma-separated (`--config=configs/synthetic/x.py:tiny,shuffle`):
    tiny          test-sized data and trainer (seconds on CPU); `tiny_model(model)`
                  shrinks the model (each family passes its own).
    shuffle       space-only control: frames shuffled (one random permutation per batch).
    single_frame  space-only control: the middle frame repeated. Controls stay near
                  chance on the synthetic task, whose classes differ only in motion.
  """
  d = config.dataset
  d.name, d.num_frames, d.crop_size, d.num_classes = 'synthetic', 16, 32, 10
  d.num_train_examples = 16384     # underfits rather than overfits at this budget.
  d.num_test_clips = d.num_test_crops = 3   # test: 3 clips x 3 crops, softmax-averaged.
  o = config.optimizer
  o.name, o.weight_decay, o.grad_clip_norm = 'adamw', 1e-4, 1.0
  s = config.schedule
  s.name, s.base_lr, s.warmup_steps = 'warmup_cosine', base_lr, warmup_steps
  t = config.trainer
  t.batch_size, t.eval_batch_size, t.num_train_steps = 32, 64, 4000
  t.log_every, t.eval_every, t.checkpoint_every = 100, 1000, 1000
  t.cpu_devices = 2                # on a CPU: two data-parallel devices, ~1.2x steps/s.
  for a in (arg or '').split(','):
    a = a.strip()
    if not a:
      continue
    if a == 'tiny':
      tiny_model(config.model)
      d.num_frames, d.crop_size = 4, 8
      d.num_train_examples, d.num_eval_examples = 256, 64
      d.num_test_clips = d.num_test_crops = 1
      t.batch_size = t.eval_batch_size = 16
      t.num_train_steps = 20
      t.log_every = t.eval_every = t.checkpoint_every = 10
      s.warmup_steps = 2
    elif a in ('shuffle', 'single_frame'):
      t.temporal_control = a
      config.experiment_name += '_' + a
    else:
      raise config_error('arg', a, f'comma-separated values from {list(SYNTHETIC_ARGS)}')
  return config
