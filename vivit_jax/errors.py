"""The project's error types: what a user can act on, raised with one line that names the
bad value and what was expected.

This module imports nothing from the package, so every layer (ops, models, data, config,
train, convert, the CLIs) can raise these without an import cycle. The CLIs print any
`VivitJaxError` as one line `error: <message>` with exit status 2 (`cli.run`).
"""
from __future__ import annotations


class VivitJaxError(Exception):
  """Base class of the errors a user can act on (a CLI prints them without traceback)."""


class ConfigError(VivitJaxError, ValueError):
  """A config field holds a value that cannot work; raised before any compute."""


class DataFailureError(VivitJaxError, RuntimeError):
  """A split's data cannot be read: more than `dataset.max_failure_fraction` of its
  reads failed, or a file/folder the config names is missing or unreadable."""


class ConversionError(VivitJaxError, ValueError):
  """A checkpoint cannot be mapped onto a vivit_jax tree; the message names the
  parameter (and both shapes where shapes are the problem)."""


class CheckpointNotFoundError(VivitJaxError, FileNotFoundError):
  """No checkpoint where one was named (a workdir, 'best', a step directory); the message
  names the place looked at."""


class NonFiniteError(VivitJaxError, FloatingPointError):
  """Training produced a NaN/Inf loss or parameters; names the step."""


class WorkdirInUseError(VivitJaxError, RuntimeError):
  """Another training run holds the workdir's lock; names its host and pid."""


class DecodeError(Exception):
  """One example cannot be read; the message names its path and why. Not a user error:
  the data pipeline skips and counts it (a `DataFailureError` when too many fail)."""


def config_error(field: str, value, expected: str) -> ConfigError:
  """The error for `config.<field>` holding `value` where `expected` was needed."""
  return ConfigError(f'config.{field}={value!r} is invalid: expected {expected}.')
