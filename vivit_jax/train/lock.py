"""A workdir belongs to one training run: `DIR/.lock`, held while a run trains there.

The lock is a JSON file {host, pid, started (UTC, ISO 8601), processes}, created
atomically (a hard link of a complete temporary file, so nobody reads a half-written
lock) by process 0 of the run and removed when the run ends. A second run on the
workdir is refused with one line naming the host and pid that hold it:

- held by a live process on this host: refused;
- held by a process of this host that no longer exists (killed, crashed): taken over,
  with a warning;
- held by another host: refused unless `force=True` (`--force_unlock`), because this
  host cannot tell whether that process is alive; a run there may still be writing.

Evaluation (`--mode=eval`) only reads the workdir and takes no lock. In a multi-process
run every process learns process 0's outcome, so all start or all stop.
"""
from __future__ import annotations

import contextlib
import datetime
import json
import os
import socket
from typing import Iterator, Optional

import jax
import numpy as np
from absl import logging
from jax.experimental import multihost_utils

from vivit_jax.errors import WorkdirInUseError

LOCK_FILE = '.lock'


def read_lock(workdir: str) -> Optional[dict]:
  """The lock of `workdir` ({host, pid, started, ...}), None if there is none; a lock
  that is not JSON reads as {'host': '?', 'pid': -1} (named, never silently taken)."""
  try:
    with open(os.path.join(workdir, LOCK_FILE)) as f:
      text = f.read()
  except FileNotFoundError:
    return None
  try:
    lock = json.loads(text)
    return {**lock, 'host': str(lock['host']), 'pid': int(lock['pid'])}
  except (ValueError, KeyError, TypeError):
    return {'host': '?', 'pid': -1, 'started': '?'}


def _alive(pid: int) -> bool:
  """Whether process `pid` exists on this host."""
  if pid <= 0:
    return False
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:      # exists, owned by another user.
    return True
  return True


def _describe(workdir: str, lock: dict) -> str:
  return (f'workdir {workdir} is in use by the run of pid {lock["pid"]} on host '
          f'{lock["host"]} (started {lock.get("started", "?")}; lock file '
          f'{os.path.join(workdir, LOCK_FILE)})')


def _create(path: str, content: dict) -> bool:
  """Creates `path` holding `content` if it does not exist; False if it does."""
  tmp = f'{path}.{socket.gethostname()}.{os.getpid()}.tmp'
  with open(tmp, 'w') as f:
    json.dump(content, f)
  try:
    os.link(tmp, path)       # atomic, and fails if `path` exists.
    return True
  except FileExistsError:
    return False
  except OSError:            # no hard links (e.g. a gcsfuse mount): exclusive create.
    try:
      with open(path, 'x') as f:
        json.dump(content, f)
      return True
    except FileExistsError:
      return False
  finally:
    os.remove(tmp)


def acquire(workdir: str, force: bool = False, processes: int = 1) -> dict:
  """Takes the lock of `workdir` for this process (see the module docstring); returns
  the lock written. Raises WorkdirInUseError when another run holds it."""
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, LOCK_FILE)
  host, pid = socket.gethostname(), os.getpid()
  mine = {'host': host, 'pid': pid, 'processes': processes,
          'started': datetime.datetime.now(datetime.timezone.utc).isoformat(
              timespec='seconds')}
  for _ in range(3):         # a lock removed or taken over meanwhile: look again.
    if _create(path, mine):
      return mine
    held = read_lock(workdir)
    if held is None:
      continue
    if held['host'] == host and held['pid'] == pid:
      return held            # this process holds it already.
    here = held['host'] == host
    if here and not _alive(held['pid']):
      logging.warning('Taking over the lock of %s: its pid %d on this host is gone '
                      '(an earlier run ended without releasing it).', workdir,
                      held['pid'])
    elif force and not here:
      logging.warning('--force_unlock: taking over the lock of %s held by pid %d on '
                      'host %s.', workdir, held['pid'], held['host'])
    else:
      hint = '' if here else '; if no run is using it, pass --force_unlock'
      raise WorkdirInUseError(_describe(workdir, held) +
                              '; use another --workdir or stop that run' + hint + '.')
    if read_lock(workdir) == held:   # still the lock judged above (not a new one).
      with contextlib.suppress(FileNotFoundError):
        os.remove(path)
  held = read_lock(workdir) or {'host': '?', 'pid': -1}
  raise WorkdirInUseError(_describe(workdir, held) +
                          ': it changed hands while this run tried to take it.')


def release(workdir: str, lock: dict) -> None:
  """Removes the lock of `workdir` if it is still `lock` (not taken over since)."""
  held = read_lock(workdir)
  if held is not None and (held['host'], held['pid']) == (lock['host'], lock['pid']):
    with contextlib.suppress(FileNotFoundError):
      os.remove(os.path.join(workdir, LOCK_FILE))


@contextlib.contextmanager
def hold(workdir: str, force: bool = False) -> Iterator[None]:
  """Holds the lock of `workdir` for the body: process 0 takes it, and every process
  raises WorkdirInUseError if process 0 could not (so all start or all stop)."""
  error, lock = None, None
  if jax.process_index() == 0:
    try:
      lock = acquire(workdir, force=force, processes=jax.process_count())
    except WorkdirInUseError as e:
      error = e
  if jax.process_count() > 1:
    ok = multihost_utils.broadcast_one_to_all(np.int32(error is None))
    if not ok and error is None:
      held = read_lock(workdir) or {'host': '?', 'pid': -1}
      error = WorkdirInUseError(_describe(workdir, held) + ' (process 0 refused it).')
  if error is not None:
    raise error
  try:
    yield
  finally:
    if lock is not None:
      release(workdir, lock)
