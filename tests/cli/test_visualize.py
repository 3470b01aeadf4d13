"""`python -m vivit_jax.visualize` and attention rollout on the synthetic task: a briefly
trained model's rollout puts more mass per pixel on the moving (target) shape than on
the background, a fresh one clearly less; the CLI writes the PNG grid, the GIF (one frame
per video frame) and the NPZ; factorised models get their temporal plot."""
import os
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
from PIL import Image

from train_helpers import REPO, final_params, synthetic_config
from vivit_jax import inference, models
from vivit_jax.data import augment, pipeline, synthetic, video_files
from vivit_jax.models import attention_maps as am
from vivit_jax import visualize

FRAMES, CROP = 8, 32
# Largest top-1 drop allowed when testing at another clip size. Measured (2026-12-05, 256
# test clips): 0.688 at 8x32, 0.652 at 16 and 12 frames, 0.598 at 24 px, 0.688 at 40 px.
EVAL_SIZE_DROP = 0.15


# Model 1 on 8 x 32 x 32 clips, tubelets 4 x 4 x 4 (2 x 8 x 8 tokens), width 32; 500 steps.
OVERRIDES = {
    'dataset.num_frames': FRAMES, 'dataset.crop_size': CROP,
    'model.temporal_patch_size': 4, 'model.hidden_size': 32, 'model.num_layers': 2,
    'model.num_heads': 4, 'model.mlp_dim': 64,
    'dataset.num_train_examples': 2048, 'dataset.num_eval_examples': 64,
    'dataset.num_test_clips': 1, 'dataset.num_test_crops': 1,
    'trainer.batch_size': 16, 'trainer.eval_batch_size': 64,
    'trainer.num_train_steps': 500, 'trainer.log_every': 500,
    'trainer.checkpoint_every': 500, 'trainer.eval_every': 500,
    'trainer.cpu_devices': 1, 'trainer.test_at_end': False,
    'schedule.warmup_steps': 20,
}


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
  """(config, workdir) of `OVERRIDES` trained by the CLI (about 15-50 s on 2 busy CPU
  cores). One CPU device in a subprocess: 500 steps over the tests' 8 forced devices
  risk XLA:CPU's 40 s collective timeout on a loaded machine."""
  workdir = str(tmp_path_factory.mktemp('visualize') / 'run')
  env = dict(os.environ, PYTHONPATH=REPO, XLA_FLAGS=' '.join(
      f for f in os.environ.get('XLA_FLAGS', '').split()
      if 'xla_force_host_platform_device_count' not in f))
  cmd = [sys.executable, '-m', 'vivit_jax.main',
         f'--config={REPO}/configs/synthetic/vivit_model1.py', f'--workdir={workdir}',
         *(f'--config.{k}={v}' for k, v in OVERRIDES.items())]
  start = time.time()
  result = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
  assert result.returncode == 0, result.stderr[-3000:]
  print(f'trained 500 steps in {time.time() - start:.1f} s (process included)')
  return inference.load_config(None, workdir, None), workdir


def shape_to_background(config, params, n=32):
  """Mean over clips of (rollout mass per target-shape pixel) / (per background pixel)."""
  model = models.create_model(config.model, 10)
  videos, _ = synthetic.generate(n, num_frames=FRAMES, size=CROP, seed=123)
  masks = synthetic.target_masks(n, num_frames=FRAMES, size=CROP, seed=123)
  o = pipeline.clip_options(config)
  clips = augment.normalize(videos, o.mean_rgb, o.std_rgb)
  _, maps = am.attention_maps(model, params, clips)
  r = am.rollout(config.model, maps, clips.shape)
  heat = am.to_pixels(r.tokens, r.footprint, FRAMES, CROP, CROP)
  return np.mean([heat[i][masks[i]].mean() / heat[i][~masks[i]].mean()
                  for i in range(n) if masks[i].any()])


def test_target_masks_cover_the_target_shape():
  videos, _ = synthetic.generate(8, num_frames=4, size=32, seed=5, offset=60)
  masks = synthetic.target_masks(8, num_frames=4, size=32, seed=5, offset=60)
  assert masks.shape == (8, 4, 32, 32) and 0.005 < masks.mean() < 0.3
  for v, m in zip(videos, masks):   # the shape's colour is not the background's.
    if m.any():
      gap = np.abs(v[m].mean(0).astype(float) - v[~m].mean(0)).max()
      assert gap > 15


def test_rollout_of_a_trained_model_finds_the_moving_shape(trained):
  config, workdir = trained
  _, params = final_params(workdir)
  model = models.create_model(config.model, 10)
  fresh = model.init(jax.random.key(0), np.zeros((1, FRAMES, CROP, CROP, 3)))['params']
  trained_ratio = shape_to_background(config, params)
  fresh_ratio = shape_to_background(config, fresh)
  print(f'shape/background mass per pixel: trained {trained_ratio:.2f}, '
        f'fresh {fresh_ratio:.2f}')
  assert trained_ratio > 1.6
  assert fresh_ratio < 1.35 and trained_ratio > fresh_ratio + 0.5


def write_videos(root, n=2):
  videos, _ = synthetic.generate(n, num_frames=12, size=40, seed=7)
  paths = []
  for i, v in enumerate(videos):
    paths.append(str(root / f'clip{i}.mp4'))
    video_files.write_video(paths[-1], v)
  return paths


def test_cli_writes_png_gif_and_npz(trained, tmp_path):
  _, workdir = trained
  videos = write_videos(tmp_path)
  out = tmp_path / 'maps'
  cmd = [sys.executable, '-m', 'vivit_jax.visualize', f'--workdir={workdir}',
         f'--out={out}', *videos, str(tmp_path / 'missing.mp4')]
  result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
  assert result.returncode == 1, result.stderr[-3000:]
  assert 'ERROR' in result.stderr and 'missing.mp4' in result.stderr
  for name in ('clip0', 'clip1'):
    png, gif = out / f'{name}_attention.png', out / f'{name}_attention.gif'
    assert png.stat().st_size > 1000 and gif.stat().st_size > 1000
    with Image.open(png) as image:
      assert image.size[0] > 100 and image.size[1] > 100
    with Image.open(gif) as image:
      assert image.n_frames == FRAMES
    arrays = np.load(out / f'{name}_attention.npz')
    assert arrays['heat'].shape == (FRAMES, CROP, CROP)
    np.testing.assert_allclose(arrays['heat'].sum(), 1.0, atol=1e-6)
    assert not (out / f'{name}_temporal.png').exists()   # Model 1: no factorisation.
  assert 'clip0.mp4: ' in result.stdout and '_attention.gif' in result.stdout


@pytest.mark.parametrize('model', [2, 4])
def test_factorised_models_get_a_temporal_plot(tmp_path, model):
  config = synthetic_config(model, 'tiny')
  config.dataset.num_test_clips = 2   # two views; the middle one is explained.
  net = models.create_model(config.model, 10)
  d = config.dataset
  params = net.init(jax.random.key(0), np.zeros((1, d.num_frames, d.crop_size,
                                                 d.crop_size, 3)))['params']
  predictor = inference.Predictor(config, net, params)
  (video,) = write_videos(tmp_path, 1)
  files = visualize.visualize_file(video, str(tmp_path), config, net, params,
                                   synthetic.LABEL_NAMES, predictor)
  names = sorted(os.path.basename(f) for f in files)
  assert names == ['clip0_attention.gif', 'clip0_attention.npz', 'clip0_attention.png',
                   'clip0_temporal.png']
  arrays = np.load(tmp_path / 'clip0_attention.npz')
  np.testing.assert_allclose(arrays['temporal'].sum(), 1.0, atol=1e-6)
  np.testing.assert_allclose(arrays['spatial'].sum((1, 2)), 1.0, atol=1e-6)


def test_load_model_at_another_clip_size(trained, tmp_path):
  config, workdir = trained
  _, params, _ = inference.load_model(config, workdir, None)
  _, same, _ = inference.load_model(config, workdir, None, FRAMES, CROP)
  jax.tree.map(np.testing.assert_array_equal, same, params)
  model, small, _ = inference.load_model(config, workdir, None, 4, 24)
  small_config = inference.clip_config(config, 4, 24)
  (video,) = write_videos(tmp_path, 1)
  predictor = inference.Predictor(small_config, model, small)
  probs = predictor(video)
  np.testing.assert_allclose(probs.sum(), 1.0, atol=1e-5)
  files = visualize.visualize_file(video, str(tmp_path), small_config, model, small,
                                   synthetic.LABEL_NAMES, predictor)
  with Image.open(files[1]) as gif:
    assert gif.n_frames == 4
  assert np.load(files[-1])['heat'].shape == (4, 24, 24)


# The eval-size test's run: OVERRIDES trained 4x longer, tested on 256 clips (about 25 s).
SIZE_RUN = dict(OVERRIDES, **{'trainer.num_train_steps': 2000,
                              'trainer.checkpoint_every': 2000,
                              'trainer.eval_every': 2000, 'trainer.log_every': 2000,
                              'dataset.num_eval_examples': 256})


def _main(workdir, *extra):
  """Runs `python -m vivit_jax.main` on one CPU device with SIZE_RUN and `extra`."""
  env = dict(os.environ, PYTHONPATH=REPO, XLA_FLAGS=' '.join(
      f for f in os.environ.get('XLA_FLAGS', '').split()
      if 'xla_force_host_platform_device_count' not in f))
  cmd = [sys.executable, '-m', 'vivit_jax.main',
         f'--config={REPO}/configs/synthetic/vivit_model1.py', f'--workdir={workdir}',
         *(f'--config.{k}={v}' for k, v in SIZE_RUN.items()), *extra]
  result = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
  assert result.returncode == 0, result.stderr[-3000:]


def _eval(workdir, *extra):
  """eval_results.json of `--mode=eval` of the run in `workdir` with `extra` flags."""
  import json
  _main(workdir, '--mode=eval', *extra)
  with open(os.path.join(workdir, 'eval_results.json')) as f:
    return json.load(f)


def test_eval_at_another_clip_size(tmp_path):
  """--mode=eval on twice the frames (temporal position embeddings 2 -> 4) and on 24-px
  crops (8 x 8 -> 6 x 6 spatial embeddings; the synthetic videos are drawn at crop +
  1/8, so the crop sees the same field, smaller) runs and stays
  within EVAL_SIZE_DROP of the accuracy at the trained size; the trained size itself
  reads the checkpoint unchanged."""
  workdir = str(tmp_path / 'run')
  _main(workdir)
  own = _eval(workdir)
  assert (own['num_frames'], own['crop_size']) == (FRAMES, CROP)
  longer = _eval(workdir, f'--num_frames={2 * FRAMES}')
  smaller = _eval(workdir, '--crop_size=24')   # the synthetic scene rendered at 27 px.
  assert (longer['num_frames'], smaller['crop_size']) == (2 * FRAMES, 24)
  print(f"top-1 at 8x32: {own['top1']:.3f}, 16x32: {longer['top1']:.3f}, "
        f"8x24: {smaller['top1']:.3f}")
  assert own['top1'] > 0.5
  for other in (longer, smaller):
    assert other['top1'] >= own['top1'] - EVAL_SIZE_DROP
