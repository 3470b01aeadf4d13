"""`python -m experiments.benchmark` runs every model family end to end (tiny configs, no
PyTorch): one inference and one training row per config, with the block count of each
family; and, where torchvision imports, next to torchvision's MViT and Swin3D. Its parts
import and work on their own (no flags)."""
import json
import os
import pathlib
import subprocess
import sys

import pytest

from experiments.benchmark import programs, report, timing
from vivit_jax.ops.cpu import flash_attention as cpu_flash_attention

ROOT = pathlib.Path(__file__).parents[2]


def run_benchmark(*args, devices=1, pytorch=False):
  env = dict(os.environ, XLA_FLAGS=f'--xla_force_host_platform_device_count={devices}')
  return subprocess.run(
      [sys.executable, '-m', 'experiments.benchmark', '--runs=1', '--warmup=0',
       '--pytorch' if pytorch else '--nohf', *args], cwd=ROOT, env=env, capture_output=True,
      text=True, timeout=600)


def require_torchvision():
  try:
    import torchvision  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
  except Exception as e:   # pylint: disable=broad-except
    # Not installed, or built for another torch (the CPU torch of the test extra has no
    # matching torchvision wheel: RuntimeError 'operator torchvision::nms does not exist').
    pytest.skip(f'torchvision does not import here: {e!r:.200}')


def test_peak_table_takes_the_longest_matching_device_kind():
  assert programs.peak_tflops('NVIDIA H100 PCIe', 'bfloat16') == 756.0
  assert programs.peak_tflops('NVIDIA H100 80GB HBM3', 'float32') == 494.7
  assert programs.peak_tflops('TPU v5 lite', 'bfloat16') == 197.0
  assert programs.peak_tflops('cpu', 'float32') is None


def test_interleaved_times_every_candidate_after_its_warmup():
  calls = []
  timings = timing.interleaved({'a': lambda: calls.append('a'),
                                'b': lambda: calls.append('b')}, runs=3, warmup=1)
  assert calls == ['a', 'b'] + ['a', 'b'] * 3   # warm-up first, then round-robin.
  assert set(timings) == {'a', 'b'}
  assert timings['a'].as_dict()['runs'] == 3 and timings['b'].median >= 0


def test_markdown_row_fills_every_column_of_the_header():
  row = {'config': 'm:tiny', 'mode': 'train', 'input': '4x32x32', 'num_layers': 1,
         'dtype': 'float32', 'attention_impl': 'chunked', 'remat': False, 'batch': 2,
         'median_s': 0.5, 'min_s': 0.4, 'max_s': 0.6, 'cpu_median_s': 0.9, 'runs': 3,
         'clips_per_s': 4.0, 'latency_per_clip_s': 0.25, 'gflops': 1.5,
         'achieved_tflops': 0.003, 'mfu': None, 'compiled_bytes': 2**30,
         'cpu_flash_attention_calls': 2, 'cudnn_attention_calls': 0, 'platform': 'cpu'}
  columns = report.HEADER.splitlines()[0].count('|')
  line = report.markdown_row(row)
  assert line.count('|') == columns
  assert '| cpu_flash (2 calls) |' in line and '| 1.00 | - | - |' in line
  theirs = dict(row, pytorch_model='Vivit', pytorch_attention='sdpa',
                pytorch={'median_s': 1.0}, ratio=2.0, cpu_ratio=1.5)
  line = report.markdown_row(theirs)
  assert line.count('|') == columns and line.endswith('| 2.00x (CPU 1.50x) |')


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
  # ... and the time splits by model scope, the encoder blocks summed over layers.
  modules = dict(profile['modules'])
  assert any(m.startswith('Transformer/encoderblock_*/') and m.endswith('(backward)')
             for m in modules), modules
  assert '| module | ms | share |' in result.stdout
  if cpu_flash_attention.unavailable_reason() is None:
    assert 'ffi_call vivit_jax_flash_attention_f32' in names


def test_torchvision_counterparts_time_the_same_mvit_and_swin(tmp_path):
  """Tiny MViT v1/v2 and Video Swin configs run next to torchvision's models, which take
  our block schedule and have our parameter counts (the benchmark skips a counterpart
  whose count differs, and the rows would then have no 'pytorch' entry)."""
  require_torchvision()
  out = tmp_path / 'rows.json'
  names = ('mvit', 'mvitv2', 'video_swin')
  result = run_benchmark(*[f'--config=configs/synthetic/{n}.py:tiny' for n in names],
                         '--batch_size=2', f'--json={out}', pytorch=True)
  assert result.returncode == 0, result.stderr[-3000:]
  assert 'no PyTorch comparison' not in result.stderr
  rows = json.loads(out.read_text())['rows']
  assert len(rows) == 2 * len(names)
  for r in rows:
    expected = 'SwinTransformer3d' if r['config'].startswith('video_swin') else 'MViT'
    assert r['pytorch_model'] == f'torchvision {expected}', r
    assert r['pytorch']['median_s'] > 0 and r['ratio'] > 0


PAPER_COUNTERPARTS = """
import sys
import jax
from experiments.benchmark import pytorch
from vivit_jax import config as vc
from vivit_jax import models
for name in sys.argv[1:]:
  config = vc.load_config(f'configs/kinetics400/{name}.py', None)
  model = models.create_model(config.model, config.dataset.num_classes)
  d = config.dataset
  shape = (1, d.num_frames, d.crop_size, d.crop_size, 3)
  params = jax.eval_shape(lambda: model.init(jax.random.key(0), jax.numpy.zeros(shape)))
  ours = sum(x.size for x in jax.tree.leaves(params['params']))
  built = pytorch.pytorch_model(config, ours)
  print(name, ours, type(built[0]).__name__ if built else None)
"""


def test_torchvision_counterparts_of_the_paper_configs_match_ours():
  """MViT-B (16x4, 32x3), MViTv2-S and Video Swin-T/S/B: torchvision's models at the
  papers' sizes have exactly our parameter counts (36.6M, 34.5M, 28M, ... by the papers)."""
  require_torchvision()
  names = ['mvit_b_16x4', 'mvit_b_32x3', 'mvitv2_s_16x4', 'swin_t', 'swin_s', 'swin_b']
  result = subprocess.run([sys.executable, '-c', PAPER_COUNTERPARTS, *names], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  lines = [line.split() for line in result.stdout.splitlines()]
  assert [line[0] for line in lines] == names
  counts = {name: int(count) for name, count, _ in lines}
  assert all(kind != 'None' for _, _, kind in lines), result.stdout + result.stderr[-2000:]
  # The papers' (rounded) counts: MViT-B 36.6M, MViTv2-S 34.5M, Swin-T 28M, -S 50M, -B 88M.
  for name, millions in [('mvit_b_16x4', 36.6), ('mvitv2_s_16x4', 34.5), ('swin_t', 28),
                         ('swin_s', 50), ('swin_b', 88)]:
    assert abs(counts[name] / 1e6 - millions) < 0.6, (name, counts[name])
