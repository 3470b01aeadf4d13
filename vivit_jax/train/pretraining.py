"""Masked pretraining (`config.task='masked_pretraining'`, models/videomae.py) through the
same trainer: its train step, eval step and metrics.

The dataset, checkpoints, resume, parallel wrappers and logging are the classification
run's; labels are read but ignored. The train step minimises `videomae.reconstruction_loss`
(MSE on the masked tubelets) with masks from the 'masking' rng stream, drawn per step from
`fold_in(base_rng, step)` and each clip's row in the global batch (so a resumed run, pmap
and gradient accumulation draw the same masks). Evaluation
reports the mean reconstruction loss over a split's clips (`reconstruction_loss`, and
`num_examples`), with the same masks at every evaluation (from a fixed rng), so validation
losses of different steps compare. No top-1, so no 'best' checkpoint.
"""
from __future__ import annotations

import functools
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

from vivit_jax.config import is_pretraining
from vivit_jax.data import augment
from vivit_jax.errors import config_error
from vivit_jax.models import videomae
from vivit_jax.train.steps import TrainState

# Classification-only trainer options: refused rather than silently ignored.
_CLASSIFICATION_ONLY = ('mixup_alpha', 'cutmix_alpha', 'label_smoothing')


def check(config) -> None:
  """Raises ConfigError for trainer fields a masked-pretraining run cannot use."""
  if not is_pretraining(config):
    return
  for field in _CLASSIFICATION_ONLY:
    value = config.trainer.get(field, 0.0) or 0.0
    if value:
      raise config_error(f'trainer.{field}', value,
                         "0 with config.task='masked_pretraining' (there are no labels)")
  mode = config.trainer.get('temporal_control', None)
  if mode not in (None, '', 'none'):
    raise config_error('trainer.temporal_control', mode,
                       "'none' with config.task='masked_pretraining'")
  decay = config.optimizer.get('layer_decay', None)
  if decay is not None:   # the decoder's encoderblock_i would share the encoder's ids.
    raise config_error('optimizer.layer_decay', decay,
                       "None with config.task='masked_pretraining' (a fine-tuning option)")


def _loss_fn(params, video, example_ids, rngs, apply_fn):
  drop_rng, mask_rng = rngs
  out = apply_fn({'params': params}, video, train=True, example_ids=example_ids,
                 rngs={'dropout': drop_rng, 'masking': mask_rng})
  return videomae.reconstruction_loss(out)


def train_step(state: TrainState, batch, base_rng, *, apply_fn: Callable, tx,
               lr_fn: Callable, grad_accum_steps: int = 1,
               axis_name: Optional[str] = None):
  """One optimiser update on the reconstruction loss of `batch['video']` ([B, T, H, W, C];
  other keys ignored). Pure: rngs derive from `base_rng` and the step.

  Each clip's mask is keyed by the step and its row in the global batch, so `jax.jit`
  and `jax.pmap` (rows offset by the device index) and gradient accumulation (micro-batch
  i = rows i::A, gradients averaged) all draw the same masks and reach the same update.
  Dropout (off in MAE recipes) gets other draws per device / micro-batch, as in steps.py.
  Returns (new_state, {'loss', 'grad_norm', 'lr'}: float32[]).
  """
  drop_rng, mask_rng = jax.random.split(jax.random.fold_in(base_rng, state.step))
  video, a = batch['video'], grad_accum_steps
  example_ids = jnp.arange(video.shape[0])
  if axis_name is not None:   # this device's rows of the global batch.
    index = jax.lax.axis_index(axis_name)
    example_ids = example_ids + index * video.shape[0]
    drop_rng = jax.random.fold_in(drop_rng, index)
  grad_fn = jax.value_and_grad(functools.partial(_loss_fn, apply_fn=apply_fn))
  if a == 1:
    loss, grads = grad_fn(state.params, video, example_ids, (drop_rng, mask_rng))
  else:
    def split(x):   # [B, ...] -> [A, B/A, ...], micro-batch i = rows i::A.
      return jnp.swapaxes(x.reshape((x.shape[0] // a, a) + x.shape[1:]), 0, 1)

    def body(carry, xs):
      i, v, ids = xs
      out = grad_fn(state.params, v, ids, (jax.random.fold_in(drop_rng, i), mask_rng))
      return jax.tree.map(jnp.add, carry, out), None
    zeros = (jnp.zeros((), jnp.float32), jax.tree.map(jnp.zeros_like, state.params))
    (loss, grads), _ = jax.lax.scan(body, zeros,
                                    (jnp.arange(a), split(video), split(example_ids)))
    loss, grads = jax.tree.map(lambda x: x / a, (loss, grads))
  if axis_name is not None:
    loss, grads = jax.lax.pmean((loss, grads), axis_name)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  metrics = {'loss': loss, 'grad_norm': optax.tree.norm(grads),
             'lr': jnp.asarray(lr_fn(state.step), jnp.float32)}
  return TrainState(step=state.step + 1, params=params, opt_state=opt_state), metrics


def eval_step(params, batch, *, apply_fn: Callable, base_rng):
  """Per-clip reconstruction loss float32[B] (the mean over a clip's V views for
  batch['video'] [B, V, T, H, W, C]). View j of the example at position i of the split
  (batch['index'], dataset.py) gets the mask of (`base_rng`, i * V + j): the same at
  every evaluation, on any topology and parallel wrapper. Without 'index' the row in
  the batch stands in for i (then under pmap every device's rows start at 0)."""
  video = batch['video']
  if video.ndim == 5:
    video = video[:, None]
  b, v = video.shape[:2]
  index = batch.get('index')
  index = jnp.arange(b) if index is None else jnp.maximum(index, 0)   # padding: -1.
  example_ids = (index[:, None] * v + jnp.arange(v)).reshape(-1)
  out = apply_fn({'params': params}, video.reshape((b * v,) + video.shape[2:]),
                 train=False, example_ids=example_ids, rngs={'masking': base_rng})
  return videomae.per_example_loss(out).reshape(b, v).mean(axis=1)


def steps(config, model, tx, lr_fn, root_rng):
  """(train_step, eval_step) of a masked-pretraining run, for `parallel.make_parallel`."""
  train = functools.partial(train_step, apply_fn=model.apply, tx=tx, lr_fn=lr_fn,
                            grad_accum_steps=int(config.trainer.get('grad_accum_steps', 1)
                                                 or 1))
  evaluate = functools.partial(eval_step, apply_fn=model.apply,
                               base_rng=jax.random.fold_in(root_rng, 2))
  return train, evaluate


def eval_metrics(out) -> dict:
  """{'reconstruction_loss', 'num_examples'} from `evaluate.predict_split`'s output, whose
  'probs' are the eval step's per-clip losses [N] (padding rows have mask 0)."""
  mask = np.asarray(out['mask']) > 0
  losses = np.asarray(out['probs'], np.float64)[mask]
  return {'reconstruction_loss': float(losses.mean()) if losses.size else float('nan'),
          'num_examples': int(mask.sum())}


def reconstruct_clips(model, params, video, rng=None) -> dict:
  """Masks, encodes and reconstructs clips video float32[B, T, H, W, C] (normalised as
  the model sees them), masks from `rng` (default key 0) and each clip's row. Returns
  {'reconstruction': float32[B, T, H, W, C] (normalised; the visible tubelets the
  input's, the masked ones the predictions, see videomae.reconstruct), 'mask': bool[B, N],
  'pixel_mask': bool[B, T, H, W] (True on masked tubelets' pixels), 'loss': float32[B]
  (per_example_loss)}."""
  video = jnp.asarray(video, jnp.float32)
  out = model.apply({'params': params}, video, train=False,
                    rngs={'masking': rng if rng is not None else jax.random.key(0)})
  tubelet = (model.temporal_patch_size, *model.patch_size)
  _, recon = videomae.reconstruct(video, out, tubelet, model.norm_pix_loss)
  grid = tuple(s // t for s, t in zip(video.shape[1:4], tubelet))
  per_pixel = jnp.repeat(out['mask'][..., None], int(np.prod(tubelet)), axis=-1)
  pixel_mask = videomae.tubelet_video(per_pixel, grid, tubelet, channels=1)[..., 0]
  return {'reconstruction': recon, 'mask': out['mask'], 'pixel_mask': pixel_mask,
          'loss': videomae.per_example_loss(out)}


def reconstruction_frames(video, recon, pixel_mask, mean_rgb, std_rgb) -> list:
  """[input, masked input, reconstruction], each uint8[T, H, W, C] in pixels, of one clip
  (video, recon float32[T, H, W, C] normalised; pixel_mask bool[T, H, W]): the masked
  input is the input with the masked tubelets black."""
  frames = augment.denormalize(video, mean_rgb, std_rgb)
  masked = np.where(np.asarray(pixel_mask)[..., None], np.uint8(0), frames)
  return [frames, masked, augment.denormalize(recon, mean_rgb, std_rgb)]


def reconstruction_strip(frames) -> np.ndarray:
  """uint8[R*H, T*W, C]: the R clips uint8[T, H, W, C] of `frames` as rows, frames left
  to right."""
  return np.concatenate(list(np.concatenate(frames, axis=1)), axis=1)


def reconstruction_strips(video, r, mean_rgb, std_rgb) -> np.ndarray:
  """uint8[B, 3*H, T*W, C]: per clip of `video` [B, T, H, W, C] and its
  `reconstruct_clips` output `r`, rows input / masked input / reconstruction."""
  return np.stack([reconstruction_strip(reconstruction_frames(c, x, m, mean_rgb, std_rgb))
                   for c, x, m in zip(np.asarray(video), np.asarray(r['reconstruction']),
                                      np.asarray(r['pixel_mask']))])


def reconstruction_image(model, params, video, mean_rgb, std_rgb, rng=None) -> np.ndarray:
  """uint8[1, 3*H, T*W, C]: `reconstruction_strips` of the first clip of `video`
  [B, T, H, W, C] (the TensorBoard picture of a pretraining run's test split)."""
  return reconstruction_strips(video[:1], reconstruct_clips(model, params, video[:1], rng),
                               mean_rgb, std_rgb)


class ReconstructionSummaries:
  """TensorBoard pictures of a pretraining run (`trainer.summary_clips`): for the first
  `num_clips` validation clips (their middle view), rows input / masked input /
  reconstruction, upscaled (nearest) to at least 64 pixels per frame. The masks are the
  same at every evaluation (key 0), so the pictures of different steps compare.

  `__call__(params, dataset) -> uint8[N, 3*H', T*W', 3]`; params: host or fully
  addressable arrays (one process)."""
  name = 'reconstruction'

  def __init__(self, config, model, num_clips: int):
    self.num_clips = int(num_clips)
    self.mean_rgb, self.std_rgb = config.dataset.mean_rgb, config.dataset.std_rgb
    self._reconstruct = jax.jit(functools.partial(reconstruct_clips, model))

  def __call__(self, params, dataset) -> np.ndarray:
    batches = iter(dataset.eval_batches('validation', self.num_clips))
    video = next(batches)['video']
    getattr(batches, 'close', lambda: None)()   # stop its readers now.
    clips = video[:, video.shape[1] // 2] if video.ndim == 6 else video
    strips = reconstruction_strips(clips, jax.device_get(self._reconstruct(params, clips)),
                                   self.mean_rgb, self.std_rgb)
    scale = max(1, -(-64 // clips.shape[2]))
    return np.repeat(np.repeat(strips, scale, 1), scale, 2)
