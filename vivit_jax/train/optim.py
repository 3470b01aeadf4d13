"""Optax optimiser and learning-rate schedule built from `config.optimizer`/`schedule`.

Learning rate is per optimiser update (one `train_step`, whatever the gradient
accumulation). The update of one parameter, in order (PyTorch's order: `clip_grad_norm_`
runs on `.grad` before `optimizer.step()` adds the decay):

  1. clip the global gradient norm to `grad_clip_norm` (None/0: off);
  2. SGD: add `weight_decay * param` to the gradient (coupled L2, as `torch.optim.SGD`
     and Scenic's momentum optimiser), then the momentum trace `buf = momentum * buf + g`
     (dampening 0, optional Nesterov);
     AdamW: Adam's moment estimates, then add `weight_decay * param` (decoupled, as
     `torch.optim.AdamW`);
  3. multiply by the learning rate of the schedule times the parameter's own multiplier
     (`lr_multipliers` and `layer_decay` below), so decay scales with the group's lr as
     in a PyTorch param group.

Which parameters are decayed (`optimizer.no_decay`): None applies the default rule
(`weight_decay_mask`): kernels (ndim >= 2) are decayed; biases, LayerNorm scales,
position embeddings and class tokens (leaf names matching `_NO_DECAY_PATTERNS`) are not.
A sequence of regexes replaces that rule: a parameter is decayed unless `re.search` of
one of them matches its '/'-joined path (e.g. 'Transformer/encoderblock_0/
MlpBlock_0/Dense_0/kernel'); `()` decays every parameter. Each paper config states its
reference's mask (configs/kinetics400/*).

Per-parameter learning-rate multipliers (`optimizer.lr_multipliers`): a sequence of
`(regex, multiplier)`; the first regex that `re.search`-matches the path gives the
multiplier (mmcv's `custom_keys` rule: first match wins), no match gives 1.

Layer-wise lr decay (`optimizer.layer_decay`, BEiT/VideoMAE style; None = off): with L
encoder blocks, a parameter of block i (0-based) gets `decay ** (L - i)`, embeddings
(patch/tubelet projection and its norm, class tokens, position embeddings: a path
component matching `_EMBEDDING_COMPONENT`) get `decay ** (L + 1)`, everything else
(final norm, head) 1. The block index is read from the parameter path:
  ViT / ViViT (spatio-temporal, factorised self-attention / dot-product) / TimeSformer:
    `encoderblock_<i>` (under `Transformer/` for ViT/ViViT, at the root for TimeSformer);
  MViT / MViTv2: `block_<i>` (global block index);
  Video Swin: `stage_<s>/block_<j>`, numbered in (s, j) order over all stages; the patch
    merging of stage s (`stage_<s>/merge`) counts as the last block of stage s (SimMIM's
    rule).
Models with blocks under two different parents (ViViT factorised encoder, VTN: a spatial
and a temporal transformer) have no single block order and are refused (ConfigError).

Frozen parameters (`trainer.freeze`; None = train everything) get zero updates
(`optax.multi_transform` with `optax.set_to_zero`; they hold no optimiser state and their
gradients count in neither the clipping norm nor the decay):
  'backbone'   linear probing: only the final class projection trains (the top-level
               `output_projection`, every family's last Dense); ViT's `pre_logits`,
               VTN's `head_hidden` and all else stay as loaded (typically `init_from`);
  [regex, ...] a parameter is frozen when one of them `re.search`-matches its '/'-joined
               path (e.g. ['^embedding/', '^Transformer/encoderblock_[0-5]/']).
A setting that freezes every parameter or none is refused (ConfigError) when the
optimiser state is created.
"""
from __future__ import annotations

import math
import numbers
import re

import jax
import ml_collections
import optax

from vivit_jax.errors import ConfigError, config_error

# Default rule: leaf-name fragments that mark embeddings (never decayed even if ndim >= 2).
_NO_DECAY_PATTERNS = (r'pos(ition)?_?emb', r'posembed', r'^cls', r'token$')
# Layer decay: a path component naming an embedding parameter or module (layer id 0).
_EMBEDDING_COMPONENT = re.compile(
    r'^(cls\w*|\w*_token|embedding|embedding_norm|patch_embed|pos_?embed\w*|'
    r'posembed_input|time_embed)$')
# Layer decay: an encoder block (optionally inside a Swin stage) / a Swin patch merging.
_BLOCK = re.compile(r'(?:^|/)(?:stage_(\d+)/)?(?:encoder)?block_(\d+)(?:/|$)')
_MERGE = re.compile(r'(?:^|/)stage_(\d+)/merge(?:/|$)')
# trainer.freeze='backbone': what stays trainable (the class projection of every family).
HEAD_PREFIX = 'output_projection/'
FREEZE_CHOICES = ('backbone',)


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


def _default_decayed(name: str, ndim: int) -> bool:
  if ndim < 2:
    return False
  last = name.split('/')[-1]
  if last in ('bias', 'scale'):
    return False
  return not any(re.search(p, last, flags=re.IGNORECASE) for p in _NO_DECAY_PATTERNS)


def weight_decay_mask(params, no_decay=None):
  """Pytree of bools, True where a leaf is decayed.

  no_decay None: the default rule: kernels (ndim >= 2), not embeddings. Position
  embeddings and class tokens are matched by their leaf name (e.g. `pos_embedding`,
  `cls`, `class_token`); the tubelet/patch projection (`embedding/kernel`) is a kernel
  and is decayed, as in big_vision. no_decay a sequence of regexes: decayed unless one
  of them `re.search`-matches the '/'-joined path.
  """
  if no_decay is None:
    decide = lambda path, x: _default_decayed(_path_str(path), x.ndim)
  else:
    compiled = [re.compile(p) for p in no_decay]
    decide = lambda path, x: not any(c.search(_path_str(path)) for c in compiled)
  return jax.tree_util.tree_map_with_path(decide, params)


def layer_ids(names, layer_decay=None) -> tuple[dict, int]:
  """`({name: layer id}, L)` for '/'-joined parameter paths (see the module docstring):
  0 for embeddings, i + 1 for encoder block i, L + 1 for the rest.

  Raises ConfigError naming `optimizer.layer_decay` (with its value `layer_decay`) when
  no block is found or blocks sit under two parents."""
  keys, parents = {}, set()
  for name in names:
    m = _BLOCK.search(name)
    if m:
      keys[name] = (int(m.group(1) or 0), int(m.group(2)))
      parents.add(name[:m.start()])
  if not keys:
    raise config_error('optimizer.layer_decay', layer_decay, 'None for a model without '
                       'numbered encoder blocks (encoderblock_<i>, block_<i>)')
  if len(parents) > 1:
    raise config_error('optimizer.layer_decay', layer_decay, 'None for a model with blocks '
                       f'under several parents {sorted(parents)} (no single block order)')
  order = {k: i + 1 for i, k in enumerate(sorted(set(keys.values())))}
  last_of_stage = {}
  for s, j in order:
    last_of_stage[s] = max(last_of_stage.get(s, j), j)
  num_layers = len(order)
  ids = {}
  for name in names:
    merge = _MERGE.search(name)
    if name in keys:
      ids[name] = order[keys[name]]
    elif merge and int(merge.group(1)) in last_of_stage:
      s = int(merge.group(1))
      ids[name] = order[(s, last_of_stage[s])]
    elif any(_EMBEDDING_COMPONENT.match(c) for c in name.split('/')):
      ids[name] = 0
    else:
      ids[name] = num_layers + 1
  return ids, num_layers


def parameter_lr_multipliers(params, multipliers=(), layer_decay=None):
  """Pytree of Python floats: each parameter's lr multiplier: the first `(regex, m)` of
  `multipliers` matching its path (else 1), times `layer_decay ** (L + 1 - layer id)`
  when `layer_decay` is set."""
  # Under `trainer.freeze` the frozen leaves are optax.MaskedNode: they still count as
  # names, so the block order of layer decay is the whole model's.
  names = [_path_str(p) for p, _ in jax.tree_util.tree_leaves_with_path(
      params, is_leaf=lambda x: isinstance(x, optax.MaskedNode))]
  mult = {n: 1.0 for n in names}
  for name in names:
    for pattern, m in multipliers or ():
      if re.search(pattern, name):
        mult[name] = float(m)
        break
  if layer_decay is not None:
    ids, num_layers = layer_ids(names, layer_decay)
    for name in names:
      mult[name] *= float(layer_decay) ** (num_layers + 1 - ids[name])
  return jax.tree_util.tree_map_with_path(lambda p, _: mult[_path_str(p)], params)


def scale_by_multipliers(multipliers=(), layer_decay=None):
  """Optax transformation multiplying each update by `parameter_lr_multipliers` (read
  from the paths of the updates tree, so it needs no state)."""
  def init_fn(params):
    del params
    return optax.EmptyState()

  def update_fn(updates, state, params=None):
    del params
    mult = parameter_lr_multipliers(updates, multipliers, layer_decay)
    return jax.tree.map(lambda u, m: u if m == 1.0 else u * m, updates, mult), state

  return optax.GradientTransformation(init_fn, update_fn)


def _is_regex(p) -> bool:
  if not isinstance(p, str):
    return False
  try:
    re.compile(p)
  except re.error:
    return False
  return True


def check(config: ml_collections.ConfigDict) -> None:
  """Raises ConfigError for `config.optimizer` fields and `trainer.freeze` that cannot
  work (no compute)."""
  o = config.optimizer
  if o.get('name') not in ('sgd', 'adamw'):
    raise config_error('optimizer.name', o.get('name'), "one of 'sgd', 'adamw'")
  clip = o.get('grad_clip_norm', None)
  if clip and (not isinstance(clip, numbers.Real) or clip < 0):
    raise config_error('optimizer.grad_clip_norm', clip, '> 0, or None/0 for no clipping')
  wd = o.get('weight_decay', 0.0) or 0.0
  if not isinstance(wd, numbers.Real) or wd < 0:
    raise config_error('optimizer.weight_decay', wd, '>= 0')
  no_decay = o.get('no_decay', None)
  if no_decay is not None and (isinstance(no_decay, str) or
                               not all(_is_regex(p) for p in no_decay)):
    raise config_error('optimizer.no_decay', no_decay, 'None or a list of regexes '
                       "over '/'-joined parameter paths")
  decay = o.get('layer_decay', None)
  if decay is not None and (not isinstance(decay, numbers.Real) or not 0 < decay <= 1):
    raise config_error('optimizer.layer_decay', decay, 'None (off) or a value in (0, 1]')
  freeze = config.get('trainer', {}).get('freeze', None)
  regexes = isinstance(freeze, (list, tuple)) and freeze and all(map(_is_regex, freeze))
  if freeze is not None and freeze not in FREEZE_CHOICES and not regexes:
    raise config_error('trainer.freeze', freeze, "None, 'backbone' (train only the class "
                       "projection) or a list of regexes of the parameter paths to freeze")
  mults = o.get('lr_multipliers', None) or ()
  ok = not isinstance(mults, str)
  if ok:
    for pair in mults:
      if (isinstance(pair, str) or len(pair) != 2 or not _is_regex(pair[0]) or
          not isinstance(pair[1], numbers.Real) or not math.isfinite(pair[1]) or
          pair[1] < 0):
        ok = False
  if not ok:
    raise config_error('optimizer.lr_multipliers', mults, 'None or a list of (regex, '
                       'multiplier >= 0) pairs')


def frozen_mask(params, freeze):
  """Pytree of bools, True where a parameter is frozen by `trainer.freeze` `freeze`
  (see the module docstring); ConfigError when it freezes every parameter or none."""
  if freeze is None:
    return jax.tree.map(lambda _: False, params)
  if freeze == 'backbone':
    decide = lambda name: not name.startswith(HEAD_PREFIX)
  else:
    compiled = [re.compile(p) for p in freeze]
    decide = lambda name: any(c.search(name) for c in compiled)
  mask = jax.tree_util.tree_map_with_path(lambda path, _: decide(_path_str(path)), params)
  frozen = jax.tree.leaves(mask)
  if all(frozen) or not any(frozen):
    raise config_error('trainer.freeze', freeze, 'a setting that freezes some parameters '
                       f'but not all (it freezes {sum(frozen)} of {len(frozen)})')
  return mask


def freeze_frozen(tx, freeze):
  """`tx` for the trainable parameters, zero updates for the frozen ones."""
  if freeze is None:
    return tx
  freeze = freeze if isinstance(freeze, str) else tuple(freeze)
  labels = lambda params: jax.tree.map(lambda f: 'frozen' if f else 'train',
                                       frozen_mask(params, freeze))
  return optax.multi_transform({'train': tx, 'frozen': optax.set_to_zero()}, labels)


def create_optimizer(config: ml_collections.ConfigDict, num_train_steps: int):
  """Returns `(tx, lr_fn)`: clip -> (SGD: coupled decay -> momentum | AdamW: Adam ->
  decoupled decay) -> per-parameter multipliers -> learning rate."""
  check(config)
  o = config.optimizer
  lr_fn = create_learning_rate_fn(config, num_train_steps)
  chain = []
  clip = o.get('grad_clip_norm', None)
  if clip:
    chain.append(optax.clip_by_global_norm(float(clip)))
  wd = float(o.get('weight_decay', 0.0) or 0.0)
  no_decay = o.get('no_decay', None)
  no_decay = None if no_decay is None else tuple(no_decay)
  decay = optax.add_decayed_weights(wd, mask=lambda p: weight_decay_mask(p, no_decay))
  if o.name == 'sgd':
    if wd > 0:
      chain.append(decay)
    momentum = o.get('momentum', 0.9)
    if momentum:
      chain.append(optax.trace(decay=float(momentum), nesterov=bool(o.get('nesterov', False))))
  else:
    chain.append(optax.scale_by_adam(b1=float(o.b1), b2=float(o.b2),
                                     eps=float(o.get('eps', 1e-8))))
    if wd > 0:
      chain.append(decay)
  mults = tuple((str(p), float(m)) for p, m in (o.get('lr_multipliers', None) or ()))
  layer_decay = o.get('layer_decay', None)
  if mults or layer_decay is not None:
    chain.append(scale_by_multipliers(mults, layer_decay))
  chain.append(optax.scale_by_learning_rate(lr_fn))
  return freeze_frozen(optax.chain(*chain), config.trainer.get('freeze', None)), lr_fn
