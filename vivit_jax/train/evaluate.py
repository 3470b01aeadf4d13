"""Multi-view evaluation: metrics from view-aggregated probabilities, and `--mode=eval`.

The protocol: the V = num_test_clips x num_test_crops views of each video become one
prediction (`steps.eval_step`; `trainer.view_aggregation`: the mean of the views'
softmaxes, or the softmax of their mean logits), then the metrics of the label kind
(train/metrics.py: top-1/top-5, per-class accuracy and confusion matrices; per group and
action accuracy for label groups; mean average precision for multi-label) over the
unpadded examples. `AttentionSummaries` draws a few validation clips with their labels
and attention rollout for TensorBoard (config.trainer.summary_clips).
"""
from __future__ import annotations

import json
import os
from typing import Optional

import jax
import numpy as np
from absl import logging
from PIL import Image, ImageDraw

from vivit_jax.convert import resize
from vivit_jax.data import augment, pipeline
from vivit_jax.data.labels import LabelSpec
from vivit_jax.models import attention_maps as am
from vivit_jax.train import checkpoint as ckpt_lib
from vivit_jax.train import metrics, objectives, parallel, pretraining, steps
from vivit_jax.train import setup as setup_lib


def predict_split(par: parallel.Parallel, state, dataset, split: str, batch_size: int):
  """One pass over `split` in process-local batches of `batch_size`. Returns numpy
  {'probs': [N, K], 'label': [N], 'mask': [N]} of all processes' examples (padding
  included, with mask 0)."""
  chunks = [par.predict(state, b) for b in dataset.eval_batches(split, batch_size)]
  if not chunks:
    raise ValueError(f'split {split!r} yielded no batches.')
  return {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}


def run_eval(par, state, dataset, split: str, batch_size: int, num_classes: int,
             confusion: bool = False, label_spec: Optional[LabelSpec] = None,
             task: str = 'classification') -> dict:
  """Metrics (metrics.evaluation_metrics) of one multi-view pass over `split`; for
  task 'masked_pretraining' the mean reconstruction loss (pretraining.eval_metrics)."""
  out = predict_split(par, state, dataset, split, batch_size)
  if task == 'masked_pretraining':
    return pretraining.eval_metrics(out)
  spec = label_spec or objectives.plain(num_classes)
  return metrics.evaluation_metrics(out['probs'], out['label'], out['mask'], spec,
                                    confusion=confusion)


def confusion_image(cm, cell: int = 8) -> np.ndarray:
  """uint8[1, K*cell, K*cell, 3] heat map of a row-normalised confusion matrix."""
  cm = np.asarray(cm, np.float64)
  norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
  img = np.kron(norm, np.ones((cell, cell)))
  img = (255 * (1.0 - img)).astype(np.uint8)     # white = 0, black = all of the row.
  return np.repeat(img[None, :, :, None], 3, axis=-1)


class AttentionSummaries:
  """TensorBoard pictures of the first `num_clips` validation clips (their middle view):
  one image per clip, a text band (true and predicted label, the prediction's
  probability), the frames, and under them the attention rollout
  (models/attention_maps.py) over each frame. The weights come from one extra forward
  pass of those clips on the explicit attention path (jitted once per run).

  `__call__(params, dataset) -> uint8[N, H, W, 3]`; params: host or fully addressable
  arrays (one process). Masked pretraining has pretraining.ReconstructionSummaries.
  """
  name = 'attention'

  def __init__(self, config, model, num_clips: int, label_names=None):
    self.config, self.num_clips = config, int(num_clips)
    self.names = list(label_names or [])
    self._maps = jax.jit(lambda p, v: am.attention_maps(model, p, v))

  def __call__(self, params, dataset) -> np.ndarray:
    batches = iter(dataset.eval_batches('validation', self.num_clips))
    batch = next(batches)
    getattr(batches, 'close', lambda: None)()   # stop its readers now.
    video = batch['video']
    clips = video[:, video.shape[1] // 2]   # [N, T, S, S, 3]: the middle view.
    logits, maps = jax.device_get(self._maps(params, clips))
    r = am.rollout(self.config.model, maps, clips.shape)
    heat = am.to_pixels(r.tokens, r.footprint, *clips.shape[1:4])
    o = pipeline.clip_options(self.config)
    frames = augment.denormalize(clips, o.mean_rgb, o.std_rgb)
    logits = np.asarray(logits, np.float64)
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    return np.stack([self._image(f, am.heat_overlay(f, h), int(label), p)
                     for f, h, label, p in zip(frames, heat, batch['label'], probs)])

  def _name(self, k: int) -> str:
    return self.names[k] if k < len(self.names) else f'class_{k}'

  def _image(self, frames, overlay, label: int, probs) -> np.ndarray:
    t, s = frames.shape[:2]
    scale = max(1, -(-64 // s))
    rows = np.concatenate([np.concatenate(list(frames), axis=1),
                           np.concatenate(list(overlay), axis=1)], axis=0)
    rows = np.repeat(np.repeat(rows, scale, axis=0), scale, axis=1)
    k = int(np.argmax(probs))
    canvas = Image.new('RGB', (rows.shape[1], rows.shape[0] + 14), 'white')
    canvas.paste(Image.fromarray(rows), (0, 14))
    ImageDraw.Draw(canvas).text(
        (2, 1), f'true: {self._name(label)}  predicted: {self._name(k)} ({probs[k]:.2f})',
        fill='black')
    return np.asarray(canvas)


def evaluate(config, workdir: str, checkpoint: Optional[str] = None,
             num_frames: Optional[int] = None, crop_size: Optional[int] = None) -> dict:
  """Evaluates a checkpoint on the 'test' split with multi-view testing.

  checkpoint: None/'latest' (newest in `workdir`), 'best', or a path (step directory,
  checkpoints/ directory or workdir). num_frames / crop_size: test on clips of another
  size than the config's (None: its own); the checkpoint's position embeddings and
  relative-position tables are resized (convert/resize.py). Writes
  `workdir/eval_results.json` (top1, top5, num_examples, num_views, step, num_frames,
  crop_size, per_class_accuracy, confusion_matrix, ...) and TensorBoard scalars plus a
  confusion-matrix image (masked pretraining: the reconstruction loss, and an input /
  masked / reconstruction image of a test clip). Returns the results dict.
  """
  from clu import metric_writers   # imports TensorFlow.

  trained = config
  config = resize.clip_config(config, num_frames, crop_size)
  setup = setup_lib.setup(config, workdir, for_training=False)
  step_dir, step = ckpt_lib.resolve_checkpoint(workdir, checkpoint)
  logging.info('Evaluating %s (step %d) on the test split.', step_dir, step)
  if config.dataset.num_frames == trained.dataset.num_frames and (
      config.dataset.crop_size == trained.dataset.crop_size):
    params = ckpt_lib.load_params(step_dir,
                                  setup.par.with_sharding(setup.abstract_state.params))
  else:   # restored at the trained size, then resized on the host.
    logging.info('Testing at %d frames x %d px (trained at %d x %d).',
                 config.dataset.num_frames, config.dataset.crop_size,
                 trained.dataset.num_frames, trained.dataset.crop_size)
    own = setup_lib.model_and_steps(trained).abstract_state.params
    params = resize.resize_params(trained, jax.device_get(ckpt_lib.load_params(
        step_dir, own)), config)
  state = setup.par.put_state(steps.TrainState(step=np.int32(step), params=params,
                                               opt_state=()))
  d = config.dataset
  num_views = int(d.get('num_test_clips', 1)) * int(d.get('num_test_crops', 1))
  eval_bs = (config.trainer.get('eval_batch_size', config.trainer.batch_size)
             // jax.process_count())     # process-local.
  results = run_eval(setup.par, state, setup.dataset, 'test', eval_bs,
                     setup.num_classes, confusion=True, label_spec=setup.label_spec,
                     task=setup.task)
  results.update(step=int(step), num_views=num_views, split='test', checkpoint=step_dir,
                 num_frames=int(d.num_frames), crop_size=int(d.crop_size),
                 label_names=list(getattr(setup.dataset, 'label_names', None) or []))
  summary = (f"top1={results['top1']:.4f} top5={results['top5']:.4f}" if 'top1' in results
             else f"reconstruction_loss={results['reconstruction_loss']:.4f}")
  logging.info('Test: %s over %d examples x %d views (step %d).', summary,
               results['num_examples'], num_views, step)
  if jax.process_index() == 0:
    with open(os.path.join(workdir, 'eval_results.json'), 'w') as f:
      json.dump(results, f, indent=2)
  writer = metric_writers.create_default_writer(workdir, just_logging=jax.process_index() > 0)
  writer.write_scalars(step, {f'test_{k}': v for k, v in metrics.scalars(results).items()
                              if k not in ('step', 'num_views', 'num_frames', 'crop_size')})
  writer.write_images(step, {f'test_{k}': confusion_image(v) for k, v in results.items()
                             if k.endswith('confusion_matrix')})
  if setup.task == 'masked_pretraining':   # input / masked / reconstruction of a test clip.
    video = next(iter(setup.dataset.eval_batches('test', eval_bs)))['video']
    video = video[:, 0] if video.ndim == 6 else video     # the first view.
    writer.write_images(step, {'test_reconstruction': pretraining.reconstruction_image(
        setup.model, jax.device_get(params), video, d.mean_rgb, d.std_rgb)})
  writer.flush()
  writer.close()
  return results
