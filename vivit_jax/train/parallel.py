"""Data parallelism (and sharded parameters): one pure step (`steps.py`), two wrappers.

* `jit` (default): `jax.jit` over a `Mesh` of all devices with axes 'data' x 'fsdp'
  (`trainer.mesh`, default {'data': -1, 'fsdp': 1}: a 1-D data mesh); batches sharded on
  their leading axis over both axes, built from process-local data with
  `jax.make_array_from_process_local_data` (multi-host ready). With fsdp = 1 params and
  optimiser state are replicated; with fsdp = N > 1 each array is split over 'fsdp' along
  its largest dimension divisible by N (`fsdp_spec`; arrays without one, e.g. biases of
  odd sizes, stay replicated) and XLA inserts the all-gathers and reduce-scatters from
  the sharding annotations (FSDP / ZeRO-3; no hand-written collectives).
* `pmap`: `jax.pmap` over the local devices with `lax.pmean` over axis 'batch'
  (the classic Scenic path); state carries a leading device axis.

`make_parallel` returns a `Parallel` of plain functions so the trainer does not care
which one runs.
"""
from __future__ import annotations

import collections
import functools
from typing import Callable, Iterable, Iterator, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from vivit_jax.errors import ConfigError, config_error

DATA_AXIS = 'data'
FSDP_AXIS = 'fsdp'
PMAP_AXIS = 'batch'


class Parallel(NamedTuple):
  """Functions that place data and run the steps on all devices.

  put_state(state) -> device state; get_state(device state) -> one copy (for saving);
  put_batch(process-local batch) -> device batch;
  train_step(device state, device batch, base_rng) -> (device state, metrics);
  predict(device state, process-local eval batch) -> numpy {'probs': float32[B, K],
    'label': int32[B], 'mask': float32[B]} of the global batch;
  sharding_for(shape) -> where one copy of a state array of that shape lives (for
    orbax restore targets, `with_sharding`, and initialisation in place).
  """
  name: str
  put_state: Callable
  get_state: Callable
  put_batch: Callable
  train_step: Callable
  predict: Callable
  sharding_for: Callable

  def shardings(self, abstract_tree):
    """The sharding of each array of `abstract_tree` (anything with .shape)."""
    return jax.tree.map(lambda x: self.sharding_for(tuple(x.shape)), abstract_tree)

  def with_sharding(self, abstract_tree):
    """ShapeDtypeStructs of `abstract_tree` placed like one saved copy."""
    return jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype,
                                       sharding=self.sharding_for(tuple(x.shape))),
        abstract_tree)


def make_mesh(devices=None, fsdp: int = 1) -> Mesh:
  """Mesh of all (global) devices, Auto axis types: 1-D (axis 'data') when fsdp = 1,
  else 2-D 'data' x 'fsdp' with consecutive devices (one host's first) on 'fsdp'."""
  devices = np.asarray(jax.devices() if devices is None else devices)
  if fsdp == 1:
    return Mesh(devices, (DATA_AXIS,))
  return Mesh(devices.reshape(-1, fsdp), (DATA_AXIS, FSDP_AXIS))


def check_mesh_config(config) -> None:
  """Raises ConfigError for a `trainer.mesh` that cannot work whatever the devices:
  other axes than 'data'/'fsdp', sizes that are not positive integers or -1, fsdp
  with pmap. (Against the device count: `mesh_shape`.)"""
  mesh = config.trainer.get('mesh', None)
  if mesh is None:
    return
  mesh = dict(mesh)
  if set(mesh) - {DATA_AXIS, FSDP_AXIS}:
    raise ConfigError(f'config.trainer.mesh={mesh!r} is invalid: expected axes '
                      f"{DATA_AXIS!r} and {FSDP_AXIS!r}, e.g. {{'data': -1, 'fsdp': 8}}.")
  for axis, size in mesh.items():
    if not isinstance(size, int) or isinstance(size, bool) or size == 0 or size < -1:
      raise config_error(f'trainer.mesh.{axis}', size, 'a positive integer or -1 (the rest)')
  if list(mesh.values()).count(-1) > 1:
    raise ConfigError(f'config.trainer.mesh={mesh!r} is invalid: expected at most one '
                      'axis of size -1.')
  if mesh.get(FSDP_AXIS, 1) > 1 and config.trainer.get('parallelism', 'jit') != 'jit':
    raise config_error(
        'trainer.mesh.fsdp', mesh[FSDP_AXIS], f'1 with trainer.parallelism='
        f"{config.trainer.parallelism!r} (sharded parameters need 'jit')")


def mesh_shape(config, device_count: int) -> tuple[int, int]:
  """(data, fsdp) sizes of `trainer.mesh` over `device_count` devices; ConfigError when
  they do not multiply to it."""
  check_mesh_config(config)
  mesh = dict(config.trainer.get('mesh', None) or {})
  data, fsdp = mesh.get(DATA_AXIS, -1), mesh.get(FSDP_AXIS, 1)
  if fsdp == -1:
    fsdp = device_count // data if data > 0 and device_count % data == 0 else 0
  if data == -1:
    data = device_count // fsdp if fsdp and device_count % fsdp == 0 else 0
  if not data or not fsdp or data * fsdp != device_count:
    raise ConfigError(f'config.trainer.mesh={mesh!r} is invalid: expected data x fsdp = '
                      f'the {device_count} devices (-1 fills in the rest).')
  return data, fsdp


def fsdp_spec(shape: tuple, size: int) -> P:
  """The parameter-sharding rule: the largest dimension of `shape` divisible by `size`
  (the first of equal ones) is split over 'fsdp'; P() (replicated) when there is none
  or size is 1."""
  if size > 1:
    candidates = [(d, -i) for i, d in enumerate(shape) if d % size == 0 and d >= size]
    if candidates:
      _, neg = max(candidates)
      spec = [None] * len(shape)
      spec[-neg] = FSDP_AXIS
      return P(*spec)
  return P()


def check_batch_sizes(config) -> None:
  """Raises ConfigError if a batch size does not split evenly over the devices."""
  t = config.trainer
  n = jax.device_count()
  p = jax.process_count()
  accum = int(t.get('grad_accum_steps', 1) or 1)
  for field in ('batch_size', 'eval_batch_size'):
    size = t.get(field, t.batch_size)
    if not isinstance(size, int) or size < 1:
      raise ConfigError(f'config.trainer.{field}={size!r} is invalid: expected a '
                        'positive integer.')
    if size % n:
      raise ConfigError(
          f'config.trainer.{field}={size} is invalid: expected a multiple of the '
          f'device count {n} (global batch over {p} process(es)); e.g. '
          f'{max(n, size // n * n)}.')
  if accum < 1 or (t.batch_size // n) % accum:
    raise ConfigError(
        f'config.trainer.grad_accum_steps={accum!r} is invalid: expected a positive '
        f'divisor of the per-device batch {t.batch_size // n} '
        f'(trainer.batch_size={t.batch_size} over {n} devices).')


def prefetch_to_device(batches: Iterable, put_batch: Callable, size: int) -> Iterator:
  """`put_batch(b)` for each `b` of `batches`, with `size` batches already transferred.

  The host reads and starts the transfer of batch s + size while the device runs the
  step of batch s (steps are dispatched asynchronously); the order is unchanged, so
  resumed runs see the same batches. `size` 0 transfers each batch when it is asked for.
  """
  queue = collections.deque()
  for batch in batches:
    queue.append(put_batch(batch))
    if len(queue) > size:
      yield queue.popleft()
  while queue:
    yield queue.popleft()


def _gather(tree):
  if jax.process_count() == 1:
    return jax.tree.map(np.asarray, tree)
  return multihost_utils.process_allgather(tree, tiled=True)


def make_parallel(config, *, train_step_fn: Callable, eval_step_fn: Callable) -> Parallel:
  """Wraps `train_step_fn(state, batch, rng, axis_name=...)` and
  `eval_step_fn(params, batch)` (see steps.py) for `config.trainer.parallelism`."""
  kind = config.trainer.get('parallelism', 'jit')
  if kind == 'jit':
    _, fsdp = mesh_shape(config, jax.device_count())
    return _jit_parallel(train_step_fn, eval_step_fn, fsdp)
  if kind == 'pmap':
    check_mesh_config(config)
    return _pmap_parallel(train_step_fn, eval_step_fn)
  raise ConfigError(f"config.trainer.parallelism={kind!r} is invalid: expected one of "
                    "'jit', 'pmap'.")


def check_process_rows(sharding) -> None:
  """Raises if `sharding` (batch rows over the devices) does not give process p the
  rows [p * b, (p + 1) * b) of a global batch, b = rows per process: the rows its
  dataset reads (data.pipeline.global_rows), so the global batch of a step is the same
  on any topology."""
  local, p = jax.local_device_count(), jax.process_index()
  index_map = sharding.addressable_devices_indices_map((jax.device_count(),))
  rows = sorted(index[0].start or 0 for index in index_map.values())
  if rows != list(range(p * local, (p + 1) * local)):
    raise RuntimeError(f'Process {p} holds batch rows {rows} of the device mesh, not '
                       f'its block [{p * local}, {(p + 1) * local}): the mesh must list '
                       'devices in process order with the same count per process.')


def _jit_parallel(train_step_fn, eval_step_fn, fsdp: int = 1) -> Parallel:
  mesh = make_mesh(fsdp=fsdp)
  repl = NamedSharding(mesh, P())
  data = NamedSharding(mesh, P(mesh.axis_names))    # batch rows over every device.
  check_process_rows(data)

  def sharding_for(shape):
    return NamedSharding(mesh, fsdp_spec(shape, fsdp))

  def shardings(tree):
    return jax.tree.map(lambda x: sharding_for(tuple(np.shape(x))), tree)

  def put_state(state):   # a copy: the step donates its input state.
    return jax.device_put(jax.tree.map(lambda x: jnp.array(x, copy=True), state),
                          shardings(state))

  def put_batch(batch):
    return jax.tree.map(lambda x: jax.make_array_from_process_local_data(data, x), batch)

  compiled = {}     # the jitted steps, made on first use (shardings follow the state).

  def jitted_train(state):
    if 'train' not in compiled:
      state_sh = shardings(state)
      compiled['train'] = jax.jit(train_step_fn, in_shardings=(state_sh, data, repl),
                                  out_shardings=(state_sh, repl), donate_argnums=0)
    return compiled['train']

  def train(state, batch, rng):
    return jitted_train(state)(state, batch, rng)
  # `par.train_step.lower(state, batch, rng)`: as jax.jit's (compile-only memory checks).
  train.lower = lambda state, batch, rng: jitted_train(state).lower(state, batch, rng)

  def predict(state, batch):
    if 'eval' not in compiled:
      compiled['eval'] = jax.jit(eval_step_fn, out_shardings=data,
                                 in_shardings=(shardings(state.params), data))
    dev = put_batch(batch)
    probs = compiled['eval'](state.params, _eval_inputs(dev))
    return _gather({'probs': probs, 'label': dev['label'], 'mask': dev['mask']})

  return Parallel('jit' if fsdp == 1 else f'jit, fsdp={fsdp}', put_state, lambda s: s,
                  put_batch, train, predict, sharding_for)


def _eval_inputs(batch) -> dict:
  """What the eval step reads of a batch: 'video', and 'index' where the dataset gives it
  (dataset.py)."""
  return {k: batch[k] for k in ('video', 'index') if k in batch}


def _pmap_parallel(train_step_fn, eval_step_fn) -> Parallel:
  n = jax.local_device_count()
  # Leading axis = local device: pmap takes such arrays without another transfer.
  local = NamedSharding(Mesh(np.asarray(jax.local_devices()), (PMAP_AXIS,)), P(PMAP_AXIS))

  def put_state(state):   # placed as pmap places it, so the first step donates it too.
    return jax.tree.map(lambda x: jax.device_put(jnp.broadcast_to(x, (n,) + x.shape), local),
                        state)

  def get_state(state):
    return jax.tree.map(lambda x: x[0], state)

  def put_batch(batch):
    def shard(x):
      x = np.asarray(x)
      if x.shape[0] % n:
        raise ValueError(f'batch of {x.shape[0]} examples does not split over {n} '
                         'local devices.')
      return jax.device_put(x.reshape((n, x.shape[0] // n) + x.shape[1:]), local)
    return jax.tree.map(shard, batch)

  train_p = jax.pmap(functools.partial(train_step_fn, axis_name=PMAP_AXIS),
                     axis_name=PMAP_AXIS, in_axes=(0, 0, None), donate_argnums=0)

  def train(state, batch, rng):
    state, metrics = train_p(state, batch, rng)
    return state, jax.tree.map(lambda x: x[0], metrics)

  evaluate = jax.pmap(eval_step_fn, axis_name=PMAP_AXIS)

  def predict(state, batch):
    dev = put_batch(batch)
    probs = evaluate(state.params, _eval_inputs(dev))
    out = {'probs': probs, 'label': dev['label'], 'mask': dev['mask']}
    out = jax.tree.map(lambda x: np.asarray(x).reshape((-1,) + x.shape[2:]), out)
    if jax.process_count() > 1:
      out = multihost_utils.process_allgather(out, tiled=True)
    return out

  one = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  return Parallel('pmap', put_state, get_state, put_batch, train, predict,
                  lambda shape: one)
