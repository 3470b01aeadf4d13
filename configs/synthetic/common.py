"""Shared base and args of the synthetic configs (CPU-sized ViViT Models 1-4).

Config files load this by path (configs/ is not a package):
  common = _load_common()  # see vivit_model1.py
Args (comma-separated, `--config=configs/synthetic/vivit_model1.py:tiny,shuffle`):
  tiny          test-sized model and data (seconds on CPU).
  shuffle       space-only control: frames shuffled (one random permutation per batch).
  single_frame  space-only control: the middle frame repeated. Controls stay near chance
                on the synthetic task, whose classes differ only in motion.
"""
from vivit_jax import config as config_lib


def base_config():
  """16 frames of 32x32, 10 classes; hidden 64, 4 heads, MLP 4x; AdamW, batch 32."""
  c = config_lib.default_config()
  m = c.model
  m.embedding = 'tubelet'
  m.patch_size = (8, 8)
  m.temporal_patch_size = 2
  m.hidden_size = 64
  m.num_layers = 2
  m.num_heads = 4
  m.mlp_dim = 256

  c.dataset.name = 'synthetic'
  c.dataset.num_frames = 16
  c.dataset.crop_size = 32

  c.optimizer.name = 'adamw'
  c.optimizer.weight_decay = 1e-4
  c.optimizer.grad_clip_norm = 1.0
  c.schedule.name = 'warmup_cosine'
  c.schedule.base_lr = 1e-3
  c.schedule.warmup_steps = 50

  t = c.trainer
  t.batch_size = 32
  t.eval_batch_size = 64
  t.num_train_steps = 600
  t.log_every = 50
  t.eval_every = 200
  t.checkpoint_every = 200
  t.temporal_control = 'none'       # see apply_args; on-device, in train/steps.py.
  return c


def apply_args(c, arg):
  for a in (arg or '').split(','):
    a = a.strip()
    if not a:
      continue
    if a == 'tiny':
      m = c.model
      m.hidden_size, m.num_layers, m.num_heads, m.mlp_dim = 16, 1, 2, 32
      if m.attention_type == 'factorised_encoder':
        m.temporal_num_layers = 1
      m.patch_size, m.temporal_patch_size = (4, 4), 2
      c.dataset.num_frames, c.dataset.crop_size = 4, 8
      c.dataset.num_train_examples, c.dataset.num_eval_examples = 256, 64
      t = c.trainer
      t.batch_size = t.eval_batch_size = 16
      t.num_train_steps = 20
      t.log_every = t.eval_every = t.checkpoint_every = 10
      c.schedule.warmup_steps = 2
    elif a in ('shuffle', 'single_frame'):
      c.trainer.temporal_control = a
      c.experiment_name += '_' + a
    else:
      raise ValueError(f"config arg {a!r} is invalid: expected comma-separated "
                       "'tiny', 'shuffle', 'single_frame'.")
  return c
