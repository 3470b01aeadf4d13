"""`python -m vivit_jax.main` in subprocesses: SIGTERM/SIGKILL and resume give exactly
the parameters of an uninterrupted run; --mode=eval writes eval_results.json."""
import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from train_helpers import final_params, synthetic_config
from vivit_jax import errors
from vivit_jax import main as main_lib
from vivit_jax.train import trainer

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG = os.path.join(REPO, 'configs', 'synthetic', 'vivit_model1.py')
NUM_STEPS = 200
# Same run in process and in the subprocesses (each flag mirrored in `reference`).
FLAGS = [f'--config={CONFIG}:tiny', f'--config.trainer.num_train_steps={NUM_STEPS}',
         '--config.trainer.checkpoint_every=20', '--config.trainer.eval_every=100',
         '--config.trainer.log_every=20', '--config.trainer.keep_checkpoints=2',
         # rngs in use, so resuming must rebuild them from the step, not the process.
         '--config.model.dropout_rate=0.1', '--config.trainer.mixup_alpha=0.4']


def start(workdir, *extra):
  return subprocess.Popen(
      [sys.executable, '-m', 'vivit_jax.main', f'--workdir={workdir}', *FLAGS, *extra],
      cwd=REPO, env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
      text=True)


def checkpoint_steps(workdir):
  root = os.path.join(workdir, 'checkpoints')
  if not os.path.isdir(root):
    return []
  return sorted(int(d) for d in os.listdir(root) if d.isdigit())


def wait_for_checkpoint_after(proc, workdir, step, timeout=120):
  """Waits until a finished checkpoint newer than `step` exists (or the run ends)."""
  deadline = time.time() + timeout
  while time.time() < deadline and proc.poll() is None:
    if any(s > step for s in checkpoint_steps(workdir)):
      return
    time.sleep(0.02)


def finish(proc, timeout=300):
  out, _ = proc.communicate(timeout=timeout)
  return proc.returncode, out


@pytest.fixture(scope='module')
def reference(tmp_path_factory):
  """The uninterrupted run, in process."""
  config = synthetic_config(num_train_steps=NUM_STEPS, checkpoint_every=20,
                            eval_every=100, log_every=20, keep_checkpoints=2,
                            mixup_alpha=0.4)
  config.model.dropout_rate = 0.1
  config.trainer.async_checkpointing = True     # as in main.
  workdir = str(tmp_path_factory.mktemp('reference'))
  trainer.train_and_evaluate(config, workdir)
  return workdir


def test_sigterm_then_sigkill_then_resume_matches_uninterrupted(tmp_path, reference):
  workdir = str(tmp_path / 'interrupted')
  # 1. SIGTERM (preemption) after the first checkpoint: saves where it is, exits 0.
  proc = start(workdir)
  wait_for_checkpoint_after(proc, workdir, 0)
  proc.send_signal(signal.SIGTERM)
  rc, out = finish(proc)
  assert rc == 0, out[-3000:]
  preempted_at = checkpoint_steps(workdir)[-1]
  assert 20 <= preempted_at < NUM_STEPS, out[-3000:]
  assert 'Preempted' in out

  # 2. Resume, then SIGKILL (no chance to save) after its next checkpoint.
  proc = start(workdir)
  wait_for_checkpoint_after(proc, workdir, preempted_at)
  proc.send_signal(signal.SIGKILL)
  rc, out = finish(proc)
  assert rc == -signal.SIGKILL, 'the run ended before it could be killed: ' + out[-2000:]
  killed_after = checkpoint_steps(workdir)[-1]
  assert preempted_at < killed_after < NUM_STEPS

  # 3. Resume to the end.
  rc, out = finish(start(workdir))
  assert rc == 0, out[-3000:]
  assert f'Resuming from {os.path.join(workdir, "checkpoints")}' in out

  step, params = final_params(workdir)
  ref_step, ref_params = final_params(reference)
  assert step == ref_step == NUM_STEPS
  jax.tree.map(np.testing.assert_array_equal, params, ref_params)


def test_eval_mode_writes_results(tmp_path, reference):
  # Two temporal views per video at test time.
  proc = start(reference, '--mode=eval', '--checkpoint=best',
               '--config.dataset.num_test_clips=2')
  rc, out = finish(proc)
  assert rc == 0, out[-3000:]
  with open(os.path.join(reference, 'eval_results.json')) as f:
    results = json.load(f)
  assert results['num_views'] == 2 and results['num_examples'] == 64
  assert 0.0 <= results['top1'] <= results['top5'] <= 1.0
  assert results['step'] == ckpt_step(reference, 'best')
  cm = np.array(results['confusion_matrix'])
  assert cm.shape == (10, 10) and cm.sum() == 64
  assert np.isclose(np.trace(cm) / 64, results['top1'])
  assert len(results['per_class_accuracy']) == 10


def ckpt_step(workdir, which):
  from vivit_jax.train import checkpoint as ckpt_lib
  return ckpt_lib.resolve_checkpoint(workdir, which)[1]


def test_distributed_only_when_asked():
  assert not main_lib.want_distributed(None, {})
  assert not main_lib.want_distributed(None, {'SLURM_NTASKS': '1'})
  assert main_lib.want_distributed(None, {'SLURM_NTASKS': '4'})
  assert main_lib.want_distributed(None, {'JAX_COORDINATOR_ADDRESS': '10.0.0.1:1234'})
  assert main_lib.want_distributed(True, {})
  assert not main_lib.want_distributed(False, {'JAX_COORDINATOR_ADDRESS': 'x:1'})
  assert main_lib.want_distributed(None, {'TPU_WORKER_HOSTNAMES': 'a,b'})
  assert not main_lib.want_distributed(None, {'TPU_WORKER_HOSTNAMES': 'a'})


def test_cpu_devices_flag_is_capped_and_never_overrides_an_explicit_count():
  flag = '--xla_force_host_platform_device_count'
  assert main_lib.xla_flags_for_cpu_devices(2, '', cores=2) == f'{flag}=2'
  assert main_lib.xla_flags_for_cpu_devices(8, '--xla_foo', cores=2) == f'--xla_foo {flag}=2'
  assert main_lib.xla_flags_for_cpu_devices(2, '', cores=1) == ''
  assert main_lib.xla_flags_for_cpu_devices(1, '', cores=4) == ''
  assert main_lib.xla_flags_for_cpu_devices(4, f'{flag}=8', cores=4) == f'{flag}=8'


def test_cpu_devices_splits_the_host_for_training(tmp_path):
  """trainer.cpu_devices reaches XLA when main starts JAX: the run trains data-parallel
  on that many CPU devices (the batch split over them)."""
  env = {k: v for k, v in os.environ.items() if k != 'XLA_FLAGS'}
  expected = min(2, len(os.sched_getaffinity(0)))
  proc = subprocess.run(
      [sys.executable, '-m', 'vivit_jax.main', f'--workdir={tmp_path}',
       f'--config={CONFIG}:tiny', '--config.trainer.num_train_steps=2',
       '--config.trainer.cpu_devices=2', '--config.trainer.test_at_end=False'],
      cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert f'on {expected} devices' in proc.stderr


def test_distributed_args_need_all_three_flags():
  assert main_lib.distributed_args(None, None, None) is None
  assert main_lib.distributed_args('h:1', 2, 1) == dict(
      coordinator_address='h:1', num_processes=2, process_id=1)
  with pytest.raises(errors.ConfigError, match='expected all three'):
    main_lib.distributed_args('h:1', 2, None)
  with pytest.raises(errors.ConfigError, match=r'--process_id=2 is invalid.*< '
                     '--num_processes=2'):
    main_lib.distributed_args('h:1', 2, 2)
