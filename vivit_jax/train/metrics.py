"""Evaluation metrics of view-aggregated probabilities, per label kind (data/labels.py).

- plain: top-1/top-5 accuracy, NLL, per-class and mean-class accuracy, confusion matrix;
- label groups: those per group (keys prefixed with the group's name, e.g. `verb_top1`)
  and **action accuracy** as Epic-Kitchens defines it: the joint probability of a
  combination is the product of the groups' probabilities (outer product of their
  softmaxes), top-1/top-5 over all combinations; `top1`/`top5` are the action's;
- multi-label: average precision per class (sklearn's step-wise AP: the mean of the
  precisions at each true example, scores sorted descending) and their mean `mAP` over
  classes with a true example; `top1`/`top5`: whether the top class / one of the top 5
  is a true one.

All take numpy `probs: float[N, K]`, `labels` of the kind's batch shape and an optional
`mask: float[N]` (0 = padding, dropped).
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from vivit_jax.data.labels import LabelSpec

ACTION_CHUNK = 256     # examples per block of joint probabilities (EK: 97 x 300 each).


def classification_metrics(probs, labels, mask=None, *, num_classes: Optional[int] = None,
                           confusion: bool = False) -> dict:
  """Metrics of predictions `probs: float[N, K]` against `labels: int[N]`.

  `mask: float[N]` (0 = padding, dropped). Returns top1, top5 (fractions), loss (mean
  NLL of the averaged probabilities), num_examples, and with `confusion` also
  per_class_accuracy (list[K], NaN for classes with no example) and confusion_matrix
  (list[K][K] counts, rows = true class, columns = predicted).
  """
  probs = np.asarray(probs, np.float64)
  labels = np.asarray(labels).astype(np.int64)
  if probs.ndim != 2 or labels.shape != probs.shape[:1]:
    raise ValueError(f'probs {probs.shape} and labels {labels.shape} do not match: '
                     'expected [N, K] and [N].')
  if mask is not None:
    keep = np.asarray(mask) > 0
    probs, labels = probs[keep], labels[keep]
  k = num_classes or probs.shape[1]
  n = len(labels)
  pred = probs.argmax(-1)
  topk = np.argsort(-probs, axis=-1, kind='stable')[:, :min(5, probs.shape[1])]
  out = {
      'top1': float((pred == labels).mean()) if n else float('nan'),
      'top5': float((topk == labels[:, None]).any(-1).mean()) if n else float('nan'),
      'loss': float(-np.log(np.maximum(probs[np.arange(n), labels], 1e-12)).mean())
              if n else float('nan'),
      'num_examples': int(n),
  }
  if confusion:
    cm = np.zeros((k, k), np.int64)
    np.add.at(cm, (labels, pred), 1)
    support = cm.sum(1)
    with np.errstate(invalid='ignore', divide='ignore'):
      per_class = np.where(support > 0, np.diag(cm) / np.maximum(support, 1), np.nan)
    out['per_class_accuracy'] = [float(x) for x in per_class]
    out['mean_class_accuracy'] = float(np.nanmean(per_class)) if n else float('nan')
    out['confusion_matrix'] = cm.tolist()
  return out


def _keep(mask, *arrays):
  if mask is None:
    return arrays
  keep = np.asarray(mask) > 0
  return tuple(np.asarray(a)[keep] for a in arrays)


def action_metrics(probs, labels, spec: LabelSpec) -> dict:
  """Action top1/top5 of label groups: probs float[N, K] (each group's block sums to 1),
  labels int[N, G]. The action index is the groups' classes in row-major order."""
  sizes = [size for _, size in spec.groups]
  action = np.ravel_multi_index(tuple(np.asarray(labels, np.int64).T), sizes)
  hit1 = hit5 = 0
  for start in range(0, len(action), ACTION_CHUNK):
    block = slice(start, start + ACTION_CHUNK)
    joint = np.ones((len(action[block]), 1))
    for s in spec.slices():
      joint = (joint[:, :, None] * np.asarray(probs[block, s], np.float64)[:, None, :])
      joint = joint.reshape(len(joint), -1)
    k = min(5, joint.shape[1])
    top = np.argpartition(-joint, k - 1, axis=1)[:, :k]
    best = top[np.arange(len(top)), np.argmax(np.take_along_axis(joint, top, 1), 1)]
    hit1 += int((best == action[block]).sum())
    hit5 += int((top == action[block, None]).any(1).sum())
  n = len(action)
  return {'action_top1': hit1 / n if n else float('nan'),
          'action_top5': hit5 / n if n else float('nan')}


def grouped_metrics(probs, labels, mask=None, *, spec: LabelSpec,
                    confusion: bool = False) -> dict:
  """Per-group classification_metrics (prefixed 'group_') and action accuracy; `top1`,
  `top5` are the action's, `loss` the mean of the groups' NLLs."""
  probs, labels = _keep(mask, probs, labels)
  out = {}
  for g, ((name, size), s) in enumerate(zip(spec.groups, spec.slices())):
    group = classification_metrics(probs[:, s], labels[:, g], num_classes=size,
                                   confusion=confusion)
    out.update({f'{name}_{k}': v for k, v in group.items() if k != 'num_examples'})
  out.update(action_metrics(probs, labels, spec))
  out.update(top1=out['action_top1'], top5=out['action_top5'], num_examples=len(labels),
             loss=float(np.mean([out[f'{name}_loss'] for name in spec.group_names])))
  return out


def average_precision(scores, positives) -> float:
  """sklearn's average_precision_score of one class: scores float[N], positives bool[N]
  (NaN without a positive). Ties are broken by order, as a stable sort leaves them."""
  positives = np.asarray(positives, bool)
  if not positives.any():
    return float('nan')
  order = np.argsort(-np.asarray(scores, np.float64), kind='stable')
  hits = positives[order]
  precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
  return float(precision[hits].mean())


def multi_label_metrics(probs, labels, mask=None) -> dict:
  """per_class_ap (list[K], NaN for classes with no true example), mAP, top1/top5 (the
  top class / one of the top 5 is true), loss (binary cross-entropy of the averaged
  probabilities, mean over classes), num_examples."""
  probs, labels = _keep(mask, np.asarray(probs, np.float64), np.asarray(labels) > 0)
  n, k = probs.shape
  ap = [average_precision(probs[:, c], labels[:, c]) for c in range(k)]
  top = np.argsort(-probs, axis=1, kind='stable')[:, :min(5, k)]
  hits = np.take_along_axis(labels, top, 1)
  p = np.clip(probs, 1e-12, 1 - 1e-12)
  bce = -(labels * np.log(p) + (~labels) * np.log(1 - p)).mean() if n else float('nan')
  with np.errstate(invalid='ignore'):
    return {'mAP': float(np.nanmean(ap)) if not np.isnan(ap).all() else float('nan'),
            'per_class_ap': [float(x) for x in ap],
            'top1': float(hits[:, 0].mean()) if n else float('nan'),
            'top5': float(hits.any(1).mean()) if n else float('nan'),
            'loss': float(bce), 'num_examples': int(n)}


def evaluation_metrics(probs, labels, mask, spec: LabelSpec, confusion: bool = False) -> dict:
  """The metrics of `spec`'s label kind (see the module docstring)."""
  if spec.multi_label:
    return multi_label_metrics(probs, labels, mask)
  if spec.grouped:
    return grouped_metrics(probs, labels, mask, spec=spec, confusion=confusion)
  return classification_metrics(probs, labels, mask, num_classes=spec.num_classes,
                                confusion=confusion)


def scalars(results: dict) -> dict:
  """The int/float entries of a metrics dict (what TensorBoard and tables take)."""
  return {k: v for k, v in results.items()
          if isinstance(v, (int, float, np.floating, np.integer)) and not isinstance(v, bool)}
