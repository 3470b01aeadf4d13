"""What a benchmark run prints and writes: the markdown tables (one row per config and
mode, or per attention kernel), the run's environment line, and the JSON file."""
from __future__ import annotations

import json
import os
import pathlib
import platform
import time

import jax

from experiments.benchmark import pytorch

HEADER = ('| config | mode | input | layers | dtype | attn | batch | median s (min-max) | '
          'CPU s | clips/s | ms/clip | GFLOPs | TFLOP/s | MFU | compiled GB | '
          'PyTorch (attn): median s | ours/PyTorch clips/s |\n' + '|---' * 17 + '|')

KERNELS_HEADER = ('| kernel | tokens x heads x head_dim | median s (min-max) | CPU s | '
                  'GFLOP/s |\n|---|---|---|---|---|')


def _gb(x):
  return '-' if x is None else f'{x / 2**30:.2f}'


def _attention_column(r) -> str:
  """The kernel that ran: the resolved impl, with cuDNN / C++ CPU kernel call counts."""
  if r.get('cpu_flash_attention_calls'):
    return f"cpu_flash ({r['cpu_flash_attention_calls']} calls)"
  if r.get('cudnn_attention_calls'):
    return f"{r['attention_impl']} ({r['cudnn_attention_calls']} cuDNN)"
  return r['attention_impl']


def markdown_row(r) -> str:
  """One row of `HEADER`'s table from a row of `run.benchmark`."""
  theirs = (f"{r['pytorch_model']} ({r['pytorch_attention']}): "
            f"{r['pytorch']['median_s']:.3f}" if 'pytorch' in r else '-')
  ratio = '-' if 'ratio' not in r else f"{r['ratio']:.2f}x" + (
      f" (CPU {r['cpu_ratio']:.2f}x)" if r['platform'] == 'cpu' else '')   # GPU: async.
  mfu = f"{100 * r['mfu']:.1f}%" if r['mfu'] is not None else '-'
  mem = r['compiled_bytes']
  return (f"| {r['config']} | {r['mode']} | {r['input']} | {r['num_layers']} | "
          f"{r['dtype']}{' remat' if r['remat'] else ''} | {_attention_column(r)} | "
          f"{r['batch']} | {r['median_s']:.3f} ({r['min_s']:.3f}-{r['max_s']:.3f}) | "
          f"{r['cpu_median_s']:.3f} | "
          f"{r['clips_per_s']:.2f} | {1e3 * r['latency_per_clip_s']:.0f} | "
          f"{r['gflops']:.4g} | {r['achieved_tflops']:.3g} | {mfu} | {_gb(mem)} | {theirs} | "
          f"{ratio} |")


def kernels_row(r) -> str:
  """One row of `KERNELS_HEADER`'s table from a row of `kernels.attention_kernels`."""
  return (f"| {r['kernel']} | {r['tokens']} x {r['heads']} x {r['head_dim']} | "
          f"{r['median_s']:.3f} ({r['min_s']:.3f}-{r['max_s']:.3f}) | "
          f"{r['cpu_median_s']:.3f} | {1e3 * r['achieved_tflops']:.0f} |")


def environment() -> dict:
  """Date, versions, device, CPU and the environment variables that change timings."""
  env = {'date': time.strftime('%Y-%m-%d %H:%M %Z'), 'jax': jax.__version__,
         'device': jax.local_devices()[0].device_kind, 'device_count': jax.device_count(),
         'cpu_count': os.cpu_count(), 'python': platform.python_version(),
         'machine': platform.processor() or platform.machine(),
         'xla_flags': os.environ.get('XLA_FLAGS', ''),
         'omp_wait_policy': os.environ.get('OMP_WAIT_POLICY', '')}
  env.update(pytorch.versions())
  return env


def environment_line(env: dict) -> str:
  return ' '.join(f'{k}={v}' for k, v in env.items())


def write_json(path: str, env: dict, rows: list[dict]):
  """{'environment': env, 'rows': rows} to `path`."""
  pathlib.Path(path).write_text(json.dumps({'environment': env, 'rows': rows}, indent=2))
