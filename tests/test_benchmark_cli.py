"""experiments/benchmark.py runs every model family end to end (tiny configs, no HF):
one inference and one training row per config, with the block count of each family."""
import json
import os
import pathlib
import subprocess
import sys

from vivit_jax.models import cpu_attention

ROOT = pathlib.Path(__file__).parent.parent


def run_benchmark(*args, devices=1):
  env = dict(os.environ, XLA_FLAGS=f'--xla_force_host_platform_device_count={devices}')
  return subprocess.run(
      [sys.executable, str(ROOT / 'experiments' / 'benchmark.py'), '--runs=1', '--warmup=0',
       '--nohf', *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def test_every_family_gives_inference_and_train_rows(tmp_path):
  out = tmp_path / 'rows.json'
  configs = {'vivit_model1': 1, 'mvit': 2, 'video_swin': 4}   # tiny: blocks per family.
  result = run_benchmark(*[f'--config=configs/synthetic/{name}.py:tiny' for name in configs],
                         '--batch_size=2', f'--json={out}')
  assert result.returncode == 0, result.stderr[-3000:]
  rows = json.loads(out.read_text())['rows']
  assert [(r['config'], r['mode']) for r in rows] == [
      (f'{name}:tiny', mode) for name in configs for mode in ('inference', 'train')]
  for r in rows:
    assert r['num_layers'] == configs[r['config'].split(':')[0]]
    assert r['batch'] == 2 and r['clips_per_s'] > 0 and r['median_s'] > 0
  for name in configs:
    inference, train = (r for r in rows if r['config'] == f'{name}:tiny')
    # A training step is forward + backward + update: about 3x the forward's FLOPs.
    assert 2.0 < train['gflops'] / inference['gflops'] < 4.5, (name, train, inference)
  assert result.stdout.count('| train |') == len(configs)


def test_num_layers_is_refused_for_models_without_it():
  result = run_benchmark('--config=configs/synthetic/mvit.py:tiny', '--num_layers=1')
  assert result.returncode != 0
  assert '--num_layers=1 does not apply' in result.stderr and "'mvit'" in result.stderr


def test_training_batch_must_divide_over_the_devices():
  result = run_benchmark('--config=configs/synthetic/vivit_model1.py:tiny',
                         '--batch_size=2', devices=8)
  assert result.returncode != 0
  assert 'training batch 2' in result.stderr and 'multiple of the 8 devices' in result.stderr
  assert 'compiling' not in result.stderr   # refused before any compute.


def test_profile_dir_splits_a_traced_step_by_kind_of_op(tmp_path):
  out = tmp_path / 'rows.json'
  result = run_benchmark('--config=configs/synthetic/vivit_model1.py:tiny', '--batch_size=2',
                         '--noinference', f'--profile_dir={tmp_path / "traces"}',
                         f'--json={out}')
  assert result.returncode == 0, result.stderr[-3000:]
  profile = json.loads(out.read_text())['rows'][0]['profile']
  assert pathlib.Path(profile['trace']).is_file()
  assert profile['kinds']['matmul'] > 0 and profile['total_ms'] > 0
  assert abs(sum(profile['kinds'].values()) - profile['total_ms']) < 1e-6
  assert 'device op time' in result.stdout and '| op | kind |' in result.stdout
  # The C++ kernels' calls are named by their targets (benchmark passes the program).
  names = [row[0] for row in profile['ops']]
  assert 'ffi_call' not in names
  if cpu_attention.unavailable_reason() is None:
    assert 'ffi_call vivit_jax_flash_attention_f32' in names
