"""Config checks shared by the model families' `validate` functions.

Each raises `errors.ConfigError` naming the `config.model` field, the bad value and what
would be valid. Family-specific checks live in the family's own file.
"""
from __future__ import annotations

import math

import ml_collections

from vivit_jax.errors import config_error
from vivit_jax.models.layers import REMAT_POLICIES, SHARED_OPTIONS
from vivit_jax.ops.attention import ATTENTION_IMPLS, DEPRECATED_ATTENTION_IMPLS

DTYPES = ('float32', 'bfloat16')


def choice(field, value, choices):
  """`value` must be one of `choices`."""
  if value not in choices:
    raise config_error(field, value, f'one of {list(choices)}')


def positive_int(field, value):
  """`value` must be an int (not a bool) >= 1."""
  if not isinstance(value, int) or isinstance(value, bool) or value < 1:
    raise config_error(field, value, 'a positive integer')


def rate(field, value):
  """`value` must be a number in [0, 1)."""
  if not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
    raise config_error(field, value, 'a rate in [0, 1)')


def int_tuple(field, value, length: int, meaning: str, minimum: int = 1):
  """`value` must be `length` integers >= `minimum`; `meaning` names the entries."""
  items = tuple(value) if isinstance(value, (tuple, list)) else ()
  if len(items) != length or not all(
      isinstance(v, int) and not isinstance(v, bool) and v >= minimum for v in items):
    raise config_error(field, value, f'{length} integers >= {minimum} {meaning}')


def options(m: ml_collections.ConfigDict) -> None:
  """The options every TransformerConfig user shares: rates, dtypes, attention impl,
  remat policy, plus `mlp_ratio` and `head_dropout_rate` where the family has them."""
  for field in ('dropout_rate', 'attention_dropout_rate', 'stochastic_depth',
                'head_dropout_rate'):
    rate(f'model.{field}', m.get(field, 0.0))
  for field in ('dtype', 'param_dtype'):
    choice(f'model.{field}', m.get(field, SHARED_OPTIONS[field]), DTYPES)
  choice('model.attention_impl', m.get('attention_impl', SHARED_OPTIONS['attention_impl']),
         ATTENTION_IMPLS + tuple(DEPRECATED_ATTENTION_IMPLS))
  choice('model.remat_policy', m.get('remat_policy', SHARED_OPTIONS['remat_policy']),
         sorted(REMAT_POLICIES))
  rescale = m.get('stochastic_depth_rescale', SHARED_OPTIONS['stochastic_depth_rescale'])
  if not isinstance(rescale, bool):
    raise config_error('model.stochastic_depth_rescale', rescale, 'True or False')
  ratio = m.get('mlp_ratio', 4.0)
  if not isinstance(ratio, (int, float)) or ratio <= 0:
    raise config_error('model.mlp_ratio', ratio, 'a positive number')


def transformer(m: ml_collections.ConfigDict) -> None:
  """Width/depth/heads of `config.model` for a uniform TransformerConfig user, and the
  shared `options`."""
  for field in ('hidden_size', 'num_layers', 'num_heads', 'mlp_dim'):
    positive_int(f'model.{field}', m.get(field))
  if m.hidden_size % m.num_heads:
    raise config_error('model.num_heads', m.num_heads,
                       f'a divisor of model.hidden_size={m.hidden_size}')
  options(m)
  if m.get('representation_size') is not None:
    positive_int('model.representation_size', m.representation_size)


def patches(m: ml_collections.ConfigDict, *, crop_size: int,
                  num_frames: int | None = None, temporal_size: int = 1) -> None:
  """The spatial patch must tile the crop; the temporal one the clip."""
  patch = tuple(m.get('patch_size') or ())
  if len(patch) != 2 or not all(isinstance(p, int) and p > 0 for p in patch):
    raise config_error('model.patch_size', m.get('patch_size'),
                       'two positive integers (height, width)')
  if crop_size % patch[0] or crop_size % patch[1]:
    multiple = math.lcm(*patch)
    raise config_error(
        'model.patch_size', patch,
        f'patch sides that divide config.dataset.crop_size={crop_size} (or a crop size '
        f'that is a multiple of {multiple}, e.g. {max(1, crop_size // multiple) * multiple})')
  if num_frames is not None and num_frames % temporal_size:
    raise config_error(
        'model.temporal_patch_size', temporal_size,
        f'a divisor of config.dataset.num_frames={num_frames} (or num_frames a multiple '
        f'of {temporal_size}, e.g. {max(1, num_frames // temporal_size) * temporal_size})')
