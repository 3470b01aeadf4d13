r"""Train or evaluate a video model.

  python -m vivit_jax.main --config=configs/synthetic/vivit_model1.py --workdir=/tmp/m1
  python -m vivit_jax.main --config=configs/synthetic/vivit_model1.py --workdir=/tmp/m1 \
      --mode=eval [--checkpoint=best|latest|PATH]

Overrides: `--config=x.py:arg`, `--config.model.num_layers=2`. Rerunning a training
command in the same workdir resumes from its newest checkpoint (on any number of
processes and devices: the data order depends on the step only). A workdir belongs to
one training run (DIR/.lock, see train/lock.py); `--mode=eval` may read one in use.

Multi-host: one process per host (or per accelerator) with the same flags, plus
`--coordinator_address=HOST:PORT --num_processes=N --process_id=I`; under SLURM, Open
MPI, Cloud TPU or Kubernetes these are detected (`jax.distributed.initialize()`), see
README "Multi-host". Log lines then start with `[process i/N]`. A config that cannot work
(a bad field, a dataset split the run needs but the data does not have) stops before any
compute with one line `error: ...` and exit status 2 (`--traceback` shows where).
"""
from __future__ import annotations

import logging as std_logging
import os
from typing import Optional

import jax
from absl import app, flags, logging
from ml_collections import config_flags

from vivit_jax import cli, train
from vivit_jax.convert import resize
from vivit_jax.errors import ConfigError
from vivit_jax.train import evaluate, lock, trainer

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Config file (get_config).',
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Run directory (checkpoints, logs).')
_MODE = flags.DEFINE_enum('mode', 'train', ['train', 'eval'], 'What to do.')
_CHECKPOINT = flags.DEFINE_string(
    'checkpoint', None, "--mode=eval: 'latest' (default), 'best', or a checkpoint path.")
_NUM_FRAMES = flags.DEFINE_integer(
    'num_frames', None, "--mode=eval: test on clips of this many frames (default: the "
    "config's); the checkpoint's position embeddings are resized.")
_CROP_SIZE = flags.DEFINE_integer(
    'crop_size', None, "--mode=eval: test on crops of this side in pixels (default: the "
    "config's).")
_JAX_DISTRIBUTED = flags.DEFINE_bool(
    'jax_distributed', None,
    'Call jax.distributed.initialize() (multi-host), which detects SLURM, Open MPI, '
    'Cloud TPU and Kubernetes (pass it on a GCE TPU pod slice). Default: only when the '
    'environment names a coordinator (JAX_COORDINATOR_ADDRESS) or a multi-process '
    'SLURM/Open MPI/GKE TPU launch.')

_COORDINATOR = flags.DEFINE_string(
    'coordinator_address', None, 'Multi-host: HOST:PORT of process 0 (any launcher; '
    'SLURM, Open MPI, Cloud TPU and Kubernetes are detected without it).')
_NUM_PROCESSES = flags.DEFINE_integer(
    'num_processes', None, 'Multi-host: number of processes (with --coordinator_address).')
_PROCESS_ID = flags.DEFINE_integer(
    'process_id', None, 'Multi-host: this process, 0 .. num_processes - 1.')
_FORCE_UNLOCK = flags.DEFINE_bool(
    'force_unlock', False, "Train even if DIR/.lock names a run on another host (whose "
    "liveness this host cannot check); a live run on this host is always refused.")

flags.mark_flags_as_required(['config', 'workdir'])

_MULTIHOST_ENV = ('JAX_COORDINATOR_ADDRESS', 'COORDINATOR_ADDRESS')
_CPU_COUNT_FLAG = '--xla_force_host_platform_device_count'


def xla_flags_for_cpu_devices(count: int, xla_flags: str, cores: int) -> str:
  """XLA_FLAGS that split the host CPU into min(count, cores) XLA devices, so training
  runs data-parallel over the cores (faster on CPU than one device using them all).
  Unchanged when count <= 1 or `xla_flags` already sets a device count (an
  explicit setting wins). Accelerator backends are unaffected: the flag only shapes the
  CPU platform."""
  if not isinstance(count, int) or _CPU_COUNT_FLAG in xla_flags:
    return xla_flags        # (a bad count is refused by validate_config.)
  count = min(count, cores)
  if count <= 1:
    return xla_flags
  return f'{xla_flags} {_CPU_COUNT_FLAG}={count}'.strip()


def want_distributed(flag, environ=os.environ) -> bool:
  """Whether to call jax.distributed.initialize(): the --jax_distributed flag if given,
  else only when the environment names a coordinator or a multi-process launch."""
  if flag is not None:
    return bool(flag)
  if any(environ.get(k) for k in _MULTIHOST_ENV):
    return True
  if ',' in environ.get('TPU_WORKER_HOSTNAMES', ''):   # a multi-host TPU slice (GKE).
    return True
  for key in ('SLURM_NTASKS', 'OMPI_COMM_WORLD_SIZE'):   # SLURM / Open MPI launches.
    try:
      if int(environ.get(key) or 1) > 1:
        return True
    except ValueError:
      pass
  return False


def distributed_args(coordinator_address, num_processes, process_id) -> Optional[dict]:
  """jax.distributed.initialize() arguments of the --coordinator_address/--num_processes/
  --process_id flags; None when none is given. Raises ConfigError (one line) when
  they are incomplete or out of range."""
  given = (coordinator_address, num_processes, process_id)
  if all(v is None for v in given):
    return None
  if None in given:
    raise ConfigError(
        f'--coordinator_address={coordinator_address!r} --num_processes={num_processes!r} '
        f'--process_id={process_id!r} are invalid: expected all three (or none, to let '
        'jax.distributed detect SLURM/Open MPI/TPU/Kubernetes).')
  if num_processes < 1 or not 0 <= process_id < num_processes:
    raise ConfigError(f'--process_id={process_id} is invalid: expected 0 <= process_id < '
                      f'--num_processes={num_processes}.')
  return dict(coordinator_address=coordinator_address, num_processes=num_processes,
              process_id=process_id)


def start_distributed(explicit: Optional[dict], flag, environ=os.environ) -> None:
  """Starts JAX's multi-controller runtime: with the explicit flags' arguments, else by
  detection when `want_distributed(flag)`; then labels log lines `[process i/N]`."""
  if explicit is not None:
    jax.distributed.initialize(**explicit)
  elif want_distributed(flag, environ):
    jax.distributed.initialize()
  if jax.process_count() > 1:
    _label_logs(f'[process {jax.process_index()}/{jax.process_count()}] ')


def _label_logs(prefix: str) -> None:
  """Starts every log line (absl's handler: ours, orbax's, JAX's) with `prefix`."""
  class _Prefix(std_logging.Filter):
    def filter(self, record):
      if not getattr(record, '_vivit_prefixed', False):
        record.msg, record._vivit_prefixed = prefix + str(record.msg), True
      return True
  logging.get_absl_handler().addFilter(_Prefix())


def _quiet_orbax():
  """Drops orbax's per-save INFO lines (dozens per checkpoint) unless -v 1 or more."""
  if logging.get_verbosity() >= logging.DEBUG:
    return
  class _Filter(std_logging.Filter):
    def filter(self, record):
      return record.levelno > std_logging.INFO or '/orbax/' not in record.pathname
  logging.get_absl_handler().addFilter(_Filter())


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  _quiet_orbax()
  config, workdir = _CONFIG.value, _WORKDIR.value
  train.validate(config, for_training=_MODE.value == 'train')   # before any compute.
  sizes = {'num_frames': _NUM_FRAMES.value, 'crop_size': _CROP_SIZE.value}
  for flag, value in sizes.items():
    if value is not None and _MODE.value != 'eval':
      raise ConfigError(f'--{flag}={value} is invalid with --mode={_MODE.value}: it sets '
                        'the test clip size of --mode=eval (training uses '
                        f'--config.dataset.{flag}).')
  resize.clip_config(config, **sizes)   # a size the model cannot take: refused here.
  explicit = distributed_args(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
  # Before JAX's backend starts (its CPU device count is fixed then).
  os.environ['XLA_FLAGS'] = xla_flags_for_cpu_devices(
      config.trainer.get('cpu_devices', 1), os.environ.get('XLA_FLAGS', ''),
      len(os.sched_getaffinity(0)))
  # Keep TensorFlow (used by clu and tf.data) off the accelerators.
  import tensorflow as tf
  tf.config.set_visible_devices([], 'GPU')
  start_distributed(explicit, _JAX_DISTRIBUTED.value)
  logging.info('JAX process %d/%d, devices: %s', jax.process_index(),
               jax.process_count(), jax.devices())

  if _MODE.value == 'train':
    with lock.hold(workdir, force=_FORCE_UNLOCK.value):   # one training run per workdir.
      result = trainer.train_and_evaluate(config, workdir)
      finished = (result['step'] >= config.trainer.num_train_steps
                  and not result['preempted'])
      if finished and config.trainer.get('test_at_end', True):
        evaluate.evaluate(config, workdir)   # multi-view test of the final checkpoint.
  else:   # reads the workdir only: allowed while a training run holds it.
    evaluate.evaluate(config, workdir, checkpoint=_CHECKPOINT.value,
                      num_frames=_NUM_FRAMES.value, crop_size=_CROP_SIZE.value)


if __name__ == '__main__':
  cli.run(main)
