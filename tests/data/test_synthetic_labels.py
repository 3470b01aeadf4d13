"""The synthetic task's label kinds ('class', 'verb_noun', 'multi_label'): labels
checked against what the generator drew (each shape's trajectory and colour) and
against the pixels, and the batches the dataset serves for each kind."""
import numpy as np
import pytest

from vivit_jax import data, errors
from vivit_jax.data import synthetic

from synthetic_helpers import synthetic_config

T, SIZE = 16, 32
VERB_NOUN = dict(synthetic_labels='verb_noun', label_groups=(('verb', 10), ('noun', 4)),
                 num_classes=14)
MULTI = dict(synthetic_labels='multi_label', multi_label=True)


def slot_motions(params, size):
  """int[n, S]: the motion class each shape's drawn trajectory shows (-1: none), read
  from the generator's per-frame states (not from its labels)."""
  def net(c):      # net displacement of a wrapped coordinate, pixels.
    step = np.diff(c, axis=-1)
    return ((step + size / 2) % size - size / 2).sum(-1)
  visible = params['visible']
  tests = [net(params['cx']) < -0.15 * size, net(params['cx']) > 0.15 * size,
           net(params['cy']) < -0.15 * size, net(params['cy']) > 0.15 * size,
           params['alpha'][..., -1] - params['alpha'][..., 0] > 0.3,
           params['alpha'][..., 0] - params['alpha'][..., -1] > 0.3,
           np.log(params['half_len'][..., -1] / params['half_len'][..., 0]) > 0.2,
           np.log(params['half_len'][..., 0] / params['half_len'][..., -1]) > 0.2,
           ~visible[..., 0] & visible[..., -1], visible[..., 0] & ~visible[..., -1]]
  tests = np.stack(tests, -1)
  assert tests.sum(-1).max() <= 1, 'a shape shows two motions'
  return np.where(tests.any(-1), tests.argmax(-1), -1)


def drawn(kind, seed=0):
  """The parameters of one generation chunk (64 examples) and its shapes' motions."""
  rng = np.random.default_rng([seed, 0])
  params = synthetic._sample_params(rng, synthetic._CHUNK, T, SIZE, T, kind)
  return params, slot_motions(params, SIZE)


def test_class_and_verb_are_the_one_changing_shapes_motion():
  for kind in ('class', 'verb_noun'):
    params, motions = drawn(kind)
    verb = params['label'] if kind == 'class' else params['label'][:, 0]
    assert ((motions >= 0).sum(1) == 1).all()
    np.testing.assert_array_equal(motions.max(1), verb)


def test_noun_is_the_changing_shapes_palette_colour():
  params, motions = drawn('verb_noun')
  verb, noun = params['label'].T
  assert set(noun.tolist()) == {0, 1, 2, 3}
  # Each shape's colour is its palette colour, jittered; shapes of a clip differ.
  distance = np.abs(params['colour'][:, :, None] - synthetic._PALETTE).max(-1)
  nearest = distance.argmin(-1)                                   # [n, S]
  assert distance.min(-1).max() <= synthetic._PALETTE_JITTER
  assert all(len(set(row)) == synthetic._SLOTS for row in nearest.tolist())
  changing = motions.argmax(1)
  np.testing.assert_array_equal(nearest[np.arange(len(noun)), changing], noun)


def test_multi_label_is_the_two_changing_shapes_motions():
  params, motions = drawn('multi_label')
  labels = params['label']
  assert labels.shape == (synthetic._CHUNK, 2) and (labels[:, 0] != labels[:, 1]).all()
  assert ((motions >= 0).sum(1) == 2).all()
  assert [sorted(m[m >= 0].tolist()) for m in motions] == [sorted(l) for l in
                                                           labels.tolist()]
  # Two kinds of change (pairs), in one time direction: 10 x 2 label sets.
  assert (labels[:, 0] // 2 != labels[:, 1] // 2).all()
  assert (labels[:, 0] % 2 == labels[:, 1] % 2).all()
  assert len(set(map(tuple, np.sort(labels, 1).tolist()))) > 15


def test_noun_from_the_pixels():
  """The colour of the pixels that change over a rendered video names its noun."""
  videos, labels = synthetic.generate(200, num_frames=T, size=SIZE, seed=3,
                                      labels='verb_noun')
  v = videos.astype(np.float32)
  background = np.median(v[:, 0].reshape(len(v), -1, 3), axis=1)[:, None, None]
  ends = np.stack([v[:, 0], v[:, -1]], 1) - background[:, None]    # [n, 2, H, W, 3]
  strength = np.abs(ends).sum(-1)
  changed = np.abs(v[:, -1] - v[:, 0]).sum(-1) > 80                # [n, H, W]
  colour = np.take_along_axis(ends, strength.argmax(1)[:, None, ..., None], 1)[:, 0]
  palette = synthetic._PALETTE - 128
  palette /= np.linalg.norm(palette, axis=-1, keepdims=True)
  hue = np.einsum('nhwc,kc->nhwk', colour, palette).argmax(-1)     # nearest direction
  predicted = np.array([np.bincount(h[c], minlength=4).argmax() if c.any() else -1
                        for h, c in zip(hue, changed)])
  accuracy = (predicted == labels[:, 1]).mean()
  print(f'noun from changing pixels: {accuracy:.3f}')
  assert accuracy > 0.85                                            # chance 0.25.


def test_class_kind_is_unchanged_by_the_variants():
  """'class' videos and labels are the ones generated before the label kinds existed
  (sha256 of the pixels and the labels recorded from that code)."""
  import hashlib
  a = synthetic.generate(70, num_frames=4, size=12, seed=1)
  b = synthetic.generate(70, num_frames=4, size=12, seed=1, labels='class')
  np.testing.assert_array_equal(a[0], b[0])
  np.testing.assert_array_equal(a[1], b[1])
  assert hashlib.sha256(a[0].tobytes()).hexdigest()[:16] == '9f2b4cadf07423bb'
  assert a[1].shape == (70,) and a[1][:12].tolist() == [4, 5, 7, 9, 0, 1, 8, 9, 2, 3, 8, 4]
  with pytest.raises(ValueError, match='labels'):
    synthetic.generate(2, num_frames=4, size=12, seed=1, labels='nouns')


def _get(**dataset):
  return data.get_dataset(synthetic_config(**dataset), process_index=0, process_count=1)


@pytest.mark.parametrize('kind', ['verb_noun', 'multi_label'])
def test_batches_carry_the_generated_labels(kind):
  ds = _get(**(VERB_NOUN if kind == 'verb_noun' else MULTI))
  reader = ds.readers['train']
  batch = ds.train_batch(3, 8)
  order = data.pipeline.train_order(0, 3, 8, 96)
  raw = reader.labels[order]                                         # int32[8, 2]
  if kind == 'verb_noun':
    assert ds.num_classes == 14 and ds.label_spec.group_names == ['verb', 'noun']
    assert ds.label_names[:2] == ['verb:move_left', 'verb:move_right']
    assert ds.label_names[10:] == ['noun:red', 'noun:green', 'noun:blue', 'noun:yellow']
    assert batch['label'].dtype == np.int32
    np.testing.assert_array_equal(batch['label'], raw)
  else:
    assert ds.num_classes == 10 and ds.label_names == synthetic.LABEL_NAMES
    expected = np.zeros((8, 10), np.float32)
    np.put_along_axis(expected, raw, 1.0, axis=1)
    assert batch['label'].dtype == np.float32
    np.testing.assert_array_equal(batch['label'], expected)
    assert (batch['label'].sum(1) == 2).all()
  # The same through the threaded iterator; eval pads with empty labels.
  np.testing.assert_array_equal(next(ds.train_batches(3, 8))['label'], batch['label'])
  evals = list(ds.eval_batches('validation', 16))
  last = evals[-1]
  assert last['label'].shape == (16,) + batch['label'].shape[1:]
  assert last['mask'].sum() == 40 - 32 and not last['label'][8:].any()
  np.testing.assert_array_equal(
      np.concatenate([b['label'] for b in evals])[:40],
      ds.label_spec.stack([ds.readers['validation'].read(i, lambda n: [0])[1]
                           for i in range(40)]))
  ds.close()


def test_label_kind_config_errors():
  with pytest.raises(errors.ConfigError, match="synthetic_labels='nouns'.*'verb_noun'"):
    _get(synthetic_labels='nouns')
  with pytest.raises(errors.ConfigError,
                     match=r"label_groups=None.*\(\('verb', 10\), \('noun', 4\)\)"):
    _get(synthetic_labels='verb_noun')
  with pytest.raises(errors.ConfigError, match='label_groups.*for dataset.synthetic_labels'):
    _get(**dict(VERB_NOUN, label_groups=(('verb', 10), ('colour', 4))))
  with pytest.raises(errors.ConfigError, match=r"multi_label=False.*True"):
    _get(synthetic_labels='multi_label')
  with pytest.raises(errors.ConfigError, match=r"multi_label=True.*False"):
    _get(multi_label=True)
  with pytest.raises(errors.ConfigError, match=r"label_groups=\(\('verb'"):
    _get(label_groups=(('verb', 10), ('noun', 4)), num_classes=14)
