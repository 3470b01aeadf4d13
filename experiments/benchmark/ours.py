"""Our side of the comparison: a config with the benchmark's overrides, and its jitted
inference and training step (the real code paths of vivit_jax.train)."""
from __future__ import annotations

import pathlib
from typing import Optional

from absl import app
import jax
import jax.numpy as jnp
import numpy as np

from experiments.benchmark import programs
from vivit_jax import config as vc
from vivit_jax import models
from vivit_jax.ops import switches
from vivit_jax.train import optim, parallel, steps

MODEL_OVERRIDES = ('dtype', 'remat', 'remat_policy', 'attention_impl')


def load_config(spec: str, *, num_frames: Optional[int] = None,
                crop_size: Optional[int] = None, num_layers: Optional[int] = None,
                **model_overrides):
  """Config of `path[:arg]` with the benchmark's shape and speed overrides applied (None
  leaves a field as configured; `model_overrides`: the `MODEL_OVERRIDES` fields)."""
  path, _, arg = spec.partition(':')
  config = vc.load_config(path, arg or None)
  d, m = config.dataset, config.model
  if num_frames:
    d.num_frames = num_frames
  if crop_size:
    d.crop_size = crop_size
  if num_layers:
    if 'num_layers' not in m:   # MViT (`depth` over stages), Video Swin (`depths`).
      raise app.UsageError(f'--num_layers={num_layers} does not apply to {spec} '
                           f'(model {m.name!r} has no model.num_layers).')
    m.num_layers = num_layers
  for field, value in model_overrides.items():
    if field not in MODEL_OVERRIDES:
      raise TypeError(f'no model override {field!r}: expected one of {MODEL_OVERRIDES}')
    if value is not None:
      m[field] = value
  config.trainer.grad_accum_steps = 1
  config.trainer.parallelism = 'jit'   # the default wrapper (mesh over all devices).
  vc.validate_config(config)
  return config


def config_name(spec: str) -> str:
  """The table's name of `path[:arg]`: the file's stem, with `:arg` when given."""
  path, _, arg = spec.partition(':')
  return pathlib.Path(path).stem + (f':{arg}' if arg else '')


def num_blocks(m) -> int:
  """Transformer blocks of a model config: num_layers, MViT's depth or Swin's depths."""
  if 'num_layers' in m:
    return m.num_layers
  return m.depth if 'depth' in m else sum(m.depths)


def video_shape(config, batch) -> tuple:
  """(batch, T, H, W, 3): the model's input at `batch` clips."""
  d = config.dataset
  return (batch, d.num_frames, d.crop_size, d.crop_size, 3)


def random_params(model, video_shape, seed=0):
  """Params of `model` filled with small noise (no eager init: fast on CPU)."""
  abstract = jax.eval_shape(
      lambda: model.init(jax.random.key(0), jnp.zeros(video_shape, jnp.float32)))['params']
  rng = np.random.default_rng(seed)
  return jax.tree.map(
      lambda s: jnp.asarray(0.02 * rng.standard_normal(s.shape), s.dtype), abstract)


class Ours:
  """Jitted inference and training step of one config (our real code paths)."""

  def __init__(self, config):
    self.config = config
    self.num_classes = config.dataset.num_classes
    self.model = models.create_model(config.model, self.num_classes)
    self.params = random_params(self.model, video_shape(config, 1))
    self.forward = jax.jit(lambda p, x: self.model.apply({'params': p}, x, train=False))

  @property
  def num_params(self) -> int:
    return sum(x.size for x in jax.tree.leaves(self.params))

  def counting_model(self):
    """The same model without remat (model FLOPs, not recomputation)."""
    m = self.config.model.copy_and_resolve_references()
    m.remat = False
    return models.create_model(m, self.num_classes)

  def inference_flops(self, batch) -> float:
    """Model FLOPs of one forward pass at `batch` (explicit attention, no remat)."""
    model = self.counting_model()
    x = jax.ShapeDtypeStruct(video_shape(self.config, batch), jnp.float32)
    with switches.flop_counting():
      lowered = jax.jit(lambda p, x: model.apply({'params': p}, x, train=False)).lower(
          *programs.on_cpu((self.params, x)))
    return programs.flops(lowered)

  def make_inference(self, batch):
    """(run() -> blocks, compiled program)."""
    x = jnp.asarray(np.random.default_rng(1).standard_normal(
        video_shape(self.config, batch)).astype(np.float32))
    compiled = self.forward.lower(self.params, x).compile()
    return (lambda: jax.block_until_ready(compiled(self.params, x))), compiled

  def _train_parts(self, batch, model=None):
    """(step function, optimizer, host batch {video [B, T, H, W, 3], label [B]})."""
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

  def _abstract_step_args(self, tx, host_batch):
    """(train state, batch, rng) of a training step as abstract values."""
    state = jax.eval_shape(lambda p: steps.create_train_state(p, tx), self.params)
    b = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), host_batch)
    return state, b, jax.random.key(0)

  def train_flops(self, batch) -> float:
    """Model FLOPs of one training step at `batch` (explicit attention, no remat)."""
    step_fn, tx, host_batch = self._train_parts(batch, self.counting_model())
    with switches.flop_counting():
      lowered = jax.jit(step_fn).lower(
          *programs.on_cpu(self._abstract_step_args(tx, host_batch)))
    return programs.flops(lowered)

  def _compile_train(self, batch):
    """(parallel wrapper, tx, host batch, compiled step) at `batch`; nothing allocated."""
    step_fn, tx, host_batch = self._train_parts(batch)
    par = parallel.make_parallel(self.config, train_step_fn=step_fn,
                                 eval_step_fn=lambda p, b: None)
    compiled = par.train_step.lower(*self._abstract_step_args(tx, host_batch)).compile()
    return par, tx, host_batch, compiled

  def train_bytes(self, batch) -> Optional[int]:
    """Compiled memory of the training step at `batch` (None: the compiler gave up)."""
    try:
      return programs.memory_bytes(self._compile_train(batch)[3])
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
