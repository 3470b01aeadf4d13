r"""Look inside a video model: attention rollout heatmaps of video files (masked
pretraining runs: their reconstructions).

  python -m vivit_jax.visualize --workdir=/tmp/run video1.mp4 video2.webm --out=/tmp/maps
  python -m vivit_jax.visualize --checkpoint=/tmp/vivit_k400 video.mp4 --out=/tmp/maps

Each file is cut into the config's test views as `predict` does (inference.test_views);
the class probabilities aggregate all views (as evaluation and predict do), the maps
explain one view (`--view`, default the middle one: the centre crop of the middle clip
for 3 x 3 views). The model runs once more with its attention weights recorded
(models/attention_maps.py) and attention rollout (Abnar & Zuidema 2020: heads averaged,
identity added, rows renormalised, multiplied through the layers) carries the
prediction's readout (the CLS token; the mean over tokens for pooled, CLS-less models)
back to the input tokens, spread over each token's pixels (mass per pixel). What each
family's rollout means (factorised models, MViT's pooling, Video Swin's windows) is in
models/attention_maps.py. Written to --out for video `NAME.ext`:

  NAME_attention.png   rows = the view's frames; columns: the frame, the rollout heatmap
                       over it, and for factorised models (ViViT 2-4, divided
                       TimeSformer, VTN) the spatial-only rollout; title: predicted class.
  NAME_attention.gif   the frames and their heatmaps side by side, animated (one GIF
                       frame per video frame).
  NAME_temporal.png    factorised models only: the temporal rollout's mass per frame.
  NAME_attention.npz   heat float[T, H, W] (mass per pixel, sums to 1), tokens, spatial,
                       temporal (where defined), probs, predicted.

A masked-pretraining workdir (`config.task='masked_pretraining'`, models/videomae.py) has
no classifier; for it the view is masked (`--mask_seed`, default 0: the same mask for
every video), encoded and reconstructed instead:

  NAME_reconstruction.png  rows: the input frames, the masked input (masked tubelets
                           black), the reconstruction (visible tubelets the input's);
                           title: the reconstruction loss over the masked tubelets.
  NAME_reconstruction.npz  input, masked, reconstruction float[T, H, W, 3] in [0, 1],
                           mask bool[N] (token order of the model), loss.

One `path: label (prob) -> files` line per video on stdout (pretraining: `path:
reconstruction loss L (M of N tubelets masked) -> files`); a file that cannot be read
prints `ERROR <path>: <why>` on stderr and the exit status is 1 (the others still run).
"""
from __future__ import annotations

import os
import sys
import textwrap

import jax
import numpy as np
from absl import app, flags
from PIL import Image, ImageDraw

from vivit_jax import cli
from vivit_jax import config as vc
from vivit_jax.data import augment, pipeline
from vivit_jax.errors import DecodeError
from vivit_jax.inference import (Predictor, define_checkpoint_flags, headline, label_names,
                                 load_from_flags, report_failure, test_views)
from vivit_jax.models import attention_maps as am
from vivit_jax.train import pretraining
from vivit_jax.train import setup as setup_lib


def _define_flags():
  """The CLI flags, defined only when run as a program (see predict.py)."""
  define_checkpoint_flags(clip_size=True)
  flags.DEFINE_string('out', None, 'Directory for the PNG/GIF/NPZ files (created).')
  flags.DEFINE_integer('view', None, 'Test view to explain (default: the middle one).')
  flags.DEFINE_integer('gif_ms', 250, 'Milliseconds per GIF frame.')
  flags.DEFINE_integer('mask_seed', 0, 'Masked-pretraining workdirs: seed of the mask.')


def explain(config, model, params, views: np.ndarray, view: int,
            predictor: Predictor) -> dict:
  """Probabilities of all views and the rollout of one: {'probs' float[K], 'frames'
  uint8[T, S, S, 3] (the view de-normalised), 'heat' float[T, S, S], 'spatial_heat'
  float[T, S, S] or None, 'rollout' models.attention_maps.Rollout}."""
  probs = predictor.from_views(views)
  clip = views[view:view + 1]
  _, maps = jax.jit(lambda p, v: am.attention_maps(model, p, v))(params, clip)
  maps = jax.device_get(maps)
  r = am.rollout(config.model, maps, clip.shape)
  shape = clip.shape[1:4]
  heat = am.to_pixels(r.tokens, r.footprint, *shape)[0]
  spatial = None
  if r.spatial is not None:
    spatial = am.to_pixels(r.spatial / r.spatial.shape[1], r.footprint, *shape)[0]
  o = pipeline.clip_options(config)
  frames = augment.denormalize(clip[0], o.mean_rgb, o.std_rgb)
  return {'probs': probs, 'frames': frames, 'heat': heat, 'spatial_heat': spatial,
          'rollout': r}


def write_grid(path: str, frames, overlays, titles, title: str) -> None:
  """PNG: one row per frame, one column per image list in `overlays` (uint8[T, H, W, 3]
  each, `frames` first), column titles `titles`, figure title `title`."""
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  columns = [frames, *overlays]
  t = frames.shape[0]
  fig, axes = plt.subplots(t, len(columns), figsize=(2 * len(columns), 2 * t + 0.6),
                           squeeze=False)
  for i in range(t):
    for j, images in enumerate(columns):
      ax = axes[i, j]
      ax.imshow(images[i], interpolation='nearest')
      ax.set_xticks([])
      ax.set_yticks([])
      if i == 0:
        ax.set_title(titles[j], fontsize=9)
      if j == 0:
        ax.set_ylabel(f'frame {i}', fontsize=8)
  # Wrapped to the figure's width (about 24 characters per 2-inch column at 10 pt), with
  # room kept above the column titles for its lines.
  lines = textwrap.wrap(title, 24 * len(columns))
  fig.suptitle('\n'.join(lines), fontsize=10)
  fig.tight_layout(rect=(0, 0, 1, 1 - 0.2 * len(lines) / (2 * t + 0.6)))
  fig.savefig(path, dpi=80)
  plt.close(fig)


def write_temporal(path: str, temporal: np.ndarray, frames_per_index: int,
                   title: str) -> None:
  """PNG: bar plot of the temporal rollout's mass per temporal index, in frames."""
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  fig, ax = plt.subplots(figsize=(6, 2.5))
  starts = np.arange(len(temporal)) * frames_per_index
  ax.bar(starts, temporal, width=0.8 * frames_per_index, align='edge')
  ax.set_xlabel('frame')
  ax.set_ylabel('temporal attention (rollout)')
  ax.set_title(title, fontsize=10)
  fig.tight_layout()
  fig.savefig(path, dpi=80)
  plt.close(fig)


def write_gif(path: str, frames, overlay, title: str, ms: int) -> None:
  """Animated GIF: [frame | heatmap] per video frame, `title` on a band on top; images
  upscaled (nearest) to at least 128 pixels high."""
  t, h, w = frames.shape[:3]
  scale = max(1, -(-128 // h))
  images = []
  for i in range(t):
    pair = np.concatenate([frames[i], overlay[i]], axis=1)
    pair = np.repeat(np.repeat(pair, scale, axis=0), scale, axis=1)
    canvas = Image.new('RGB', (pair.shape[1], pair.shape[0] + 14), 'white')
    canvas.paste(Image.fromarray(pair), (0, 14))
    ImageDraw.Draw(canvas).text((2, 1), f'{title}  [{i + 1}/{t}]', fill='black')
    images.append(canvas)
  images[0].save(path, save_all=True, append_images=images[1:], duration=ms, loop=0)


def visualize_file(path: str, out: str, config, model, params, names, predictor,
                   view=None, gif_ms: int = 250) -> list[str]:
  """Writes the files of one video (module docstring); returns their paths."""
  views = test_views(path, config)
  view = choose_view(views, view)
  e = explain(config, model, params, views, view, predictor)
  k = int(np.argmax(e['probs']))
  prediction = headline(e['probs'], names, setup_lib.label_spec(config))
  title = f'{os.path.basename(path)}: {prediction}'
  stem = os.path.join(out, os.path.splitext(os.path.basename(path))[0])
  overlay = am.heat_overlay(e['frames'], e['heat'])
  overlays, titles = [overlay], ['frame', 'rollout']
  if e['spatial_heat'] is not None:
    overlays.append(am.heat_overlay(e['frames'], e['spatial_heat']))
    titles.append('spatial rollout')
  files = [f'{stem}_attention.png', f'{stem}_attention.gif']
  write_grid(files[0], e['frames'], overlays, titles, title)
  write_gif(files[1], e['frames'], overlay, title, gif_ms)
  r = e['rollout']
  if r.temporal is not None:
    files.append(f'{stem}_temporal.png')
    write_temporal(files[-1], r.temporal[0], r.footprint[0], title)
  files.append(f'{stem}_attention.npz')
  arrays = {'heat': e['heat'], 'tokens': r.tokens[0], 'probs': e['probs'],
            'predicted': k}
  if r.spatial is not None:
    arrays.update(spatial=r.spatial[0], temporal=r.temporal[0])
  np.savez(files[-1], **arrays)
  print(f'{path}: {prediction} -> {", ".join(files)}', flush=True)
  return files


def choose_view(views, view) -> int:
  """The index of --view (default the middle view); ValueError when out of range."""
  view = len(views) // 2 if view is None else view
  if not 0 <= view < len(views):
    raise ValueError(f'--view={view} is invalid: expected 0..{len(views) - 1}.')
  return view


def reconstruct_file(path: str, out: str, config, reconstruct, view=None) -> list[str]:
  """Writes NAME_reconstruction.png/.npz of one video for a masked-pretraining model
  (module docstring); `reconstruct(clips [1, T, H, W, C])` is pretraining.reconstruct_clips
  with the model, params and mask rng bound. Returns the files' paths."""
  views = test_views(path, config)
  clip = views[choose_view(views, view)]
  r = jax.device_get(reconstruct(clip[None]))
  o = pipeline.clip_options(config)
  images = pretraining.reconstruction_frames(clip, r['reconstruction'][0],
                                             r['pixel_mask'][0], o.mean_rgb, o.std_rgb)
  mask, loss = np.asarray(r['mask'][0]), float(r['loss'][0])
  summary = f'reconstruction loss {loss:.4f} ({int(mask.sum())} of {mask.size} tubelets masked)'
  stem = os.path.join(out, os.path.splitext(os.path.basename(path))[0])
  files = [f'{stem}_reconstruction.png', f'{stem}_reconstruction.npz']
  write_strips(files[0], images, ['input', 'masked', 'reconstruction'],
               f'{os.path.basename(path)}: {summary}')
  np.savez(files[1], input=images[0] / 255.0, masked=images[1] / 255.0,
           reconstruction=images[2] / 255.0, mask=mask, loss=loss)
  print(f'{path}: {summary} -> {", ".join(files)}', flush=True)
  return files


def write_strips(path: str, rows, row_titles, title: str) -> None:
  """PNG: one row per uint8[T, H, W, 3] in `rows` (frames left to right, `row_titles` on
  the left, frame numbers on top), figure title `title`."""
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  t = rows[0].shape[0]
  fig, axes = plt.subplots(len(rows), t, figsize=(0.9 * t + 0.6, 0.9 * len(rows) + 0.6),
                           squeeze=False)
  for i, images in enumerate(rows):
    for j in range(t):
      ax = axes[i, j]
      ax.imshow(images[j], interpolation='nearest')
      ax.set_xticks([])
      ax.set_yticks([])
      if i == 0:
        ax.set_title(str(j), fontsize=7)
      if j == 0:
        ax.set_ylabel(row_titles[i], fontsize=7)
  fig.suptitle(title, fontsize=9)
  fig.tight_layout(rect=(0, 0, 1, 1 - 0.3 / (0.9 * len(rows) + 0.6)), pad=0.3)
  fig.savefig(path, dpi=100)
  plt.close(fig)


def main(argv):
  FLAGS = flags.FLAGS
  videos = argv[1:]
  if not videos:
    raise app.UsageError('Pass one or more video files.')
  if not FLAGS.out:
    raise app.UsageError('Pass --out=DIR for the pictures.')
  config, model, params, step_dir = load_from_flags(FLAGS, pretraining=True)
  if vc.is_pretraining(config):
    rng = jax.random.key(FLAGS.mask_seed)
    reconstruct = jax.jit(lambda v: pretraining.reconstruct_clips(model, params, v, rng))
    one = lambda path: reconstruct_file(path, FLAGS.out, config, reconstruct, FLAGS.view)
  else:
    names = label_names(config, config.dataset.num_classes,
                        [FLAGS.workdir, FLAGS.checkpoint, step_dir])
    predictor = Predictor(config, model, params)
    one = lambda path: visualize_file(path, FLAGS.out, config, model, params, names,
                                      predictor, FLAGS.view, FLAGS.gif_ms)
  os.makedirs(FLAGS.out, exist_ok=True)
  failed = 0
  for path in videos:
    try:
      one(path)
    except (DecodeError, OSError, ValueError) as e:
      failed += 1
      report_failure(path, e)
  return 1 if failed else 0


if __name__ == '__main__':
  _define_flags()
  cli.run(lambda argv: sys.exit(main(argv)))
