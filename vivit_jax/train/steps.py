"""Pure training and evaluation steps, written once for every parallel wrapper.

`train_step` and `eval_step` see one batch (the global batch under `jax.jit`, the
device-local one under `jax.pmap`) and only communicate through `axis_name`
(`lax.pmean`), so `parallel.py` can run the same function either way.
"""
from __future__ import annotations

import functools
from typing import Any, Callable, Optional

import flax
import jax
import jax.numpy as jnp
import optax

from vivit_jax.data.labels import LabelSpec
from vivit_jax.errors import config_error
from vivit_jax.train import objectives


@flax.struct.dataclass
class TrainState:
  """Everything a resumed run needs besides the config: checkpointed as is.

  step: int32[] number of optimiser updates done; params: model params;
  opt_state: optax state.
  """
  step: jnp.ndarray
  params: Any
  opt_state: Any


def create_train_state(params, tx) -> TrainState:
  return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                    opt_state=tx.init(params))


onehot_targets = objectives.onehot_targets


def mixup(rng, video, targets, alpha: float):
  """Mixes each example with the batch reversed: lam ~ Beta(alpha, alpha) per batch.

  video: float32[B, T, H, W, C]; targets: float32[B, K]. Returns (video, targets, lam).
  """
  lam = jax.random.beta(rng, alpha, alpha)
  lam = jnp.maximum(lam, 1.0 - lam)    # keep the first example dominant (argmax label).
  video = lam * video + (1.0 - lam) * video[::-1]
  targets = lam * targets + (1.0 - lam) * targets[::-1]
  return video, targets, lam


def cutmix_box(lam, cy, cx, height: int, width: int):
  """timm's `rand_bbox`: a box of side `int(side * sqrt(1 - lam))` centred on (cy, cx),
  clipped to the frame. Returns int32 (y0, y1, x0, x1), rows y0:y1 and columns x0:x1."""
  cut_rat = jnp.sqrt(1.0 - lam)
  cut_h = (height * cut_rat).astype(jnp.int32)
  cut_w = (width * cut_rat).astype(jnp.int32)
  y0 = jnp.clip(cy - cut_h // 2, 0, height)
  y1 = jnp.clip(cy + cut_h // 2, 0, height)
  x0 = jnp.clip(cx - cut_w // 2, 0, width)
  x1 = jnp.clip(cx + cut_w // 2, 0, width)
  return y0, y1, x0, x1


def cutmix(rng, video, targets, alpha: float):
  """Pastes one box of the batch reversed into each example (timm / PySlowFast CutMix).

  lam ~ Beta(alpha, alpha) sets the box size (`cutmix_box`, centre uniform over the
  frame); the same box is used for every example and every frame of the clip. The
  target weight of the pasted example is the area fraction actually pasted after
  clipping: targets = (1 - a) * targets + a * targets[::-1], a = box area / (H * W).
  video: float32[B, T, H, W, C]; targets: float32[B, K]. Returns (video, targets, 1 - a).
  """
  lam_rng, y_rng, x_rng = jax.random.split(rng, 3)
  height, width = video.shape[-3], video.shape[-2]
  lam = jax.random.beta(lam_rng, alpha, alpha)
  cy = jax.random.randint(y_rng, (), 0, height)
  cx = jax.random.randint(x_rng, (), 0, width)
  y0, y1, x0, x1 = cutmix_box(lam, cy, cx, height, width)
  rows = jnp.arange(height)[:, None]
  cols = jnp.arange(width)[None, :]
  box = (rows >= y0) & (rows < y1) & (cols >= x0) & (cols < x1)      # [H, W]
  video = jnp.where(box[:, :, None], video[::-1], video)
  lam = 1.0 - ((y1 - y0) * (x1 - x0)).astype(jnp.float32) / (height * width)
  targets = lam * targets + (1.0 - lam) * targets[::-1]
  return video, targets, lam


def mix_batch(rng, video, targets, mixup_alpha: float = 0.0, cutmix_alpha: float = 0.0,
              switch_prob: float = 0.5):
  """Batch-level mixing (timm's `Mixup` in batch mode): mixup only, CutMix only, or,
  with both alphas > 0, CutMix with probability `switch_prob` and mixup otherwise (one
  draw per batch). Deterministic in `rng`. Returns (video, targets, lam)."""
  if not cutmix_alpha:
    return mixup(rng, video, targets, mixup_alpha)
  if not mixup_alpha:
    return cutmix(rng, video, targets, cutmix_alpha)
  switch_rng, rng = jax.random.split(rng)
  use_cutmix = jax.random.uniform(switch_rng) < switch_prob
  return jax.lax.cond(use_cutmix,
                      lambda r, v, t: cutmix(r, v, t, cutmix_alpha),
                      lambda r, v, t: mixup(r, v, t, mixup_alpha),
                      rng, video, targets)


def check(config) -> None:
  """Raises ConfigError for the batch-mixing fields of `config.trainer` (read with
  defaults: `cutmix_alpha` 0 = off, `mixup_switch_prob` 0.5)."""
  t = config.trainer
  alpha = t.get('cutmix_alpha', 0.0) or 0.0
  if not isinstance(alpha, (int, float)) or isinstance(alpha, bool) or alpha < 0:
    raise config_error('trainer.cutmix_alpha', alpha, '>= 0 (0 = no CutMix)')
  prob = t.get('mixup_switch_prob', 0.5)
  if not isinstance(prob, (int, float)) or isinstance(prob, bool) or not 0 <= prob <= 1:
    raise config_error('trainer.mixup_switch_prob', prob, 'a probability in [0, 1]')


def temporal_control(video, mode: Optional[str], rng=None):
  """Destroys temporal information on device, for space-only control runs.

  mode None/'none': unchanged; 'single_frame': the middle frame repeated T times;
  'shuffle': frames permuted with a random permutation per batch (from `rng`).
  video: float32[B, T, H, W, C] (or [B, V, T, H, W, C] with `axis=-4` semantics).
  """
  if mode in (None, '', 'none'):
    return video
  t_axis = video.ndim - 4
  num_frames = video.shape[t_axis]
  if mode == 'single_frame':
    mid = jnp.take(video, num_frames // 2, axis=t_axis)
    return jnp.repeat(jnp.expand_dims(mid, t_axis), num_frames, axis=t_axis)
  if mode == 'shuffle':
    perm = jax.random.permutation(rng, num_frames)
    return jnp.take(video, perm, axis=t_axis)
  raise ValueError(f"temporal control {mode!r} is invalid: expected one of None, "
                   "'none', 'single_frame', 'shuffle'.")


def _loss_fn(params, video, targets, labels, rng, apply_fn, spec: LabelSpec):
  logits = apply_fn({'params': params}, video, train=True, rngs={'dropout': rng})
  logits = logits.astype(jnp.float32)
  return (objectives.loss(logits, targets, spec),
          objectives.correct(logits, labels, spec).mean())


def train_step(state: TrainState, batch, base_rng, *, apply_fn: Callable, tx,
               lr_fn: Callable, num_classes: int, label_smoothing: float = 0.0,
               mixup_alpha: float = 0.0, cutmix_alpha: float = 0.0,
               mixup_switch_prob: float = 0.5, grad_accum_steps: int = 1,
               temporal_control_mode: Optional[str] = None,
               axis_name: Optional[str] = None, label_spec: Optional[LabelSpec] = None):
  """One optimiser update on `batch`. Pure: rngs derive from `base_rng` and the step.

  batch: {'video': float32[B, T, H, W, C], 'label': int32[B]} (or the label of
  `label_spec`'s kind: int32[B, G] groups, float32[B, K] multi-label; None = one class
  of `num_classes`; loss and targets per kind in objectives.py); B divisible by
  `grad_accum_steps` (micro-batch i takes rows i, i+A, i+2A, ... so each device keeps
  its own rows). With `axis_name`, gradients and metrics are averaged over it.
  Batch mixing (`mix_batch`): mixup with `mixup_alpha`, CutMix with `cutmix_alpha`,
  CutMix with probability `mixup_switch_prob` when both are > 0.
  Returns (new_state, metrics) with float32 scalars loss, accuracy, grad_norm, lr.
  """
  rng = jax.random.fold_in(base_rng, state.step)
  mix_rng, drop_rng, ctrl_rng = jax.random.split(rng, 3)
  if axis_name is not None:   # different dropout masks on each device's examples.
    drop_rng = jax.random.fold_in(drop_rng, jax.lax.axis_index(axis_name))
  video, labels = batch['video'], batch['label']
  video = temporal_control(video, temporal_control_mode, ctrl_rng)
  spec = label_spec or objectives.plain(num_classes)
  targets = objectives.targets(labels, spec, label_smoothing)
  if mixup_alpha or cutmix_alpha:
    video, targets, _ = mix_batch(mix_rng, video, targets, mixup_alpha, cutmix_alpha,
                                 mixup_switch_prob)

  grad_fn = jax.value_and_grad(_loss_fn, has_aux=True)
  loss_fn = functools.partial(grad_fn, apply_fn=apply_fn, spec=spec)
  a = grad_accum_steps
  if a == 1:
    (loss, acc), grads = loss_fn(state.params, video, targets, labels, drop_rng)
  else:
    def split(x):   # [B, ...] -> [A, B/A, ...], micro-batch i = rows i::A.
      x = x.reshape((x.shape[0] // a, a) + x.shape[1:])
      return jnp.swapaxes(x, 0, 1)
    micro = (split(video), split(targets), split(labels))

    def body(carry, xs):
      i, (v, t, l) = xs
      (loss_i, acc_i), g = loss_fn(state.params, v, t, l, jax.random.fold_in(drop_rng, i))
      carry = jax.tree.map(jnp.add, carry, (loss_i, acc_i, g))
      return carry, None
    zeros = (jnp.zeros((), jnp.float32), jnp.zeros((), jnp.float32),
             jax.tree.map(jnp.zeros_like, state.params))
    (loss, acc, grads), _ = jax.lax.scan(body, zeros, (jnp.arange(a), micro))
    loss, acc, grads = jax.tree.map(lambda x: x / a, (loss, acc, grads))

  if axis_name is not None:
    loss, acc, grads = jax.lax.pmean((loss, acc, grads), axis_name)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  metrics = {'loss': loss, 'accuracy': acc, 'grad_norm': optax.tree.norm(grads),
             'lr': jnp.asarray(lr_fn(state.step), jnp.float32)}
  return TrainState(step=state.step + 1, params=params, opt_state=opt_state), metrics


# How the V test views of a video become one prediction (config.trainer.view_aggregation).
VIEW_AGGREGATIONS = ('softmax', 'logits')


def aggregate_views(logits, method: str = 'softmax', label_spec: Optional[LabelSpec] = None):
  """logits: float[B, V, K] of the V views of each video -> float32[B, K] probabilities.

  'softmax': the mean of the views' softmaxes (PySlowFast, mmaction2, TimeSformer, Video
  Swin); 'logits': the softmax of the views' mean logits (Scenic's ViViT). "Softmax"
  is `objectives.probabilities` of `label_spec`'s kind (per group; a sigmoid per class
  for multi-label); None = one softmax over K.
  """
  spec = label_spec or objectives.plain(logits.shape[-1])
  logits = logits.astype(jnp.float32)
  if method == 'softmax':
    return objectives.probabilities(logits, spec).mean(axis=1)
  if method == 'logits':
    return objectives.probabilities(logits.mean(axis=1), spec)
  raise ValueError(f'view aggregation {method!r} is invalid: expected one of '
                   f'{VIEW_AGGREGATIONS}.')


def eval_step(params, batch, *, apply_fn: Callable,
              temporal_control_mode: Optional[str] = None, base_rng=None,
              view_aggregation: str = 'softmax', label_spec: Optional[LabelSpec] = None):
  """Multi-view prediction: the views' logits aggregated by `aggregate_views`.

  batch: {'video': float32[B, V, T, H, W, C], ...} (or [B, T, H, W, C] for V = 1).
  Returns float32[B, K] class probabilities. Per-example, so no cross-device op.
  """
  video = batch['video']
  if video.ndim == 5:
    video = video[:, None]
  b, v = video.shape[:2]
  video = temporal_control(video, temporal_control_mode,
                           base_rng if base_rng is not None else jax.random.key(0))
  logits = apply_fn({'params': params}, video.reshape((b * v,) + video.shape[2:]),
                    train=False)
  return aggregate_views(logits.reshape(b, v, -1), view_aggregation, label_spec)
