"""What a clip's label is: one class, one class per label group, or a set of classes.

`config.dataset` chooses the label kind:
- plain classification (default): one class in [0, K), K = `num_classes`;
- label groups (`label_groups`, e.g. `(('verb', 97), ('noun', 300))`, Scenic's
  `class_splits`; Epic-Kitchens): one class per group, the model's K = sum of the
  groups' sizes logits hold one block per group, in group order;
- multi-label (`multi_label=True`, Charades-style): any subset of the K classes.

Per example a source's reader returns the label as `LabelSpec.parse` makes it:
int (plain), int32[G] (groups) or float32[K] multi-hot (multi-label). Batches stack
them: `label` is int32[B], int32[B, G] or float32[B, K]; padded rows hold
`LabelSpec.empty()`.

Label names: `dataset.label_names` is the K names in label order (a list or a file);
with groups it may instead map each group's name to its names (list or file). The flat
list of K names (`LabelSpec.flat_names`) prefixes each with its group: 'verb:open'.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Mapping, Optional, Sequence, Union

import numpy as np

from vivit_jax.errors import DecodeError, config_error

LABEL_LIST_SEPARATOR = ';'     # multi-label values in one index column: '3;17;42'.


@dataclasses.dataclass(frozen=True)
class LabelSpec:
  """groups: ((name, num_classes), ...): one ('label', K) group for plain and
  multi-label classification; multi_label: labels are class sets (one group only);
  names: optional ((group, class names in label order), ...) that `parse` accepts
  besides integer indices."""
  groups: tuple[tuple[str, int], ...]
  multi_label: bool = False
  names: tuple[tuple[str, tuple[str, ...]], ...] = dataclasses.field(default=(),
                                                                     compare=False)

  @property
  def num_classes(self) -> int:
    """K: the model's number of logits, all groups together."""
    return sum(size for _, size in self.groups)

  @property
  def grouped(self) -> bool:
    """Whether labels are one class per group (int32[G]) rather than one class."""
    return len(self.groups) > 1

  @property
  def group_names(self) -> list[str]:
    return [name for name, _ in self.groups]

  def slices(self) -> list[slice]:
    """Each group's block of the K logits, in group order."""
    out, start = [], 0
    for _, size in self.groups:
      out.append(slice(start, start + size))
      start += size
    return out

  def empty(self) -> Union[int, np.ndarray]:
    """The label of a padded row (masked out of every metric)."""
    if self.multi_label:
      return np.zeros(self.num_classes, np.float32)
    if self.grouped:
      return np.zeros(len(self.groups), np.int32)
    return 0

  def batch_dtype(self):
    return np.float32 if self.multi_label else np.int32

  def stack(self, labels: Sequence) -> np.ndarray:
    """A batch's `label` from per-example labels (as `parse` returns them): int32[B],
    int32[B, G] or float32[B, K]."""
    return np.asarray(labels, self.batch_dtype()).reshape(
        (len(labels),) + np.shape(self.empty()))

  def empty_batch(self, batch_size: int) -> np.ndarray:
    """A batch's `label` of `batch_size` padded rows (`empty()` each)."""
    return np.zeros((batch_size,) + np.shape(self.empty()), self.batch_dtype())

  def parse(self, values: Sequence, where: str = '') -> Union[int, np.ndarray]:
    """One example's label from raw per-group values (each an int, an integer string or
    a class name of that group; multi-label: one value, a sequence of classes or a
    ';'-separated string). Raises DecodeError naming `where` and the bad value."""
    names = self._names
    if len(values) != len(self.groups):
      raise DecodeError(f'{_prefix(where)}label {list(values)!r} has {len(values)} '
                        f'value(s): expected one per label group {self.group_names}.')
    if self.multi_label:
      (raw,), (_, size) = values, self.groups[0]
      items = (raw.split(LABEL_LIST_SEPARATOR) if isinstance(raw, str) else
               [raw] if isinstance(raw, (int, np.integer)) else list(raw))
      out = np.zeros(size, np.float32)
      for item in items:
        if str(item).strip():
          out[_class_index(item, '', size, names.get(self.groups[0][0]), where)] = 1.0
      return out
    indices = [_class_index(raw, group if self.grouped else '', size, names.get(group),
                            where) for raw, (group, size) in zip(values, self.groups)]
    return np.asarray(indices, np.int32) if self.grouped else indices[0]

  @functools.cached_property
  def _names(self) -> dict[str, dict[str, int]]:
    return {group: {n: i for i, n in enumerate(names)} for group, names in self.names}

  def with_names(self, names: Optional[Mapping[str, Sequence[str]]]) -> 'LabelSpec':
    """A copy whose `parse` also accepts class names: {group: names in label order}."""
    return dataclasses.replace(self, names=tuple(
        (group, tuple(map(str, v))) for group, v in (names or {}).items()))

  def flat_names(self) -> list[str]:
    """The K class names in logit order: each group's names (default '0'..), prefixed
    'group:' when there are several groups."""
    out, names = [], dict(self.names)
    for group, size in self.groups:
      group_names = list(names.get(group) or [str(i) for i in range(size)])
      out += [f'{group}:{n}' for n in group_names] if self.grouped else group_names
    return out


def _class_index(raw, group: str, size: int, lookup: Optional[dict], where: str) -> int:
  """A class index in [0, size) from an int, an integer string or a name in `lookup`;
  `group` names the label group in the error ('' for a single group)."""
  text = str(raw).strip()
  if lookup and text in lookup:
    return lookup[text]
  if text.lstrip('-').isdigit() and 0 <= int(text) < size:
    return int(text)
  what = f'{group} label' if group else 'label'
  raise DecodeError(f'{_prefix(where)}{what} {text!r} is not a class: expected one of '
                    f'its label names or an integer in [0, {size}).')


def _prefix(where: str) -> str:
  return f'{where}: ' if where else ''


def label_spec(dataset_config) -> LabelSpec:
  """The LabelSpec of `config.dataset` (fields label_groups, multi_label, num_classes);
  raises ConfigError naming a bad field."""
  d = dataset_config
  groups = d.get('label_groups', None) or ()
  multi = d.get('multi_label', False)
  if not isinstance(multi, bool):
    raise config_error('dataset.multi_label', multi, 'True or False')
  if not groups:
    return LabelSpec((('label', int(d.num_classes)),), multi)
  ok = (isinstance(groups, (tuple, list)) and len(groups) >= 2 and all(
      isinstance(g, (tuple, list)) and len(g) == 2 and isinstance(g[0], str) and g[0]
      and isinstance(g[1], int) and not isinstance(g[1], bool) and g[1] >= 1
      for g in groups) and len({g[0] for g in groups}) == len(groups))
  if not ok:
    raise config_error('dataset.label_groups', groups,
                       "None, or two or more (name, num_classes) pairs with distinct "
                       "names, e.g. (('verb', 97), ('noun', 300))")
  if multi:
    raise config_error('dataset.multi_label', multi,
                       'False when dataset.label_groups is set (multi-label data has '
                       'one group)')
  spec = LabelSpec(tuple((str(n), int(k)) for n, k in groups))
  if d.num_classes != spec.num_classes:
    raise config_error('dataset.num_classes', d.num_classes,
                       f'{spec.num_classes}, the sum of dataset.label_groups')
  return spec
