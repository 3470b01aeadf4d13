"""Two JAX processes through the real CLI (`jax.distributed` on localhost, one CPU device
each, gloo collectives: jax 0.10's default CPU implementation) train exactly as one
process with two devices: the same final params and test results, checkpoints written
once and readable by one process, and a mid-run checkpoint resumed 2 -> 1 and 1 -> 2
processes ends where the uninterrupted run ends. Also the workdir lock, through the CLI.

Tolerance: the gradient mean is a sum of the same two per-device partial sums in both
topologies (one all-reduce of two operands is exact and order-free in IEEE float), so
the runs agree bit for bit here; PARAM_TOLERANCE leaves room for XLA compiling the
1-process and the 2-process programs with different fusions (float32 rounding over
NUM_STEPS AdamW updates at learning rate <= 1e-3).
"""
import json
import os
import shutil
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

from train_helpers import final_params

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG = os.path.join(REPO, 'configs', 'synthetic', 'vivit_model1.py')
NUM_STEPS, MID = 8, 4
PARAM_TOLERANCE = 1e-6
FLAGS = [f'--config.trainer.num_train_steps={NUM_STEPS}',
         '--config.trainer.batch_size=8', '--config.trainer.eval_batch_size=8',
         f'--config.trainer.checkpoint_every={MID}', f'--config.trainer.log_every={MID}',
         f'--config.trainer.eval_every={NUM_STEPS}', '--config.trainer.keep_checkpoints=3',
         '--config.dataset.num_eval_examples=32']


def _env(devices):
  env = dict(os.environ, JAX_PLATFORMS='cpu',
             XLA_FLAGS=f'--xla_force_host_platform_device_count={devices}')
  env['PYTHONPATH'] = os.pathsep.join(filter(None, [REPO, env.get('PYTHONPATH')]))
  return env


def _free_port():
  with socket.socket() as s:
    s.bind(('localhost', 0))
    return s.getsockname()[1]


def start(workdir, processes=1, *extra, config=f'{CONFIG}:tiny'):
  """Starts the CLI on `processes` processes (one CPU device each), or one process with
  two devices (processes=1). Returns the Popen objects."""
  cmd = [sys.executable, '-m', 'vivit_jax.main', f'--workdir={workdir}', f'--config={config}',
         *FLAGS, *extra]
  if processes == 1:
    return [subprocess.Popen(cmd, cwd=REPO, env=_env(2), stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)]
  address = f'--coordinator_address=localhost:{_free_port()}'
  return [subprocess.Popen(cmd + [address, f'--num_processes={processes}',
                                  f'--process_id={i}'],
                           cwd=REPO, env=_env(1), stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
          for i in range(processes)]


def finish(procs, timeout=240):
  """Waits for the processes; asserts they succeeded; returns their outputs."""
  outs = []
  for p in procs:
    out, _ = p.communicate(timeout=timeout)
    assert p.returncode == 0, out[-4000:]
    outs.append(out)
  return outs


def checkpoint_steps(workdir):
  return sorted(int(d) for d in os.listdir(os.path.join(workdir, 'checkpoints'))
                if d.isdigit())


def max_delta(a, b):
  return max(float(np.abs(np.asarray(x) - np.asarray(y)).max())
             for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def rewind(src, dst):
  """A copy of workdir `src` as it was after step MID: later checkpoints, best/ and the
  end-of-run files removed."""
  shutil.copytree(src, dst)
  for step in checkpoint_steps(dst):
    if step > MID:
      shutil.rmtree(os.path.join(dst, 'checkpoints', str(step)))
  shutil.rmtree(os.path.join(dst, 'checkpoints', 'best'), ignore_errors=True)
  for name in ('eval_results.json', 'train_summary.json'):
    os.remove(os.path.join(dst, name))
  return dst


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
  """Workdirs of the uninterrupted runs: 'one' (1 process x 2 devices) and 'two'
  (2 processes x 1 device), run at the same time."""
  root = tmp_path_factory.mktemp('multihost')
  dirs = {'one': str(root / 'one'), 'two': str(root / 'two')}
  procs = {'one': start(dirs['one'], 1), 'two': start(dirs['two'], 2)}
  outs = {k: finish(p) for k, p in procs.items()}
  return dirs, outs


def test_two_processes_train_and_test_like_one_process_with_two_devices(runs):
  dirs, outs = runs
  step_one, one = final_params(dirs['one'])
  step_two, two = final_params(dirs['two'])     # read by this (one) process.
  assert step_one == step_two == NUM_STEPS
  delta = max_delta(one, two)
  print(f'max |dparam| 2 processes vs 1 process x 2 devices: {delta:.3g}')
  assert delta <= PARAM_TOLERANCE
  results = [json.load(open(os.path.join(dirs[k], 'eval_results.json'))) for k in dirs]
  for key in ('top1', 'top5', 'num_examples', 'num_views', 'step', 'confusion_matrix'):
    assert results[0][key] == results[1][key], key
  assert abs(results[0]['loss'] - results[1]['loss']) <= 1e-6
  # Each process says which it is; only process 0 wrote; checkpoints written once.
  assert '[process 1/2]' in outs['two'][1] and '[process 0/2]' in outs['two'][0]
  assert checkpoint_steps(dirs['two']) == [MID, NUM_STEPS]
  assert sorted(os.listdir(os.path.join(dirs['two'], 'checkpoints'))) == [
      str(MID), str(NUM_STEPS), 'best']
  events = [f for f in os.listdir(dirs['two']) if f.startswith('events.out')]
  assert len(events) == 2         # process 0's train and test writers, nobody else's.
  assert not os.path.exists(os.path.join(dirs['two'], '.lock'))   # released at exit.


def test_resume_on_another_topology_ends_like_the_uninterrupted_run(runs, tmp_path):
  """Step MID of the 2-process run resumed on 1 process (2 devices), and step MID of the
  1-process run resumed on 2 processes, end with the uninterrupted run's params. The
  first finds a lock of a dead process of this host (taken over), the second a lock of
  another host (taken with --force_unlock)."""
  dirs, _ = runs
  to_one = rewind(dirs['two'], str(tmp_path / 'two_to_one'))
  to_two = rewind(dirs['one'], str(tmp_path / 'one_to_two'))
  gone = subprocess.Popen(['true'])
  gone.wait()
  _write_lock(to_one, socket.gethostname(), gone.pid)
  _write_lock(to_two, 'another-host', 1)
  no_test = '--config.trainer.test_at_end=False'
  procs = [start(to_one, 1, no_test), start(to_two, 2, no_test, '--force_unlock')]
  (out_one,), (out_two, _) = [finish(p) for p in procs]
  assert f'Taking over the lock of {to_one}: its pid {gone.pid}' in out_one
  assert 'taking over the lock' in out_two and 'another-host' in out_two
  _, uninterrupted = final_params(dirs['one'])
  for workdir in (to_one, to_two):
    assert f'Resuming from {workdir}/checkpoints/{MID}' in (out_one + out_two)
    step, params = final_params(workdir)
    delta = max_delta(params, uninterrupted)
    print(f'max |dparam| resumed {os.path.basename(workdir)}: {delta:.3g}')
    assert step == NUM_STEPS and delta <= PARAM_TOLERANCE
    assert not os.path.exists(os.path.join(workdir, '.lock'))


def test_a_workdir_in_use_refuses_training_and_allows_eval(runs, tmp_path):
  """A lock held by a live process of this host (this test's): a training run stops
  with one line naming the host and pid; evaluation runs (read-only)."""
  dirs, _ = runs
  workdir = shutil.copytree(dirs['one'], str(tmp_path / 'in_use'))
  os.remove(os.path.join(workdir, 'eval_results.json'))
  _write_lock(workdir, socket.gethostname(), os.getpid())
  train = start(workdir, 1, f'--config.trainer.num_train_steps={NUM_STEPS + 4}')[0]
  evaluate = start(workdir, 1, '--mode=eval')
  out, _ = train.communicate(timeout=240)
  assert train.returncode == 2, out[-3000:]
  errors = [line for line in out.splitlines() if line.startswith('error:')]
  assert errors == [f'error: workdir {workdir} is in use by the run of pid {os.getpid()} '
                    f'on host {socket.gethostname()} (started 2026-01-01T00:00:00+00:00; '
                    f'lock file {workdir}/.lock); use another --workdir or stop that '
                    'run.'], out[-3000:]
  finish(evaluate)
  assert json.load(open(os.path.join(workdir, 'eval_results.json')))['step'] == NUM_STEPS
  assert checkpoint_steps(workdir) == [MID, NUM_STEPS]     # nothing trained.
  assert json.load(open(os.path.join(workdir, '.lock')))['pid'] == os.getpid()


def _write_lock(workdir, host, pid):
  with open(os.path.join(workdir, '.lock'), 'w') as f:
    json.dump({'host': host, 'pid': pid, 'started': '2026-01-01T00:00:00+00:00'}, f)


def test_multi_view_eval_on_two_processes_equals_one(runs, tmp_path):
  """`--mode=eval` with 2 clips x 3 crops per video on 2 processes (each evaluates its
  shard of the test split) writes the results of one process with two devices."""
  dirs, _ = runs
  views = ['--mode=eval', '--config.dataset.num_test_clips=2',
           '--config.dataset.num_test_crops=3']
  workdirs = {n: shutil.copytree(dirs['two'], str(tmp_path / n)) for n in ('one', 'two')}
  for w in workdirs.values():
    os.remove(os.path.join(w, 'eval_results.json'))
  finish(start(workdirs['one'], 1, *views) + start(workdirs['two'], 2, *views))
  one, two = [json.load(open(os.path.join(workdirs[n], 'eval_results.json')))
              for n in ('one', 'two')]
  assert one['num_views'] == two['num_views'] == 6 and one['num_examples'] == 32
  for key in ('top1', 'top5', 'num_examples', 'step', 'confusion_matrix'):
    assert one[key] == two[key], key
  assert abs(one['loss'] - two['loss']) <= 1e-6


def test_masked_pretraining_on_two_processes_equals_one(tmp_path):
  """Masked pretraining (configs/synthetic/videomae.py) through the same multi-host
  path: the masks are keyed by the step and the row of the global batch, so both
  topologies draw the same masks and end with the same params and test loss."""
  config = os.path.join(REPO, 'configs', 'synthetic', 'videomae.py') + ':tiny'
  dirs = {'one': str(tmp_path / 'one'), 'two': str(tmp_path / 'two')}
  procs = {'one': start(dirs['one'], 1, config=config),
           'two': start(dirs['two'], 2, config=config)}
  outs = {k: finish(p) for k, p in procs.items()}
  assert '[process 1/2]' in outs['two'][1]
  (step_one, one), (step_two, two) = final_params(dirs['one']), final_params(dirs['two'])
  assert step_one == step_two == NUM_STEPS and 'decoder_pred' in one
  delta = max_delta(one, two)
  print(f'pretraining: max |dparam| 2 processes vs 1 process x 2 devices: {delta:.3g}')
  assert delta <= PARAM_TOLERANCE
  results = [json.load(open(os.path.join(dirs[k], 'eval_results.json'))) for k in dirs]
  assert results[0]['num_examples'] == results[1]['num_examples'] == 32
  assert abs(results[0]['reconstruction_loss'] - results[1]['reconstruction_loss']) <= 1e-6
