"""`python -m vivit_jax.export`: the real CLI writes a StableHLO module and a SavedModel
of a tiny checkpoint; reloaded (jax.export.deserialize, tf.saved_model.load) they give
the Flax logits on two batch sizes (symbolic batch), the SavedModel from uint8 frames."""
import json
import os
import re
import subprocess
import sys

import jax
import numpy as np
import pytest

from tests import train_helpers
from vivit_jax.data import augment

K = 5
NAMES = [f'move_{i}' for i in range(K)]
CLI = [sys.executable, '-m', 'vivit_jax.export']


@pytest.fixture(scope='module')
def run(tmp_path_factory):
  root = tmp_path_factory.mktemp('export')
  config = train_helpers.synthetic_config(1)
  config.experiment_name = 'tiny_export'
  config.dataset.num_classes = K
  config.dataset.mean_rgb, config.dataset.std_rgb = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)
  config.model.attention_impl = 'auto'   # the export must trace portable ops anyway.
  model, params = train_helpers.noise_workdir(root / 'run', config, label_names=NAMES)
  frames = np.random.default_rng(3).integers(0, 256, (3, 4, 8, 8, 3), dtype=np.uint8)
  video = augment.normalize(frames, config.dataset.mean_rgb, config.dataset.std_rgb)
  expected = np.asarray(model.apply({'params': params}, video, train=False))
  return {'root': root, 'params': params, 'workdir': str(root / 'run'), 'frames': frames, 'video': video,
          'expected': expected, 'config': config}


def _cli(*args):
  return subprocess.run(CLI + list(args), capture_output=True, text=True, timeout=600)


def test_stablehlo(run):
  out = os.path.join(run['root'], 'model.shlo')
  r = _cli(f'--workdir={run["workdir"]}', '--format=stablehlo', f'--out={out}')
  assert r.returncode == 0, r.stderr[-3000:]
  with open(out, 'rb') as f:
    exported = jax.export.deserialize(bytearray(f.read()))
  assert str(exported.in_avals[0].shape[0]) == 'B'
  assert set(exported.platforms) == {'cpu', 'cuda'}
  # Portable: no C++ CPU kernel or cuDNN call, only the symbolic-shape checks.
  assert set(re.findall(r'custom_call @(\w+)', exported.mlir_module())) <= {'shape_assertion'}
  for n in (1, 3):
    logits = np.asarray(exported.call(run['video'][:n]))
    np.testing.assert_allclose(logits, run['expected'][:n], atol=1e-5, rtol=0)
  assert np.abs(run['expected']).max() > 0.1   # the head is not zero.
  info = json.load(open(out + '.json'))
  assert info['input']['shape'] == ['B', 4, 8, 8, 3] and info['input']['dtype'] == 'float32'
  assert info['label_names'] == NAMES and info['num_classes'] == K
  assert info['config_name'] == 'tiny_export'
  assert info['normalisation']['mean_rgb'] == [0.4, 0.5, 0.6]


def test_saved_model_takes_uint8_frames(run):
  import tensorflow as tf
  out = os.path.join(run['root'], 'saved_model')
  r = _cli(f'--workdir={run["workdir"]}', '--checkpoint=latest', '--format=saved_model',
           f'--out={out}', '--platforms=cpu')
  assert r.returncode == 0, r.stderr[-3000:]
  loaded = tf.saved_model.load(out)
  # The weights are variables (the variables/ folder), not graph constants.
  assert (sum(int(np.prod(v.shape)) for v in tf.nest.flatten(loaded.params)) ==
          sum(p.size for p in jax.tree.leaves(run['params'])))
  serve = loaded.signatures['serving_default']
  for n in (1, 3):
    result = serve(frames=tf.constant(run['frames'][:n]))
    np.testing.assert_allclose(result['logits'].numpy(), run['expected'][:n], atol=1e-5,
                               rtol=0)
    np.testing.assert_allclose(result['probabilities'].numpy(),
                               jax.nn.softmax(run['expected'][:n]), atol=1e-6, rtol=0)
  info = json.load(open(os.path.join(out, 'vivit_jax.json')))
  assert info['input']['dtype'] == 'uint8' and info['label_names'] == NAMES


@pytest.mark.parametrize('args,message', [
    (['--format=onnx', '--out=x'], "--format='onnx' is invalid"),
    (['--format=stablehlo', '--out=x', '--workdir=/nonexistent/run'],
     "--workdir='/nonexistent/run' is not a directory"),
])
def test_bad_arguments_are_one_line(args, message, run):
  r = _cli(*args)
  assert r.returncode == 2
  lines = [l for l in r.stderr.splitlines() if l.startswith('error:')]
  assert len(lines) == 1 and message in lines[0], r.stderr[-2000:]
