r"""Throughput, latency, memory and MFU of the model zoo, next to the PyTorch implementations.

  python experiments/benchmark.py --config=configs/kinetics400/vivit_b16x2_spatio_temporal.py
  python experiments/benchmark.py --all --num_layers=2 --runs=3      # every paper config
  python experiments/benchmark.py --config=... --dtype=bfloat16 --remat \
      --train_batch_size=0 --json=/tmp/bench.json                      # GPU: largest batch

For each config (`--config`, repeatable, `path[:arg]`; `--all` = `--configs` glob):
  inference  jitted forward (train=False) at `--batch_size`: median seconds per call over
             `--runs` timed calls after `--warmup` calls, spread (min-max), clips/s and
             latency per clip;
  train      one optimiser update of the real training path (`train/steps.train_step`
             under `train/parallel.py`'s jit wrapper with buffer donation, the config's
             optimizer) at `--train_batch_size` (0 = the largest power of two whose
             compiled program fits the device memory; on CPU `--batch_size`): step time,
             clips/s, memory (compiled `memory_analysis()` bytes and, where the backend
             has them, `memory_stats()['peak_bytes_in_use']`).
FLOPs are model FLOPs: XLA `cost_analysis()['flops']` of the lowered program with
attention traced as its explicit formulation and no remat (`layers.flop_counting()`;
loops and cuDNN calls would otherwise hide FLOPs, recomputation would add some).
Achieved FLOP/s = FLOPs / median time; MFU = that / the device's peak (`PEAK_TFLOPS`
below by device kind and dtype, or `--peak_tflops`).

With torch installed (`--pytorch`, alias `--hf`, on by default), configs with a PyTorch
counterpart run the same shapes through it, random weights built locally, interleaved
run by run with ours so a shared machine slows both alike: Hugging Face transformers'
`VivitForVideoClassification` (ViViT Model 1 with tubelets, sdpa attention) and
`TimesformerForVideoClassification` (eager: transformers has no sdpa path for it), and
torchvision's `MViT` (MViT-B, MViTv2-S; our per-block schedule, any clip length) and
`SwinTransformer3d` (Video Swin-T/S/B), whose attention is eager. A counterpart with
another parameter count than ours is not the same model and is skipped (said on stderr).
`ratio` = our clips/s / theirs (> 1: ours is faster), `cpu_ratio` the same by CPU
seconds per call (this process, all threads), which a shared machine's load hardly
changes. The training step there is forward, cross-entropy, backward, global-norm
clipping and SGD momentum.

`--profile_dir=DIR` also traces one call of ours per config and mode (`jax.profiler`,
perfetto JSON under DIR) and prints its device time per op and kind of op
(`trace_summary.py`: attention, matmul, convolution, fusion, copy, other).

`--attention_kernels` instead times one attention layer over the config's full token
sequence with `jax.nn.dot_product_attention`, the explicit path, the chunked kernel and
torch sdpa (where the gap between JAX and PyTorch on CPU was).

Reduced shapes (`--num_frames`, `--crop_size`, `--num_layers`) keep CPU runs short; the
attention shapes only change with frames and crop. Output: a markdown table on stdout
and `--json=PATH` rows.
"""
from __future__ import annotations

import dataclasses
import glob
import json
import os
import pathlib
import platform
import statistics
import sys
import time
from typing import Any, Callable, Optional

# PyTorch's OpenMP threads spin after each parallel region; interleaved with ours they
# took cores from our next call (TimeSformer training step 5.6 s -> 9.5 s with
# OMP_WAIT_POLICY=ACTIVE, and in between by default) while Hugging Face's own time did
# not change (4.52 s active, 4.59 s passive). Set before torch loads its OpenMP runtime.
os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')

from absl import app, flags  # pylint: disable=g-import-not-at-top,wrong-import-position
import jax
import jax.numpy as jnp
import numpy as np

import trace_summary   # experiments/, beside this script.
from vivit_jax import config as vc
from vivit_jax import models
from vivit_jax.models import cpu_attention, layers, mvit
from vivit_jax.train import optim, parallel, steps

FLAGS = flags.FLAGS
flags.DEFINE_multi_string('config', [], 'Config file(s), `path[:arg]`.')
flags.DEFINE_bool('all', False, 'Benchmark every config matching --configs.')
flags.DEFINE_string('configs', 'configs/kinetics400/*.py', 'Glob used by --all.')
flags.DEFINE_integer('batch_size', 1, 'Inference batch (clips per call).')
flags.DEFINE_integer('train_batch_size', None,
                     'Training batch; 0 = largest power of two that fits the device '
                     '(accelerators only); default: --batch_size.')
flags.DEFINE_integer('max_train_batch', 512, 'Upper bound of the 0 search.')
flags.DEFINE_integer('runs', 5, 'Timed calls per measurement (median and spread).')
flags.DEFINE_integer('warmup', 1, 'Untimed calls after compilation.')
flags.DEFINE_integer('num_frames', None, 'Override config.dataset.num_frames.')
flags.DEFINE_integer('crop_size', None, 'Override config.dataset.crop_size.')
flags.DEFINE_integer('num_layers', None, 'Override config.model.num_layers.')
flags.DEFINE_enum('dtype', None, ['float32', 'bfloat16'], 'Override config.model.dtype.')
flags.DEFINE_bool('remat', None, 'Override config.model.remat.')
flags.DEFINE_string('remat_policy', None, 'Override config.model.remat_policy.')
flags.DEFINE_string('attention_impl', None, 'Override config.model.attention_impl.')
flags.DEFINE_bool('inference', True, 'Measure inference.')
flags.DEFINE_bool('train', True, 'Measure a training step.')
flags.DEFINE_bool('pytorch', True, 'Also run the PyTorch counterparts where installed '
                  '(Hugging Face transformers, torchvision).')
flags.DEFINE_alias('hf', 'pytorch')   # its name before torchvision's models.
flags.DEFINE_float('peak_tflops', None, 'Device peak TFLOP/s for MFU (default: table).')
flags.DEFINE_string('json', None, 'Write the rows as JSON to this path.')
flags.DEFINE_string('profile_dir', None,
                    'Also trace one call of ours per config and mode into this folder '
                    'and print where its device time goes (trace_summary.py).')
flags.DEFINE_bool('attention_kernels', False,
                  'Only time one attention layer of each config\'s largest '
                  'sequence with every kernel (and torch sdpa).')

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
  if FLAGS.peak_tflops:
    return FLAGS.peak_tflops
  matches = [k for k in PEAK_TFLOPS if k.lower() in device_kind.lower()]
  return PEAK_TFLOPS[max(matches, key=len)][dtype] if matches else None


# --------------------------------------------------------------------------------------
# Timing.

@dataclasses.dataclass
class Timing:
  """Seconds per call, wall clock and this process's CPU time (all its threads), over
  the timed runs. CPU seconds are what a call costs on a shared machine: other users'
  load stretches wall time but hardly the CPU time a call needs."""
  times: list
  cpu_times: list

  @property
  def median(self):
    return statistics.median(self.times)

  @property
  def cpu_median(self):
    return statistics.median(self.cpu_times)

  def as_dict(self):
    return {'median_s': self.median, 'min_s': min(self.times), 'max_s': max(self.times),
            'cpu_median_s': self.cpu_median, 'runs': len(self.times)}


def interleaved(fns: dict[str, Callable[[], Any]], runs: int, warmup: int) -> dict:
  """Times each `fn()` (which must block until done) `runs` times, round-robin, so
  machine load hits every candidate alike. Returns {name: Timing}."""
  for fn in fns.values():
    for _ in range(warmup):
      fn()
  times = {name: ([], []) for name in fns}
  for _ in range(runs):
    for name, fn in fns.items():
      start, cpu = time.perf_counter(), time.process_time()
      fn()
      times[name][0].append(time.perf_counter() - start)
      times[name][1].append(time.process_time() - cpu)
  return {name: Timing(*t) for name, t in times.items()}


def _cost(compiled_or_lowered) -> float:
  cost = compiled_or_lowered.cost_analysis()
  if isinstance(cost, (list, tuple)):
    cost = cost[0]
  return float(cost.get('flops', 0.0)) if cost else 0.0


def _on_cpu(tree):
  """Abstract copies of `tree`'s arrays placed on the host CPU: programs lowered for it
  have an XLA cost analysis before compilation, which the GPU backend does not give
  (`cost_analysis()` of a GPU lowering is empty, so FLOPs read 0 there)."""
  cpu = jax.sharding.SingleDeviceSharding(jax.devices('cpu')[0])
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=cpu), tree)


def _memory(compiled) -> Optional[int]:
  """Bytes the compiled program needs: arguments + outputs + temporaries - aliased."""
  try:
    m = compiled.memory_analysis()
  except Exception:   # pylint: disable=broad-except
    return None
  if m is None:
    return None
  return int(m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes
             - m.alias_size_in_bytes)


def _text(compiled) -> str:
  """The compiled program's HLO text ('' where the backend gives none)."""
  try:
    return compiled.as_text()
  except Exception:   # pylint: disable=broad-except
    return ''


def _attention_kernel_calls(compiled) -> dict:
  """Attention custom calls (forward and backward) in the compiled program, read from one
  dump of its text: `cudnn_attention_calls` (0 on GPU means XLA's materialised softmax)
  and `cpu_flash_attention_calls` (the C++ CPU kernels of models/cpu_attention.py; 0 on
  CPU means the XLA kernels ran)."""
  text = _text(compiled)
  return {'cudnn_attention_calls': text.count('__cudnn$fmha'),
          'cpu_flash_attention_calls': sum(
              text.count(f'custom_call_target="{t}"')
              for t in (cpu_attention.TARGET, cpu_attention.BACKWARD_TARGET))}


def _peak_bytes_in_use() -> Optional[int]:
  stats = jax.local_devices()[0].memory_stats()
  return int(stats['peak_bytes_in_use']) if stats and 'peak_bytes_in_use' in stats else None


# --------------------------------------------------------------------------------------
# Ours.

def load(spec: str):
  """Config of `path[:arg]` with the shape and speed overrides of the flags applied."""
  path, _, arg = spec.partition(':')
  config = vc.load_config(path, arg or None)
  d, m = config.dataset, config.model
  if FLAGS.num_frames:
    d.num_frames = FLAGS.num_frames
  if FLAGS.crop_size:
    d.crop_size = FLAGS.crop_size
  if FLAGS.num_layers:
    if 'num_layers' not in m:   # MViT (`depth` over stages), Video Swin (`depths`).
      raise app.UsageError(f'--num_layers={FLAGS.num_layers} does not apply to {spec} '
                           f'(model {m.name!r} has no model.num_layers).')
    m.num_layers = FLAGS.num_layers
  for field in ('dtype', 'remat', 'remat_policy', 'attention_impl'):
    value = getattr(FLAGS, field)
    if value is not None:
      m[field] = value
  config.trainer.grad_accum_steps = 1
  config.trainer.parallelism = 'jit'   # the default wrapper (mesh over all devices).
  vc.validate_config(config)
  return config


def random_params(model, video_shape, seed=0):
  """Params of `model` filled with small noise (no eager init: fast on CPU)."""
  abstract = jax.eval_shape(
      lambda: model.init(jax.random.key(0), jnp.zeros(video_shape, jnp.float32)))['params']
  rng = np.random.default_rng(seed)
  return jax.tree.map(
      lambda s: jnp.asarray(0.02 * rng.standard_normal(s.shape), s.dtype), abstract)


def video_shape(config, batch):
  d = config.dataset
  return (batch, d.num_frames, d.crop_size, d.crop_size, 3)


class Ours:
  """Jitted inference and training step of one config (our real code paths)."""

  def __init__(self, config):
    self.config = config
    self.num_classes = config.dataset.num_classes
    self.model = models.create_model(config.model, self.num_classes)
    self.params = random_params(self.model, video_shape(config, 1))
    self.forward = jax.jit(lambda p, x: self.model.apply({'params': p}, x, train=False))

  def counting_model(self):
    """The same model without remat (model FLOPs, not recomputation)."""
    m = self.config.model.copy_and_resolve_references()
    m.remat = False
    return models.create_model(m, self.num_classes)

  def inference_flops(self, batch) -> float:
    model = self.counting_model()
    x = jax.ShapeDtypeStruct(video_shape(self.config, batch), jnp.float32)
    with layers.flop_counting():
      lowered = jax.jit(lambda p, x: model.apply({'params': p}, x, train=False)).lower(
          *_on_cpu((self.params, x)))
    return _cost(lowered)

  def make_inference(self, batch):
    """(run() -> blocks, compiled program)."""
    x = jnp.asarray(np.random.default_rng(1).standard_normal(
        video_shape(self.config, batch)).astype(np.float32))
    compiled = self.forward.lower(self.params, x).compile()
    return (lambda: jax.block_until_ready(compiled(self.params, x))), compiled

  def _train_parts(self, batch, model=None):
    config = self.config
    tx, lr_fn = optim.create_optimizer(config, max(config.trainer.num_train_steps, 1))
    model = model or self.model
    step_fn = lambda state, b, rng, axis_name=None: steps.train_step(
        state, b, rng, apply_fn=model.apply, tx=tx, lr_fn=lr_fn,
        num_classes=self.num_classes,
        label_smoothing=float(config.trainer.get('label_smoothing', 0.0) or 0.0),
        mixup_alpha=float(config.trainer.get('mixup_alpha', 0.0) or 0.0),
        axis_name=axis_name)
    rng = np.random.default_rng(2)
    host_batch = {
        'video': rng.standard_normal(video_shape(config, batch)).astype(np.float32),
        'label': rng.integers(0, self.num_classes, (batch,)).astype(np.int32)}
    return step_fn, tx, host_batch

  def train_flops(self, batch) -> float:
    step_fn, tx, host_batch = self._train_parts(batch, self.counting_model())
    state = jax.eval_shape(lambda p: steps.create_train_state(p, tx), self.params)
    b = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), host_batch)
    with layers.flop_counting():
      lowered = jax.jit(step_fn).lower(*_on_cpu((state, b, jax.random.key(0))))
    return _cost(lowered)

  def _compile_train(self, batch):
    """(parallel wrapper, tx, host batch, compiled step) at `batch`; nothing allocated."""
    step_fn, tx, host_batch = self._train_parts(batch)
    par = parallel.make_parallel(self.config, train_step_fn=step_fn,
                                 eval_step_fn=lambda p, b: None)
    state = jax.eval_shape(lambda p: steps.create_train_state(p, tx), self.params)
    b = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), host_batch)
    compiled = par.train_step.lower(state, b, jax.random.key(0)).compile()
    return par, tx, host_batch, compiled

  def train_bytes(self, batch) -> Optional[int]:
    """Compiled memory of the training step at `batch` (None: the compiler gave up)."""
    try:
      return _memory(self._compile_train(batch)[3])
    except Exception as e:   # pylint: disable=broad-except
      if 'RESOURCE_EXHAUSTED' in str(e) or 'out of memory' in str(e).lower():
        return None
      raise

  def make_train(self, batch):
    """(run() -> blocks, compiled program) of one optimiser update (state donated)."""
    par, tx, host_batch, compiled = self._compile_train(batch)
    holder = {'state': par.put_state(steps.create_train_state(self.params, tx))}
    dev_batch = par.put_batch(host_batch)
    rng = jax.random.key(0)

    def run():
      holder['state'], metrics = compiled(holder['state'], dev_batch, rng)
      jax.block_until_ready(metrics['loss'])
    return run, compiled


def largest_train_batch(ours: Ours, limit: Optional[int], max_batch: int) -> Optional[int]:
  """Largest power of two <= max_batch whose training step fits in 95% of `limit` bytes
  of device memory: bytes(b) extrapolated linearly from b = 1, 2, then checked (and
  halved until it fits), so only a few compilations are needed. None if no limit."""
  if not limit:
    return None
  budget = 0.95 * limit
  one, two = ours.train_bytes(1), ours.train_bytes(2)
  if one is None or one > budget:
    raise RuntimeError(f'{ours.config.experiment_name}: a training batch of 1 does not '
                       f'fit the device ({one} bytes needed, {limit} available).')
  per_clip = max((two or 2 * one) - one, 1)
  batch = 1
  while batch * 2 <= max_batch and one + (batch * 2 - 1) * per_clip <= budget:
    batch *= 2
  while batch > 1:
    need = ours.train_bytes(batch)
    if need is not None and need <= budget:
      break
    batch //= 2
  return batch


# --------------------------------------------------------------------------------------
# PyTorch counterparts: Hugging Face transformers (ViViT, TimeSformer) and torchvision
# (MViT, Video Swin), built locally with random weights at the same shapes.

def torch_available() -> bool:
  try:
    import torch  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
  except ImportError:
    return False
  return True


def hf_available() -> bool:
  try:
    import transformers  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
  except ImportError:
    return False
  return torch_available()


def torchvision_available() -> bool:
  try:
    import torchvision  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
  except Exception:   # pylint: disable=broad-except
    # ImportError, or a torchvision built for another torch (RuntimeError at import).
    return False
  return True


def hf_model(config):
  """(model, attention) of the Hugging Face counterpart of `config`, random weights, on
  the CPU in float32, or None where transformers has none (or is not installed)."""
  m, d = config.model, config.dataset
  if not ((m.name == 'vivit' and m.attention_type == 'spatio_temporal'
           and m.embedding == 'tubelet' and m.classifier == 'token')
          or m.name == 'timesformer') or not hf_available():
    return None
  import transformers  # pylint: disable=import-outside-toplevel
  act = 'gelu_pytorch_tanh' if m.get('gelu_approximate', False) else 'gelu'
  common = dict(hidden_size=m.hidden_size, num_hidden_layers=m.num_layers,
                num_attention_heads=m.num_heads, intermediate_size=m.mlp_dim,
                hidden_act=act, layer_norm_eps=m.get('layer_norm_epsilon', 1e-6),
                image_size=d.crop_size, num_frames=d.num_frames, num_labels=d.num_classes,
                hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
  if m.name == 'vivit':
    hf_config = transformers.VivitConfig(
        tubelet_size=[m.temporal_patch_size, *m.patch_size], qkv_bias=True, **common)
    cls = transformers.VivitForVideoClassification
  else:
    hf_config = transformers.TimesformerConfig(
        patch_size=m.patch_size[0], attention_type=m.attention_type, **common)
    cls = transformers.TimesformerForVideoClassification
  for attn in ('sdpa', 'eager'):   # TimeSformer has no sdpa path in transformers 5.
    hf_config._attn_implementation = attn   # pylint: disable=protected-access
    try:
      return cls(hf_config), attn
    except ValueError:
      continue
  raise RuntimeError(f'{cls.__name__} could not be built with sdpa or eager attention')


def torchvision_model(config):
  """(model, attention) of torchvision's MViT (v1-B, v2-S) or Swin3D counterpart of
  `config`, random weights, float32 on the CPU, or None (not those models, torchvision
  missing). Our stochastic depth rate (and MViT's head dropout); eager attention (matmul,
  softmax, matmul)."""
  m, d = config.model, config.dataset
  if m.name not in ('mvit', 'video_swin') or not torchvision_available():
    return None
  from torchvision.models import video  # pylint: disable=import-outside-toplevel
  common = dict(num_classes=d.num_classes, stochastic_depth_prob=m.stochastic_depth)
  if m.name == 'mvit':
    # torchvision's builders fix the clip at 16x224^2: its MViT class from our block
    # schedule (widths, heads, pooling kernels and strides per block) instead.
    t, h, w = (n // s for n, s in zip((d.num_frames, d.crop_size, d.crop_size),
                                      m.patch_stride))
    blocks = [video.mvit.MSBlockConfig(
        num_heads=b.num_heads, input_channels=b.dim, output_channels=b.dim_out,
        kernel_q=list(b.q_kernel), kernel_kv=list(b.kv_kernel), stride_q=list(b.q_stride),
        stride_kv=list(b.kv_stride)) for b in mvit.block_specs(m, (t, h, w))]
    v2 = bool(m.rel_pos_spatial)
    model = video.mvit.MViT(
        spatial_size=(d.crop_size, d.crop_size), temporal_size=d.num_frames,
        block_setting=blocks, residual_pool=bool(m.residual_pooling),
        residual_with_cls_embed=False, rel_pos_embed=v2,
        proj_after_attn=bool(m.dim_mul_in_att),
        dropout=m.head_dropout_rate, patch_embed_kernel=tuple(m.patch_kernel),
        patch_embed_stride=tuple(m.patch_stride),
        patch_embed_padding=tuple(m.patch_padding), **common)
  else:
    model = video.swin_transformer.SwinTransformer3d(
        patch_size=[m.temporal_patch_size, *m.patch_size], embed_dim=m.embed_dim,
        depths=list(m.depths), num_heads=list(m.num_heads),
        window_size=list(m.window_size), mlp_ratio=m.mlp_ratio, **common)
  return model, 'eager'


def pytorch_model(config, num_params: int):
  """(model, attention) of the PyTorch counterpart of `config` with `num_params`
  parameters like ours, or None. A counterpart whose parameter count differs is not the
  same architecture (e.g. a reduced config torchvision cannot express): skipped, said."""
  import torch  # pylint: disable=import-outside-toplevel
  torch.manual_seed(0)
  built = hf_model(config) or torchvision_model(config)
  if built is None:
    return None
  theirs = sum(p.numel() for p in built[0].parameters())
  if theirs != num_params:
    print(f'# no PyTorch comparison: {type(built[0]).__name__} has {theirs} parameters, '
          f'ours {num_params}', file=sys.stderr, flush=True)
    return None
  return built


class Theirs:
  """Inference and a training step of the PyTorch counterpart (`pytorch_model`)."""

  def __init__(self, config, model, attn):
    import torch  # pylint: disable=import-outside-toplevel
    self.config, self.attn = config, attn
    self.hf = type(model).__module__.startswith('transformers')
    self.name = (type(model).__name__.replace('ForVideoClassification', '') if self.hf
                 else f'torchvision {type(model).__name__}')
    self.dtype = (torch.bfloat16 if config.model.get('dtype', 'float32') == 'bfloat16'
                  else torch.float32)
    self.device = 'cuda' if torch.cuda.is_available() else 'cpu'
    self.model = model.to(device=self.device, dtype=self.dtype)

  def _inputs(self, batch):
    import torch  # pylint: disable=import-outside-toplevel
    d = self.config.dataset
    g = torch.Generator().manual_seed(1)
    video = torch.randn((batch, d.num_frames, 3, d.crop_size, d.crop_size), generator=g)
    if not self.hf:
      video = video.transpose(1, 2).contiguous()   # torchvision: [B, C, T, H, W].
    labels = torch.randint(0, d.num_classes, (batch,), generator=g)
    return video.to(self.device, self.dtype), labels.to(self.device)

  def _logits(self, video):
    return self.model(pixel_values=video).logits if self.hf else self.model(video)

  def _sync(self):
    import torch  # pylint: disable=import-outside-toplevel
    if self.device == 'cuda':
      torch.cuda.synchronize()

  def make_inference(self, batch):
    import torch  # pylint: disable=import-outside-toplevel
    video, _ = self._inputs(batch)
    self.model.eval()

    def run():
      with torch.inference_mode():
        self._logits(video).float().cpu()
      self._sync()
    return run

  def make_train(self, batch):
    import torch  # pylint: disable=import-outside-toplevel
    video, labels = self._inputs(batch)
    opt = torch.optim.SGD(self.model.parameters(), lr=1e-3, momentum=0.9)

    def run():
      self.model.train()
      logits = self._logits(video).float()
      if logits.shape[0] != labels.shape[0]:
        # transformers' TimeSformer 'space_only' classifies every frame ([B*T, classes]);
        # the original (and ours) averages the frames first.
        logits = logits.reshape(labels.shape[0], -1, logits.shape[-1]).mean(1)
      loss = torch.nn.functional.cross_entropy(logits, labels)
      loss.backward()
      torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
      opt.step()
      opt.zero_grad(set_to_none=True)
      loss.item()
      self._sync()
    return run


# --------------------------------------------------------------------------------------

def num_blocks(m) -> int:
  """Transformer blocks of a model config: num_layers, MViT's depth or Swin's depths."""
  if 'num_layers' in m:
    return m.num_layers
  return m.depth if 'depth' in m else sum(m.depths)


def benchmark(spec: str, use_pytorch: bool) -> list[dict]:
  config = load(spec)
  m, d = config.model, config.dataset
  name = pathlib.Path(spec.partition(':')[0]).stem + (
      f':{spec.partition(":")[2]}' if spec.partition(':')[2] else '')
  dev = jax.local_devices()[0]
  dtype = m.get('dtype', 'float32')
  peak = peak_tflops(dev.device_kind, dtype)
  base = {'config': name, 'input': f'{d.num_frames}x{d.crop_size}x{d.crop_size}',
          'num_layers': num_blocks(m), 'dtype': dtype,
          'attention_impl': layers.resolve_attention_impl(m.get('attention_impl', 'xla')),
          'remat': bool(m.get('remat', False)),
          'remat_policy': m.get('remat_policy', None) if m.get('remat', False) else None,
          'device': dev.device_kind, 'platform': dev.platform}
  ours = Ours(config)
  counterpart = None
  if use_pytorch:
    num_params = sum(x.size for x in jax.tree.leaves(ours.params))
    counterpart = pytorch_model(config, num_params)
  theirs = Theirs(config, *counterpart) if counterpart else None
  rows = []
  modes = [('inference', FLAGS.batch_size)] if FLAGS.inference else []
  if FLAGS.train:
    tb = FLAGS.train_batch_size
    if tb is None or (tb == 0 and dev.platform == 'cpu'):
      tb = FLAGS.batch_size
    elif tb == 0:
      limit = (dev.memory_stats() or {}).get('bytes_limit')
      tb = largest_train_batch(ours, limit, FLAGS.max_train_batch) or FLAGS.batch_size
    modes.append(('train', tb))
  for mode, batch in modes:
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
    timing = interleaved(fns, FLAGS.runs, FLAGS.warmup)
    t = timing['ours']
    row = dict(base, mode=mode, batch=batch, **t.as_dict(),
               clips_per_s=batch / t.median, latency_per_clip_s=t.median / batch,
               gflops=flops / 1e9, achieved_tflops=flops / t.median / 1e12,
               mfu=(flops / t.median / 1e12 / peak) if peak else None,
               peak_tflops=peak, compiled_bytes=_memory(compiled),
               peak_bytes_in_use=_peak_bytes_in_use(),
               **_attention_kernel_calls(compiled))
    if theirs is not None:
      th = timing['theirs']
      row.update(pytorch_model=theirs.name, pytorch_attention=theirs.attn,
                 pytorch=th.as_dict(), pytorch_clips_per_s=batch / th.median,
                 ratio=th.median / t.median, cpu_ratio=th.cpu_median / t.cpu_median)
    print(markdown_row(row), flush=True)
    if FLAGS.profile_dir:
      row['profile'] = profile(run, compiled,
                               os.path.join(FLAGS.profile_dir, f'{name}_{mode}'))
    rows.append(row)
  return rows


def profile(run: Callable[[], Any], compiled, log_dir: str) -> dict:
  """Traces one `run()` of `compiled` into `log_dir`; prints and returns
  `trace_summary.summarize` (custom calls named by their targets)."""
  with jax.profiler.trace(log_dir, create_perfetto_trace=True):
    run()
  traces = sorted(glob.glob(os.path.join(log_dir, '**', 'perfetto_trace.json.gz'),
                            recursive=True), key=os.path.getmtime)
  if not traces:
    print(f'# no perfetto trace under {log_dir}', file=sys.stderr)
    return {}
  summary = trace_summary.summarize(traces[-1], top=15, hlo_text=_text(compiled))
  print(trace_summary.markdown(summary), flush=True)
  return dict(summary, trace=traces[-1])


def attention_kernels(spec: str) -> list[dict]:
  """One self-attention layer over all tokens of `spec`'s video (the Model 1 sequence:
  n_t * n_h * n_w + 1 tokens) with every kernel, and torch sdpa, interleaved."""
  config = load(spec)
  m, d = config.model, config.dataset
  tokens = (d.num_frames // m.get('temporal_patch_size', 1)) * (
      d.crop_size // m.patch_size[0]) * (d.crop_size // m.patch_size[1]) + 1
  heads, head_dim = m.num_heads, m.hidden_size // m.num_heads
  rng = np.random.default_rng(0)
  q, k, v = (jnp.asarray(rng.standard_normal((FLAGS.batch_size, tokens, heads, head_dim)),
                         jnp.float32) for _ in range(3))
  fns = {}
  impls = ('xla', 'explicit', 'chunked') + (('cpu_flash',) if cpu_attention.available()
                                             and jax.default_backend() == 'cpu' else ())
  for impl in impls:
    fn = jax.jit(lambda q, k, v, impl=impl: (
        jax.nn.dot_product_attention(q, k, v) if impl == 'xla'
        else layers.dot_product_attention(q, k, v, impl=impl)))
    fns['jax.nn.dot_product_attention' if impl == 'xla' else impl] = (
        lambda fn=fn: jax.block_until_ready(fn(q, k, v)))
  if torch_available():
    import torch  # pylint: disable=import-outside-toplevel
    tq, tk, tv = (torch.from_numpy(np.array(a)).transpose(1, 2).contiguous()
                  for a in (q, k, v))

    def sdpa():
      with torch.inference_mode():
        torch.nn.functional.scaled_dot_product_attention(tq, tk, tv)
    fns['torch sdpa'] = sdpa
  timing = interleaved(fns, FLAGS.runs, FLAGS.warmup)
  flops = 4 * FLAGS.batch_size * tokens * tokens * heads * head_dim
  rows = []
  for name, t in timing.items():
    rows.append({'kernel': name, 'tokens': tokens, 'heads': heads, 'head_dim': head_dim,
                 'batch': FLAGS.batch_size, **t.as_dict(),
                 'achieved_tflops': flops / t.median / 1e12})
    print(f"| {name} | {tokens} x {heads} x {head_dim} | {t.median:.3f} "
          f"({min(t.times):.3f}-{max(t.times):.3f}) | {t.cpu_median:.3f} | "
          f"{flops / t.median / 1e9:.0f} |", flush=True)
  return rows


HEADER = ('| config | mode | input | layers | dtype | attn | batch | median s (min-max) | '
          'CPU s | clips/s | ms/clip | GFLOPs | TFLOP/s | MFU | compiled GB | '
          'PyTorch (attn): median s | ours/PyTorch clips/s |\n' + '|---' * 17 + '|')


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


def environment() -> dict:
  env = {'date': time.strftime('%Y-%m-%d %H:%M %Z'), 'jax': jax.__version__,
         'device': jax.local_devices()[0].device_kind, 'device_count': jax.device_count(),
         'cpu_count': os.cpu_count(), 'python': platform.python_version(),
         'machine': platform.processor() or platform.machine(),
         'xla_flags': os.environ.get('XLA_FLAGS', ''),
         'omp_wait_policy': os.environ.get('OMP_WAIT_POLICY', '')}
  if torch_available():
    import torch  # pylint: disable=import-outside-toplevel
    env.update(torch=torch.__version__, torch_threads=torch.get_num_threads())
  if hf_available():
    import transformers  # pylint: disable=import-outside-toplevel
    env.update(transformers=transformers.__version__)
  if torchvision_available():
    import torchvision  # pylint: disable=import-outside-toplevel
    env.update(torchvision=torchvision.__version__)
  return env


def main(argv):
  del argv
  specs = list(FLAGS.config)
  if FLAGS.all:
    specs += sorted(glob.glob(FLAGS.configs))
  if not specs:
    raise app.UsageError('give --config=PATH (repeatable) or --all')
  train_batch = FLAGS.train_batch_size or FLAGS.batch_size
  if FLAGS.train and not FLAGS.attention_kernels and train_batch % jax.device_count():
    raise app.UsageError(
        f'training batch {train_batch} (--train_batch_size, else --batch_size) must be a '
        f'multiple of the {jax.device_count()} devices the training step shards over.')
  use_pytorch = FLAGS.pytorch and torch_available()
  env = environment()
  print(' '.join(f'{k}={v}' for k, v in env.items()))
  rows = []
  if FLAGS.attention_kernels:
    print('| kernel | tokens x heads x head_dim | median s (min-max) | CPU s | GFLOP/s |\n'
          '|---|---|---|---|---|', flush=True)
  else:
    print(HEADER, flush=True)
  for spec in specs:
    rows.extend(attention_kernels(spec) if FLAGS.attention_kernels
                else benchmark(spec, use_pytorch))
    if FLAGS.json:   # after every config: a run cut short keeps what it measured.
      pathlib.Path(FLAGS.json).write_text(json.dumps({'environment': env, 'rows': rows},
                                                     indent=2))


if __name__ == '__main__':
  app.run(main)
