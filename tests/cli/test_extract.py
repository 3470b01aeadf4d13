"""`python -m vivit_jax.extract`: view-averaged pre-logits (and tokens) of generated
video files from a CSV index, a corrupt and a missing file recorded as failed, and an
interrupted-then-resumed run ending with the same .npz as an uninterrupted one."""
import os
import subprocess
import sys

import numpy as np
import pytest

from tests import train_helpers, video_helpers
from vivit_jax import inference

CLI = [sys.executable, '-m', 'vivit_jax.extract']
GOOD = 4


@pytest.fixture(scope='module')
def run(tmp_path_factory):
  root = tmp_path_factory.mktemp('extract')
  config = train_helpers.synthetic_config(1)
  d = config.dataset
  d.num_classes, d.num_test_clips, d.num_test_crops, d.min_resize = 3, 2, 3, 8
  model, params = train_helpers.noise_workdir(root / 'run', config,
                                              label_names=video_helpers.CLASSES)
  videos = root / 'videos'
  videos.mkdir()
  rows = []
  for i in range(GOOD):
    name = f'v{i}.mp4'
    video_helpers.video_files.write_video(
        str(videos / name), video_helpers.make_video(label=i % 3, width=32 + 8 * i,
                                                     step=10 + i))
    rows.append(f'videos/{name},{video_helpers.CLASSES[i % 3]}')
  video_helpers.write_bad_files(str(videos))
  rows.insert(2, 'videos/corrupt.mp4,dog')
  rows.append('videos/missing.mp4,cat')
  rows.append('videos/v0.mp4,7')   # an integer label; a repeated video.
  index = root / 'index.csv'
  index.write_text('path,label\n' + '\n'.join(rows) + '\n')
  return {'root': root, 'workdir': str(root / 'run'), 'index': str(index),
          'config': config, 'model': model, 'params': params}


def _cli(run, out, *args):
  r = subprocess.run(CLI + [f'--workdir={run["workdir"]}', f'--index={run["index"]}',
                            f'--out={out}', *args],
                     capture_output=True, text=True, timeout=600)
  assert r.returncode == 0, r.stderr[-3000:]
  return r


def _load(path):
  with np.load(path) as f:
    return {k: f[k] for k in f}


@pytest.fixture(scope='module')
def full(run):
  out = os.path.join(run['root'], 'full.npz')
  r = _cli(run, out, '--tokens')
  return _load(out), r.stderr


def test_features_are_view_averaged_pre_logits(run, full):
  result, stderr = full
  root = str(run['root'])
  good = [os.path.join(root, 'videos', f'v{i}.mp4') for i in range(GOOD)]
  assert result['paths'].tolist() == good[:2] + good[2:] + [good[0]]
  assert result['labels'].tolist() == ['cat', 'dog', 'eel', 'cat', '7']
  assert result['label_ids'].tolist() == [0, 1, 2, 0, -1]
  assert result['failed'].tolist() == [os.path.join(root, 'videos', 'corrupt.mp4'),
                                       os.path.join(root, 'videos', 'missing.mp4')]
  assert all(p in r for p, r in zip(result['failed'], result['failed_reasons']))
  errors = [l for l in stderr.splitlines() if l.startswith('ERROR ')]
  assert len(errors) == 2
  assert int(result['num_views']) == 6 and str(result['checkpoint']).endswith('checkpoints/5')
  feats, tokens = result['features'], result['tokens']
  assert feats.shape == (5, 16) and feats.dtype == np.float32
  assert tokens.shape == (5, 1 + 2 * 2 * 2, 16)   # CLS + 2x2x2 tubelets, width 16.
  head = run['params']['output_projection']
  for i, path in enumerate(good):
    views = inference.test_views(path, run['config'])
    logits = run['model'].apply({'params': run['params']}, views, train=False)
    # The head is linear: mean over views of the logits = head(mean pre-logits).
    np.testing.assert_allclose(feats[i] @ head['kernel'] + head['bias'],
                               np.asarray(logits).mean(0), rtol=1e-4, atol=1e-4)
  np.testing.assert_array_equal(feats[4], feats[0])
  # A CLS-token model: the features are the final CLS token.
  np.testing.assert_allclose(tokens[:, 0], feats, rtol=1e-5, atol=1e-5)
  assert not np.allclose(feats[1], feats[2])


def test_interrupted_run_resumes_to_the_same_file(run, full):
  out = os.path.join(run['root'], 'resumed.npz')
  partial = os.path.join(run['root'], 'resumed.partial.npz')
  r = _cli(run, out, '--tokens', '--max_videos=3', '--save_every=1')
  assert not os.path.exists(out) and os.path.exists(partial)
  assert 'rerun the same command' in r.stderr
  with np.load(partial) as f:   # v0, v1 and the corrupt file are done.
    assert len(f['paths']) == 2 and len(f['failed']) == 1
  r = _cli(run, out, '--tokens')
  progress = [l for l in r.stderr.splitlines() if l.startswith('[')]
  assert len(progress) == 3 and progress[0].startswith('[4/6]')   # only the rest.
  assert not os.path.exists(partial)
  resumed, expected = _load(out), full[0]
  assert sorted(resumed) == sorted(expected)
  for key in expected:
    np.testing.assert_array_equal(resumed[key], expected[key], err_msg=key)


def test_a_partial_file_of_another_extraction_is_refused(run):
  out = os.path.join(run['root'], 'other.npz')
  _cli(run, out, '--max_videos=1')
  r = subprocess.run(CLI + [f'--workdir={run["workdir"]}', f'--index={run["index"]}',
                            f'--out={out}', '--tokens'], capture_output=True, text=True,
                     timeout=600)
  assert r.returncode == 2
  assert 'error:' in r.stderr and 'delete it to start over' in r.stderr


def test_a_crash_keeps_the_videos_done(tmp_path):
  """Ctrl-C (or any exception) during a video: the partial file holds the ones before."""
  from vivit_jax import extract

  def fake(path):
    if path == 'c':
      raise KeyboardInterrupt
    if path == 'b':
      raise extract.DecodeError('b: corrupt')
    return np.full(2, ord(path), np.float32), None

  progress = extract.Progress('fp')
  partial = str(tmp_path / 'x.partial.npz')
  with pytest.raises(KeyboardInterrupt):
    extract.extract_videos(fake, progress, ['a', 'b', 'c', 'd'], ['a', 'b', 'c', 'd'],
                           partial, save_every=100, first=0, total=4)
  resumed = extract.Progress.load(partial, 'fp')
  assert list(resumed.done) == ['a'] and resumed.failed == {'b': 'b: corrupt'}
  np.testing.assert_array_equal(resumed.done['a'][0], [97, 97])


@pytest.mark.parametrize('flag,message', [
    ('--index=/nonexistent/index.csv', "Video index '/nonexistent/index.csv' does not exist"),
    ('--workdir=/nonexistent/run', "--workdir='/nonexistent/run' is not a directory")])
def test_bad_arguments_are_one_line(run, tmp_path, flag, message):
  args = [f'--workdir={run["workdir"]}', f'--index={run["index"]}',
          f'--out={tmp_path / "o.npz"}']
  args = [a for a in args if not a.startswith(flag.split('=')[0] + '=')] + [flag]
  r = subprocess.run(CLI + args, capture_output=True, text=True, timeout=600)
  assert r.returncode == 2
  lines = [l for l in r.stderr.splitlines() if l.startswith('error:')]
  assert len(lines) == 1 and message in lines[0], r.stderr[-2000:]
