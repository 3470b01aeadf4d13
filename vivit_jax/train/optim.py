"""Optax optimiser and learning-rate schedule built from `config.optimizer`/`schedule`.

Learning rate is per optimiser update (one `train_step`, whatever the gradient
accumulation). Weight decay is decoupled (AdamW style, also for SGD) and applied only
to matmul/conv kernels; biases, LayerNorm scales, position embeddings and class tokens
are not decayed.
"""
from __future__ import annotations

import re

import jax
import ml_collections
import optax

from vivit_jax.errors import ConfigError

# Parameter-path fragments that mark embeddings (never decayed even if ndim >= 2).
_NO_DECAY_PATTERNS = (r'pos(ition)?_?emb', r'posembed', r'^cls', r'token$')


def create_learning_rate_fn(config: ml_collections.ConfigDict, num_train_steps: int):
  """Returns `step -> lr` (float32 scalar): linear warm-up then cosine, or constant."""
  s = config.schedule
  base_lr = float(s.base_lr)
  warmup = int(s.get('warmup_steps', 0) or 0)
  if base_lr < 0:
    raise ConfigError(f'config.schedule.base_lr={base_lr!r} is invalid: expected >= 0.')
  if warmup < 0:
    raise ConfigError(f'config.schedule.warmup_steps={warmup!r} is invalid: expected >= 0.')
  if s.name == 'constant':
    main = optax.constant_schedule(base_lr)
  elif s.name == 'warmup_cosine':
    decay_steps = max(num_train_steps - warmup, 1)
    end = float(s.get('end_lr', 0.0) or 0.0)
    alpha = end / base_lr if base_lr > 0 else 0.0
    main = optax.cosine_decay_schedule(base_lr, decay_steps, alpha=alpha)
  else:
    raise ConfigError(f"config.schedule.name={s.name!r} is invalid: expected one of "
                      "'warmup_cosine', 'constant'.")
  if warmup == 0:
    return main
  warm = optax.linear_schedule(0.0, base_lr, warmup)
  return optax.join_schedules([warm, main], [warmup])


def _path_str(path) -> str:
  parts = []
  for k in path:
    parts.append(str(getattr(k, 'key', getattr(k, 'name', getattr(k, 'idx', k)))))
  return '/'.join(parts)


def weight_decay_mask(params):
  """Pytree of bools, True where a leaf is decayed: kernels (ndim >= 2), not embeddings.

  Position embeddings and class tokens are matched by their leaf name (e.g.
  `pos_embedding`, `cls`, `class_token`); the tubelet/patch projection
  (`embedding/kernel`) is a kernel and is decayed, as in big_vision.
  """
  def decide(path, x):
    name = _path_str(path)
    if x.ndim < 2:
      return False
    last = name.split('/')[-1]
    if last in ('bias', 'scale'):
      return False
    for pattern in _NO_DECAY_PATTERNS:
      if re.search(pattern, last, flags=re.IGNORECASE):
        return False
    return True
  return jax.tree_util.tree_map_with_path(decide, params)


def create_optimizer(config: ml_collections.ConfigDict, num_train_steps: int):
  """Returns `(tx, lr_fn)`: clip by global norm -> sgd/adamw -> masked decoupled decay."""
  o = config.optimizer
  lr_fn = create_learning_rate_fn(config, num_train_steps)
  chain = []
  clip = o.get('grad_clip_norm', None)
  if clip:
    if clip < 0:
      raise ConfigError(f'config.optimizer.grad_clip_norm={clip!r} is invalid: '
                        'expected > 0, or None/0 for no clipping.')
    chain.append(optax.clip_by_global_norm(float(clip)))
  if o.name == 'sgd':
    momentum = o.get('momentum', 0.9)
    if momentum:
      chain.append(optax.trace(decay=float(momentum), nesterov=bool(o.get('nesterov', False))))
  elif o.name == 'adamw':
    chain.append(optax.scale_by_adam(b1=float(o.b1), b2=float(o.b2),
                                     eps=float(o.get('eps', 1e-8))))
  else:
    raise ConfigError(f"config.optimizer.name={o.name!r} is invalid: expected one of "
                      "'sgd', 'adamw'.")
  wd = float(o.get('weight_decay', 0.0) or 0.0)
  if wd < 0:
    raise ConfigError(f'config.optimizer.weight_decay={wd!r} is invalid: expected >= 0.')
  if wd > 0:
    chain.append(optax.add_decayed_weights(wd, mask=weight_decay_mask))
  chain.append(optax.scale_by_learning_rate(lr_fn))
  return optax.chain(*chain), lr_fn
