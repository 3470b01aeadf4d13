"""`python -m vivit_jax.predict`: real video files (written with PyAV), the config's
multi-view test protocol, top-5 with label names, --json, and per-file errors."""
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vivit_jax import config as vc
from vivit_jax import inference, models
from vivit_jax.data.labels import LabelSpec
from vivit_jax.convert.common import config_to_json
from vivit_jax.data import video_files
from vivit_jax.train import checkpoint as ckpt_lib
from vivit_jax.train import steps

K = 6
NAMES = [f'action_{i}' for i in range(K)]


def tiny_config():
  c = vc.default_config()
  m = c.model
  m.hidden_size, m.num_layers, m.num_heads, m.mlp_dim = 16, 1, 2, 32
  m.patch_size, m.temporal_patch_size = (4, 4), 2
  d = c.dataset
  d.num_frames, d.crop_size, d.num_classes, d.stride = 4, 8, K, 2
  d.num_test_clips, d.num_test_crops, d.min_resize = 2, 3, 8
  vc.validate_config(c)
  return c


@pytest.fixture(scope='module')
def run(tmp_path_factory):
  """A workdir (config.json, label_names.json, one checkpoint) and three videos."""
  root = tmp_path_factory.mktemp('predict')
  config = tiny_config()
  model = models.create_model(config.model, K)
  abstract = jax.eval_shape(model.init, jax.random.key(0),
                            jnp.zeros((1, 4, 8, 8, 3)))['params']
  rng = np.random.default_rng(0)
  params = jax.tree.map(lambda s: rng.standard_normal(s.shape).astype(np.float32), abstract)
  workdir = root / 'run'
  workdir.mkdir()
  (workdir / 'config.json').write_text(config_to_json(config))
  (workdir / 'label_names.json').write_text(json.dumps(NAMES))
  ckpts = ckpt_lib.Checkpoints(str(workdir), async_save=False)
  ckpts.save(steps.TrainState(step=np.int32(5), params=params, opt_state={'count': np.zeros((), np.int32)}))
  ckpts.close()
  videos = []
  for i, (h, w) in enumerate([(16, 24), (20, 12)]):   # landscape and portrait.
    frames = rng.integers(0, 256, (12, h, w, 3), dtype=np.uint8)
    path = str(root / f'clip{i}.mp4')
    video_files.write_video(path, frames)
    videos.append(path)
  corrupt = root / 'corrupt.mp4'
  corrupt.write_bytes(b'\x00\x01 this is not a video' * 10)
  return {'config': config, 'model': model, 'params': params, 'workdir': str(workdir),
          'videos': videos, 'corrupt': str(corrupt), 'missing': str(root / 'nope.mp4')}


def test_views_follow_the_test_protocol(run):
  views = inference.test_views(run['videos'][0], run['config'])
  assert views.shape == (2 * 3, 4, 8, 8, 3) and views.dtype == np.float32
  # Three different crops of one clip, and the two clips differ.
  assert not np.allclose(views[0], views[1]) and not np.allclose(views[1], views[2])
  assert not np.allclose(views[1], views[4])
  assert -1.0 - 1e-6 <= views.min() and views.max() <= 1.0 + 1e-6   # mean/std 0.5.


def test_cli_json_and_errors(run):
  cmd = [sys.executable, '-m', 'vivit_jax.predict', f'--workdir={run["workdir"]}', '--json',
         run['videos'][0], run['missing'], run['corrupt'], run['videos'][1]]
  out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
  assert out.returncode == 1, out.stderr[-3000:]
  errors = [l for l in out.stderr.splitlines() if l.startswith('ERROR ')]
  assert len(errors) == 2
  assert run['missing'] in errors[0] and run['corrupt'] in errors[1]
  report = json.loads(out.stdout)
  assert report['num_views'] == 6
  results = report['results']
  assert [r['path'] for r in results] == [run['videos'][0], run['missing'], run['corrupt'],
                                          run['videos'][1]]
  assert 'error' in results[1] and 'error' in results[2]
  model, params = run['model'], run['params']
  for r, path in ((results[0], run['videos'][0]), (results[3], run['videos'][1])):
    logits = model.apply({'params': params}, inference.test_views(path, run['config']))
    probs = np.asarray(jax.nn.softmax(logits, -1).mean(0))
    top = np.argsort(-probs)[:5]
    assert [t['index'] for t in r['top']] == top.tolist()
    assert [t['label'] for t in r['top']] == [NAMES[i] for i in top]
    np.testing.assert_allclose([t['prob'] for t in r['top']], probs[top], atol=1e-5)


def test_cli_text_with_checkpoint_and_config(run, tmp_path):
  config_py = tmp_path / 'cfg.py'
  config_py.write_text(
      'from vivit_jax.convert.common import config_from_json\n'
      f'def get_config(arg=None):\n  return config_from_json(open({os.path.join(run["workdir"], "config.json")!r}).read())\n')
  step_dir, _ = ckpt_lib.resolve_checkpoint(run['workdir'])
  cmd = [sys.executable, '-m', 'vivit_jax.predict', f'--checkpoint={step_dir}',
         f'--config={config_py}', run['videos'][1]]
  out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-3000:]
  lines = out.stdout.strip().splitlines()
  assert lines[0] == run['videos'][1] and len(lines) == 6
  probs = [float(l.split()[0]) for l in lines[1:]]
  assert probs == sorted(probs, reverse=True)
  # No label names next to this checkpoint: generic names.
  assert all(l.split()[1].startswith('class_') for l in lines[1:])


def test_label_groups_print_each_groups_top_and_the_top_actions():
  spec = LabelSpec((('verb', 2), ('noun', 3)))
  names = ['verb:open', 'verb:close', 'noun:cup', 'noun:pan', 'noun:tap']
  out = inference.describe(np.array([0.3, 0.7, 0.1, 0.6, 0.3]), names, spec, 3)
  assert [r['label'] for r in out['groups']['verb']] == ['close', 'open']
  assert [r['label'] for r in out['groups']['noun']] == ['pan', 'tap', 'cup']
  # Actions by the product of the two probabilities: 0.42, 0.21, 0.18.
  assert [(a['labels']['verb'], a['labels']['noun']) for a in out['actions']] == [
      ('close', 'pan'), ('close', 'tap'), ('open', 'pan')]
  np.testing.assert_allclose([a['prob'] for a in out['actions']], [0.42, 0.21, 0.18])
  assert out['actions'][0]['indices'] == {'verb': 1, 'noun': 1}
  plain = inference.describe(np.array([0.1, 0.9]), ['a', 'b'], LabelSpec((('label', 2),)), 1)
  assert plain == {'top': [{'index': 1, 'label': 'b', 'prob': 0.9}]}
