"""Builds the C++ XLA:CPU kernels beside this file on first use and caches the libraries.

`build(source, march, extra_args)` compiles one `<kernel>.cc` file (with the `*.h` here) with
the machine's C++ compiler (`CXX`, else g++/c++/clang++) against jax's XLA FFI headers into
`cache_dir()/<name>-<hash>.so`; the hash covers the source, flags, compiler version, jax
version, machine and CPU (what `-march=native` depends on), so a changed source, compiler
or CPU rebuilds. A build takes a few seconds; concurrent builders (pytest workers) each
write their own temporary file and rename it into place.

Environment (see `ops/switches.py`): `VIVIT_JAX_CPU_KERNEL=0` turns every C++ kernel off
(the models then use XLA's); `VIVIT_JAX_CACHE_DIR` moves the cache.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import pathlib
import platform
import shutil
import subprocess
import tempfile
from typing import Callable, Mapping, Optional, Sequence

import jax
from absl import logging

from vivit_jax.ops import switches

CSRC = pathlib.Path(__file__).parent
FLAGS = ('-O3', '-std=c++17', '-shared', '-fPIC', '-fno-math-errno', '-ffp-contract=fast',
         '-w')


class KernelUnavailable(RuntimeError):
  """A C++ kernel could not be built or loaded (the message says why)."""


def check_enabled():
  """Raises KernelUnavailable when the C++ kernels are turned off or cannot exist."""
  if not switches.cpu_kernels_enabled():
    raise KernelUnavailable('turned off by VIVIT_JAX_CPU_KERNEL=0.')
  if not hasattr(jax, 'ffi'):
    raise KernelUnavailable(f'jax {jax.__version__} has no jax.ffi.')


def _compiler() -> str:
  for name in (os.environ.get('CXX'), 'g++', 'c++', 'clang++'):
    if name and shutil.which(name):
      return name
  raise KernelUnavailable('no C++ compiler found (set CXX, or install g++).')


def _cpu_identity() -> str:
  """What `-march=native` depends on: the CPU's model and feature flags."""
  try:
    lines = pathlib.Path('/proc/cpuinfo').read_text().splitlines()
    wanted = [l for l in lines if l.split(':')[0].strip() in ('model name', 'flags',
                                                             'Features', 'CPU part')]
    return '\n'.join(sorted(set(wanted)))
  except OSError:
    return platform.processor()


def build(source: str, march: str = 'native', extra_args: Sequence[str] = ()) -> pathlib.Path:
  """Compiles `{source}` (beside this file) for `-march={march}` (plus `extra_args`, e.g. libraries to
  link) into the cache, unless already there; returns the library's path."""
  check_enabled()
  compiler = _compiler()
  path = CSRC / source
  include = jax.ffi.include_dir()
  flags = (*FLAGS, f'-march={march}')
  version = subprocess.run([compiler, '--version'], capture_output=True, text=True).stdout
  headers = [h.read_text() for h in sorted(CSRC.glob('*.h'))]
  key = hashlib.sha256('\0'.join([
      path.read_text(), *headers, ' '.join(flags), ' '.join(extra_args), version, jax.__version__,
      include, platform.machine(), _cpu_identity()]).encode()).hexdigest()[:16]
  target = switches.cache_dir() / f'{path.stem}-{key}.so'
  if target.exists():
    return target
  target.parent.mkdir(parents=True, exist_ok=True)
  with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
    built = pathlib.Path(tmp) / target.name
    cmd = [compiler, *flags, '-isystem', include, str(path), '-o', str(built), *extra_args]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
      raise KernelUnavailable(f'`{" ".join(cmd)}` failed (exit {result.returncode}): '
                              f'{result.stderr[-2000:]}')
    os.replace(built, target)   # atomic: concurrent builders each write their own file.
  return target


# Libraries whose handlers this process registered, by target name: XLA refuses a second
# registration of a name with other handler addresses (a rebuilt source, another cache).
_REGISTERED: dict[str, ctypes.CDLL] = {}


def register(path: pathlib.Path, targets: Mapping[str, str]) -> ctypes.CDLL:
  """Loads the library at `path` and registers each XLA FFI handler symbol as its CPU
  custom-call target ({target name: symbol}); where this process already registered
  these targets, returns that library instead. Raises KernelUnavailable."""
  if all(t in _REGISTERED for t in targets):
    return _REGISTERED[next(iter(targets))]
  try:
    lib = ctypes.cdll.LoadLibrary(str(path))
    for target, symbol in targets.items():
      jax.ffi.register_ffi_target(target, jax.ffi.pycapsule(getattr(lib, symbol)),
                                  platform='cpu')
      _REGISTERED[target] = lib
  except (OSError, AttributeError, ValueError, jax.errors.JaxRuntimeError) as e:
    raise KernelUnavailable(f'loading {path} failed: {e}') from e
  return lib


def failure(load: Callable[[], object], what: str) -> Optional[str]:
  """None when `load()` succeeds, else why not, logged as a warning that `what` (a kernel)
  is unavailable and the models use XLA's instead."""
  try:
    load()
  except (KernelUnavailable, OSError, subprocess.SubprocessError) as e:
    logging.warning('%s unavailable, using XLA instead: %s', what, e)
    return str(e)
  return None
