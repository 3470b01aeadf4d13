"""Shared test set-up: 8 forced CPU devices (set before jax is imported anywhere)."""
import os
import sys
import tempfile

_FLAG = '--xla_force_host_platform_device_count=8'
if _FLAG not in os.environ.get('XLA_FLAGS', ''):
  os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') + ' ' + _FLAG).strip()
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')   # quiet TensorFlow (clu writers).
# A fresh persistent compilation cache per session, inherited by the subprocesses of
# test_main.py: the same programs compile once instead of once per test/process.
os.environ.setdefault('JAX_COMPILATION_CACHE_DIR', tempfile.mkdtemp(prefix='vivit_jax_xla_'))
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0.2')

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
  sys.path.insert(0, REPO)
