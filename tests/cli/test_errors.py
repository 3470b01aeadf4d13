"""Every CLI ends a user error (bad config field, missing data split, unconvertible or
missing checkpoint) with one line `error: ...` and exit status 2, before any compute;
`--traceback` shows the traceback too."""
import os
import subprocess
import sys

import numpy as np

from video_helpers import CLASSES, make_video
from vivit_jax.data import video_files

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG = os.path.join(REPO, 'configs', 'synthetic', 'vivit_model1.py')


def run(module, *args, timeout=240):
  result = subprocess.run([sys.executable, '-m', module, *args], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)
  return result.returncode, result.stdout, result.stderr


def error_line(stderr):
  """The stderr lines that are not absl/TensorFlow log lines: exactly one, `error: ...`."""
  lines = [l for l in stderr.splitlines() if l.startswith('error:') or 'Traceback' in l]
  assert len(lines) == 1, stderr[-3000:]
  return lines[0]


def test_main_refuses_a_bad_field_in_one_line(tmp_path):
  code, _, err = run('vivit_jax.main', f'--config={CONFIG}:tiny',
                     f'--workdir={tmp_path / "run"}', '--config.model.num_heads=3')
  assert code == 2
  assert error_line(err) == ('error: config.model.num_heads=3 is invalid: expected a '
                             'divisor of model.hidden_size=16.')
  assert not (tmp_path / 'run').exists()   # nothing was written: no compute started.
  code, _, err = run('vivit_jax.main', f'--config={CONFIG}:tiny',
                     f'--workdir={tmp_path / "run"}', '--config.model.num_heads=3',
                     '--traceback')
  assert code != 0 and 'Traceback' in err and 'ConfigError' in err


def test_main_refuses_a_split_the_run_needs_before_training(tmp_path):
  """A train/ + test/ folder of videos with validation every 10 steps: refused at the
  start, naming the missing split (it used to train, then fail at the first eval)."""
  data = tmp_path / 'videos'
  for split in ('train', 'test'):
    for label, name in enumerate(CLASSES):
      (data / split / name).mkdir(parents=True)
      video_files.write_video(str(data / split / name / '0.mp4'), make_video(label=label))
  args = [f'--config={CONFIG}:tiny', f'--workdir={tmp_path / "run"}',
          '--config.dataset.name=video_files', f'--config.dataset.data_dir={data}',
          '--config.dataset.num_classes=3', '--config.dataset.crop_size=8']
  code, _, err = run('vivit_jax.main', *args)
  assert code == 2
  line = error_line(err)
  assert line.startswith('error: ') and "'validation'" in line and str(data) in line
  assert not (tmp_path / 'run' / 'checkpoints').exists()


def test_convert_and_predict_end_with_one_line(tmp_path):
  bad = tmp_path / 'vit.npz'
  np.savez(bad, unrelated=np.zeros(3))
  code, _, err = run('vivit_jax.convert', '--from=vit_npz', str(bad),
                     f'--out={tmp_path / "out"}')
  assert code == 2 and error_line(err).startswith('error: ')
  code, _, err = run('vivit_jax.predict', f'--workdir={tmp_path / "missing"}',
                     str(tmp_path / 'x.mp4'))
  assert code == 2 and error_line(err).startswith(
      f"error: --workdir='{tmp_path / 'missing'}' is not a directory")


def test_eval_of_a_workdir_without_checkpoints_is_one_line(tmp_path):
  code, _, err = run('vivit_jax.main', f'--config={CONFIG}:tiny',
                     f'--workdir={tmp_path}', '--mode=eval')
  assert code == 2
  assert error_line(err).startswith('error: No checkpoint directory')


def test_validation_does_not_start_jax():
  """The CLIs validate before `jax.distributed.initialize()` and before the CPU device
  count is set, so validation must not start JAX's backend."""
  code = ('from jax._src import xla_bridge\n'
          'from vivit_jax import config, train\n'
          f'c = config.load_config({CONFIG!r}, "tiny")\n'
          'train.validate(c)\n'
          'train.validate(c, for_training=False)\n'
          'print("backends started:", bool(xla_bridge._backends))\n')
  result = subprocess.run([sys.executable, '-c', code], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
  assert result.returncode == 0, result.stderr[-2000:]
  assert 'backends started: False' in result.stdout
