"""One config benchmarked: inference and/or a training step of ours, each interleaved with
the PyTorch counterpart where there is one, as table rows."""
from __future__ import annotations

import dataclasses
import os
import sys
from typing import Optional

import jax

from experiments.benchmark import ours as ours_lib
from experiments.benchmark import profiling, programs, pytorch, report, timing
from vivit_jax.ops import attention


@dataclasses.dataclass(frozen=True)
class Options:
  """How to measure (the command line's flags of the same names).

  train_batch_size: None = `batch_size`; 0 = the largest power of two <= max_train_batch
  whose compiled step fits the device memory (accelerators; on CPU `batch_size`).
  peak_tflops: the device's peak for MFU; None = `programs.PEAK_TFLOPS`.
  profile_dir: also trace one call of ours per mode into DIR/<config>_<mode>.
  """
  batch_size: int = 1
  train_batch_size: Optional[int] = None
  max_train_batch: int = 512
  runs: int = 5
  warmup: int = 1
  inference: bool = True
  train: bool = True
  pytorch: bool = True
  peak_tflops: Optional[float] = None
  profile_dir: Optional[str] = None


def modes(ours: ours_lib.Ours, options: Options) -> list[tuple[str, int]]:
  """[(mode, batch)] to measure: ('inference', batch_size), ('train', training batch)."""
  dev = jax.local_devices()[0]
  out = [('inference', options.batch_size)] if options.inference else []
  if options.train:
    tb = options.train_batch_size
    if tb is None or (tb == 0 and dev.platform == 'cpu'):
      tb = options.batch_size
    elif tb == 0:
      limit = (dev.memory_stats() or {}).get('bytes_limit')
      tb = (ours_lib.largest_train_batch(ours, limit, options.max_train_batch)
            or options.batch_size)
    out.append(('train', tb))
  return out


def benchmark(config, name: str, options: Options) -> list[dict]:
  """Rows (dicts; `report.markdown_row` prints them) of `config`, called `name`, one per
  mode, each printed as it finishes: our timing, model FLOPs, MFU, memory and attention
  kernel calls, and the counterpart's timing and the ratios where it has one."""
  m, d = config.model, config.dataset
  dev = jax.local_devices()[0]
  dtype = m.get('dtype', 'float32')
  peak = options.peak_tflops or programs.peak_tflops(dev.device_kind, dtype)
  base = {'config': name, 'input': f'{d.num_frames}x{d.crop_size}x{d.crop_size}',
          'num_layers': ours_lib.num_blocks(m), 'dtype': dtype,
          'attention_impl': attention.resolve_attention_impl(
              m.get('attention_impl', 'auto')),
          'remat': bool(m.get('remat', False)),
          'remat_policy': m.get('remat_policy', None) if m.get('remat', False) else None,
          'device': dev.device_kind, 'platform': dev.platform}
  ours = ours_lib.Ours(config)
  counterpart = None
  if options.pytorch and pytorch.torch_available():
    counterpart = pytorch.pytorch_model(config, ours.num_params)
  theirs = pytorch.Theirs(config, *counterpart) if counterpart else None
  rows = []
  for mode, batch in modes(ours, options):
    print(f'# {name} {mode} batch {batch}: compiling...', file=sys.stderr, flush=True)
    if mode == 'inference':
      run, compiled = ours.make_inference(batch)
      flops = ours.inference_flops(batch)
    else:
      run, compiled = ours.make_train(batch)
      flops = ours.train_flops(batch)
    fns = {'ours': run}
    if theirs is not None:
      fns['theirs'] = (theirs.make_inference(batch) if mode == 'inference'
                       else theirs.make_train(batch))
    timings = timing.interleaved(fns, options.runs, options.warmup)
    t = timings['ours']
    row = dict(base, mode=mode, batch=batch, **t.as_dict(),
               clips_per_s=batch / t.median, latency_per_clip_s=t.median / batch,
               gflops=flops / 1e9, achieved_tflops=flops / t.median / 1e12,
               mfu=(flops / t.median / 1e12 / peak) if peak else None,
               peak_tflops=peak, compiled_bytes=programs.memory_bytes(compiled),
               peak_bytes_in_use=programs.peak_bytes_in_use(),
               **programs.attention_kernel_calls(compiled))
    if theirs is not None:
      th = timings['theirs']
      row.update(pytorch_model=theirs.name, pytorch_attention=theirs.attn,
                 pytorch=th.as_dict(), pytorch_clips_per_s=batch / th.median,
                 ratio=th.median / t.median, cpu_ratio=th.cpu_median / t.cpu_median)
    print(report.markdown_row(row), flush=True)
    if options.profile_dir:
      row['profile'] = profiling.profile(
          run, compiled, os.path.join(options.profile_dir, f'{name}_{mode}'))
    rows.append(row)
  return rows
