"""What a model is trained to predict, per label kind (vivit_jax/data/labels.py).

Logits are float32[B, K] for every kind; a LabelSpec says how to read them:
- plain: one softmax over the K classes, softmax cross-entropy;
- label groups (Epic-Kitchens verb/noun, Scenic's `class_splits`): one softmax per
  group's block of logits; the loss is the mean of the groups' cross-entropies, with
  label smoothing within each group (mixup and CutMix mix the concatenated targets, so
  each group is mixed with the same weight);
- multi-label: one sigmoid per class, binary cross-entropy averaged over classes and
  examples (PySlowFast's `bce_logit`), targets smoothed towards 1/K as timm does.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from vivit_jax.data.labels import LabelSpec


def plain(num_classes: int) -> LabelSpec:
  """The LabelSpec of one class out of `num_classes`."""
  return LabelSpec((('label', int(num_classes)),))


def onehot_targets(labels, num_classes: int, label_smoothing: float = 0.0):
  """int32[B] -> float32[B, K], `label_smoothing` of the mass spread uniformly."""
  targets = jax.nn.one_hot(labels, num_classes, dtype=jnp.float32)
  if label_smoothing:
    targets = targets * (1.0 - label_smoothing) + label_smoothing / num_classes
  return targets


def targets(labels, spec: LabelSpec, label_smoothing: float = 0.0):
  """Batch labels (int32[B] | int32[B, G] | float32[B, K] multi-hot) -> float32[B, K]
  training targets, concatenated over groups."""
  if spec.multi_label:
    t = labels.astype(jnp.float32)
    return t * (1.0 - label_smoothing) + label_smoothing / spec.num_classes
  if not spec.grouped:
    return onehot_targets(labels, spec.num_classes, label_smoothing)
  return jnp.concatenate([onehot_targets(labels[:, g], size, label_smoothing)
                          for g, (_, size) in enumerate(spec.groups)], axis=-1)


def loss(logits, targets_, spec: LabelSpec):
  """float32[] mean loss of logits float[B, K] against targets float32[B, K]."""
  logits = logits.astype(jnp.float32)
  if spec.multi_label:
    return optax.sigmoid_binary_cross_entropy(logits, targets_).mean()
  return jnp.mean(jnp.stack([optax.softmax_cross_entropy(logits[:, s], targets_[:, s]).mean()
                             for s in spec.slices()]))


def correct(logits, labels, spec: LabelSpec):
  """float32[B]: 1 where the prediction is right: the argmax class (plain), every
  group's argmax (groups: the action), or the top class is one of the true ones."""
  if spec.multi_label:
    top = jnp.argmax(logits, -1)
    return (jnp.take_along_axis(labels, top[:, None], -1)[:, 0] > 0).astype(jnp.float32)
  if not spec.grouped:
    return (jnp.argmax(logits, -1) == labels).astype(jnp.float32)
  hits = [jnp.argmax(logits[:, s], -1) == labels[:, g] for g, s in enumerate(spec.slices())]
  return jnp.all(jnp.stack(hits, -1), -1).astype(jnp.float32)


def probabilities(logits, spec: LabelSpec):
  """float[..., K] logits -> float32[..., K] probabilities: softmax over all classes,
  over each group's block, or a sigmoid per class (multi-label)."""
  logits = logits.astype(jnp.float32)
  if spec.multi_label:
    return jax.nn.sigmoid(logits)
  if not spec.grouped:
    return jax.nn.softmax(logits, axis=-1)
  return jnp.concatenate([jax.nn.softmax(logits[..., s], axis=-1) for s in spec.slices()],
                         axis=-1)
