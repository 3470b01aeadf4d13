"""What a lowered or compiled XLA program tells about a call: model FLOPs, memory, which
attention kernels it runs; and the device peaks that turn FLOP/s into MFU."""
from __future__ import annotations

from typing import Optional

import jax

from vivit_jax.ops.cpu import flash_attention as cpu_flash_attention

# Dense peak TFLOP/s per chip by compute dtype: bf16 tensor cores / MXU, and float32
# as XLA runs it by default (TF32 tensor cores on NVIDIA, bf16 passes on TPU).
# Longest matching substring of `device_kind` wins (e.g. 'H100 PCIe' before 'H100').
PEAK_TFLOPS = {
    'H100 PCIe': {'bfloat16': 756.0, 'float32': 378.0},
    'H100': {'bfloat16': 989.4, 'float32': 494.7},     # SXM; 'NVIDIA H100 80GB HBM3'.
    'H200': {'bfloat16': 989.4, 'float32': 494.7},
    'A100': {'bfloat16': 312.0, 'float32': 156.0},
    'TPU v4': {'bfloat16': 275.0, 'float32': 275.0},
    'TPU v5 lite': {'bfloat16': 197.0, 'float32': 197.0},   # v5e.
    'TPU v5e': {'bfloat16': 197.0, 'float32': 197.0},
    'TPU v5p': {'bfloat16': 459.0, 'float32': 459.0},
    'TPU v5': {'bfloat16': 459.0, 'float32': 459.0},
    'TPU v6 lite': {'bfloat16': 918.0, 'float32': 918.0},   # Trillium (v6e).
}


def peak_tflops(device_kind: str, dtype: str) -> Optional[float]:
  """Table peak of `device_kind` for `dtype` (None when unknown, e.g. CPUs)."""
  matches = [k for k in PEAK_TFLOPS if k.lower() in device_kind.lower()]
  return PEAK_TFLOPS[max(matches, key=len)][dtype] if matches else None


def flops(compiled_or_lowered) -> float:
  """XLA `cost_analysis()['flops']` of a program (0 where the backend gives none)."""
  cost = compiled_or_lowered.cost_analysis()
  if isinstance(cost, (list, tuple)):
    cost = cost[0]
  return float(cost.get('flops', 0.0)) if cost else 0.0


def on_cpu(tree):
  """Abstract copies of `tree`'s arrays placed on the host CPU: programs lowered for it
  have an XLA cost analysis before compilation, which the GPU backend does not give
  (`cost_analysis()` of a GPU lowering is empty, so FLOPs read 0 there)."""
  cpu = jax.sharding.SingleDeviceSharding(jax.devices('cpu')[0])
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=cpu), tree)


def memory_bytes(compiled) -> Optional[int]:
  """Bytes the compiled program needs: arguments + outputs + temporaries - aliased."""
  try:
    m = compiled.memory_analysis()
  except Exception:   # pylint: disable=broad-except
    return None
  if m is None:
    return None
  return int(m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes
             - m.alias_size_in_bytes)


def peak_bytes_in_use() -> Optional[int]:
  """The first local device's `memory_stats()['peak_bytes_in_use']` (None on CPU)."""
  stats = jax.local_devices()[0].memory_stats()
  return int(stats['peak_bytes_in_use']) if stats and 'peak_bytes_in_use' in stats else None


def hlo_text(compiled) -> str:
  """The compiled program's HLO text ('' where the backend gives none)."""
  try:
    return compiled.as_text()
  except Exception:   # pylint: disable=broad-except
    return ''


def attention_kernel_calls(compiled) -> dict:
  """Attention custom calls (forward and backward) in the compiled program, read from one
  dump of its text: `cudnn_attention_calls` (0 on GPU means XLA's materialised softmax)
  and `cpu_flash_attention_calls` (the C++ CPU kernels of vivit_jax/ops/cpu/
  flash_attention.py; 0 on CPU means the XLA kernels ran)."""
  text = hlo_text(compiled)
  return {'cudnn_attention_calls': text.count('__cudnn$fmha'),
          'cpu_flash_attention_calls': sum(
              text.count(f'custom_call_target="{t}"')
              for t in (cpu_flash_attention.TARGET, cpu_flash_attention.BACKWARD_TARGET))}
