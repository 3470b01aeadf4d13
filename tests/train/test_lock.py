"""The workdir lock (train/lock.py): taken, refused, taken over, released."""
import json
import os
import socket
import subprocess

import pytest

from vivit_jax.errors import WorkdirInUseError
from vivit_jax.train import lock


def _write(workdir, host, pid):
  with open(os.path.join(workdir, lock.LOCK_FILE), 'w') as f:
    json.dump({'host': host, 'pid': pid, 'started': 'then'}, f)


def test_acquire_writes_and_release_removes(tmp_path):
  held = lock.acquire(str(tmp_path))
  assert lock.read_lock(str(tmp_path)) == {**held, 'host': socket.gethostname(),
                                           'pid': os.getpid()}
  assert lock.acquire(str(tmp_path)) == held         # this process: already its own.
  lock.release(str(tmp_path), held)
  assert lock.read_lock(str(tmp_path)) is None
  assert not [f for f in os.listdir(tmp_path) if f.endswith('.tmp')]


def test_live_process_of_this_host_is_refused_even_with_force(tmp_path):
  _write(tmp_path, socket.gethostname(), os.getppid())
  for force in (False, True):
    with pytest.raises(WorkdirInUseError, match=rf'in use by the run of pid '
                       rf'{os.getppid()} on host {socket.gethostname()} \(started then'):
      lock.acquire(str(tmp_path), force=force)


def test_dead_process_of_this_host_is_taken_over(tmp_path, caplog):
  gone = subprocess.Popen(['true'])
  gone.wait()
  _write(tmp_path, socket.gethostname(), gone.pid)
  lock.acquire(str(tmp_path))
  assert lock.read_lock(str(tmp_path))['pid'] == os.getpid()
  assert f'its pid {gone.pid} on this host is gone' in caplog.text


def test_another_host_needs_force_unlock(tmp_path):
  _write(tmp_path, 'another-host', 1)
  with pytest.raises(WorkdirInUseError, match='pid 1 on host another-host.*pass '
                     '--force_unlock'):
    lock.acquire(str(tmp_path))
  lock.acquire(str(tmp_path), force=True)
  assert lock.read_lock(str(tmp_path))['host'] == socket.gethostname()


def test_unreadable_lock_is_named_not_taken(tmp_path):
  (tmp_path / lock.LOCK_FILE).write_text('{"host": "a"')       # cut short.
  with pytest.raises(WorkdirInUseError, match=r'pid -1 on host \?.*--force_unlock'):
    lock.acquire(str(tmp_path))


def test_a_released_lock_of_another_run_is_left_alone(tmp_path):
  mine = lock.acquire(str(tmp_path))
  _write(tmp_path, 'another-host', 7)             # taken over meanwhile (--force_unlock).
  lock.release(str(tmp_path), mine)
  assert lock.read_lock(str(tmp_path))['pid'] == 7
