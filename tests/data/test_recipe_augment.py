"""The reference recipes' augmentations (issue 22), each a config.dataset option, off by
default, the same on every frame of a clip and drawn from the pipeline's per-row stream:
Scenic/DMVR colour augmentation with colour drop, Scenic's video RandAugment, PySlowFast
random erasing, PySlowFast's random-resized crop and repeated augmentation."""
import ml_collections
import numpy as np
import pytest

from vivit_jax import config as config_lib
from vivit_jax import data, errors
from vivit_jax.data import augment, pipeline

from synthetic_helpers import synthetic_config


def _still_clip(t=3, h=16, w=16, seed=0):
  """uint8[t, h, w, 3]: the same random image in every frame."""
  frame = np.random.default_rng(seed).integers(0, 256, (1, h, w, 3)).astype(np.uint8)
  return np.repeat(frame, t, axis=0)


# Scenic/DMVR colour augmentation (DMVR processors.py `color_default_augm`).

def test_dmvr_params_fill_dmvrs_ranges():
  """Brightness ±32/255, saturation and contrast [0.6, 1.4], hue ±0.2 turns."""
  rng = np.random.default_rng(0)
  p = np.array([augment.dmvr_color_params(rng) for _ in range(3000)])
  for column, (lo, hi) in enumerate([(-32 / 255, 32 / 255), (0.6, 1.4), (0.6, 1.4),
                                     (-0.2, 0.2)]):
    assert lo <= p[:, column].min() and p[:, column].max() <= hi
    assert p[:, column].min() < lo + 0.02 * (hi - lo)       # the whole range is used.
    assert p[:, column].max() > hi - 0.02 * (hi - lo)


def test_dmvr_brightness_alone_shifts_every_pixel_by_one_delta():
  """On a flat grey clip saturation, contrast and hue do nothing, so colour
  augmentation moves every pixel of every frame by one delta within ±32 levels."""
  grey = np.full((4, 8, 8, 3), 128, np.uint8)
  deltas = []
  for seed in range(300):
    out = augment.dmvr_color_augment(grey, np.random.default_rng(seed), 1.0, 0.0)
    shift = out - 128.0
    np.testing.assert_allclose(shift, shift.flat[0], atol=1e-3)
    deltas.append(shift.flat[0])
  assert max(np.abs(deltas)) <= 32 + 1e-3
  assert min(deltas) < -28 and max(deltas) > 28
  # Hand-computed: +16/255 on a mid-range clip with neutral other factors.
  clip = _still_clip().astype(np.float32) * (100 / 255) / 255 + 0.3   # in [0.3, 0.7].
  np.testing.assert_allclose(augment.apply_dmvr_color(clip, (16 / 255, 1.0, 1.0, 0.0)),
                             clip + 16 / 255, atol=1e-5)


def test_dmvr_saturation_contrast_hue_by_hand():
  pixel = np.array([[[[0.8, 0.4, 0.2]]]], np.float32)
  # HSV: v = 0.8, s = 0.75; s * 0.5 keeps v and pulls each channel halfway to v.
  np.testing.assert_allclose(augment.adjust_saturation(pixel, 0.5),
                             [[[[0.8, 0.6, 0.5]]]], atol=1e-6)
  np.testing.assert_allclose(augment.adjust_saturation(pixel, 0.0),
                             [[[[0.8, 0.8, 0.8]]]], atol=1e-6)
  red = np.array([[[[1.0, 0.0, 0.0]]]], np.float32)
  np.testing.assert_allclose(augment.adjust_hue_hsv(red, 1 / 3), [[[[0, 1, 0]]]], atol=1e-6)
  np.testing.assert_allclose(augment.adjust_hue_hsv(red, -1 / 3), [[[[0, 0, 1]]]], atol=1e-6)
  # Contrast blends with each frame's own per-channel mean.
  frames = np.array([np.full((2, 2, 3), 0.2), np.full((2, 2, 3), 0.6)], np.float32)
  frames[:, 0, 0] += 0.1
  out = augment.adjust_contrast(frames, 1.4)
  for t in range(2):
    mean = frames[t].mean(axis=(0, 1))
    np.testing.assert_allclose(out[t], (frames[t] - mean) * 1.4 + mean, atol=1e-6)


def test_dmvr_colour_drop_makes_every_clip_grey():
  clip = _still_clip()
  for seed in range(20):
    out = augment.dmvr_color_augment(clip, np.random.default_rng(seed), 0.8, 1.0)
    np.testing.assert_allclose(out[..., 0], out[..., 1], atol=1e-4)
    np.testing.assert_allclose(out[..., 0], out[..., 2], atol=1e-4)
  red = np.zeros((1, 1, 1, 3), np.uint8)
  red[..., 0] = 255
  out = augment.dmvr_color_augment(red, np.random.default_rng(0), 0.0, 1.0)
  np.testing.assert_allclose(out, np.full((1, 1, 1, 3), 0.2989 * 255), rtol=1e-5)


def test_dmvr_colour_same_on_every_frame_deterministic_and_optional():
  clip = _still_clip()
  changed = 0
  for seed in range(200):
    out = augment.dmvr_color_augment(clip, np.random.default_rng(seed), 0.8, 0.1)
    assert out.dtype == np.float32 and out.shape == clip.shape
    assert 0 <= out.min() and out.max() <= 255
    np.testing.assert_array_equal(out[0], out[1])
    np.testing.assert_array_equal(out[0], out[2])
    changed += not np.allclose(out, clip, atol=1e-3)
  assert 0.7 * 200 < changed < 0.95 * 200                    # prob 0.8 (+ drop 0.1).
  again = augment.dmvr_color_augment(clip, np.random.default_rng(199), 0.8, 0.1)
  np.testing.assert_array_equal(out, again)
  off = augment.dmvr_color_augment(clip, np.random.default_rng(0), 0.0, 0.0)
  np.testing.assert_allclose(off, clip, atol=1e-4)


# Scenic's video RandAugment (scenic/dataset_lib/video_ops.py).

def test_scenic_rand_augment_ops_by_hand():
  clip = _still_clip()
  c, f = clip.astype(np.int32), clip.astype(np.float32)
  op = augment.apply_scenic_rand_augment_op
  np.testing.assert_array_equal(op(clip, 'invert', 5), 255 - c)
  np.testing.assert_array_equal(op(clip, 'posterize', 10), c & 0xF0)    # 4 bits.
  np.testing.assert_array_equal(op(clip, 'posterize', 20), clip)        # 8 bits.
  np.testing.assert_array_equal(op(clip, 'solarize', 5), np.where(c < 128, c, 255 - c))
  np.testing.assert_array_equal(op(clip, 'solarize', 15), clip)         # threshold 384.
  np.testing.assert_array_equal(op(clip, 'solarize_add', 10),
                                np.where(c < 128, np.minimum(c + 110, 255), c))
  np.testing.assert_array_equal(op(clip, 'brightness', 5), clip)       # factor 1.
  np.testing.assert_array_equal(op(clip, 'brightness', 10),
                                np.minimum(f * np.float32(1.9), 255).astype(np.uint8))
  np.testing.assert_array_equal(op(clip, 'brightness', 20),             # factor 3.7.
                                np.minimum(f * np.float32(3.7), 255).astype(np.uint8))
  # Contrast blends with augment.py's level sum(histogram) / 256 = 768 / 256 = 3 here
  # (255 for real clips), not the mean grey (see augment.py).
  np.testing.assert_array_equal(op(clip, 'contrast', 10), np.clip(
      3 + np.float32(1.9) * (f - 3), 0, 255).astype(np.uint8))
  big_clip = _still_clip(t=2, h=224, w=224)
  np.testing.assert_array_equal(op(big_clip, 'contrast', 5 / 9), np.clip(   # factor 0.2.
      255 + np.float32(0.2) * (big_clip.astype(np.float32) - 255), 0, 255).astype(np.uint8))
  grey = op(clip, 'color', 0)                                           # factor 0.1.
  assert np.abs(grey.astype(int) - c).mean() > 10
  big = _still_clip(h=100, w=100)
  cut = op(big, 'cutout', 5, np.random.default_rng(0))                  # side <= 40.
  erased = (cut != big).any(-1)
  np.testing.assert_array_equal(erased[0], erased[1])
  ys, xs = np.nonzero(erased[0])
  assert 0 < np.ptp(ys) + 1 <= 40 and 0 < np.ptp(xs) + 1 <= 40
  assert (cut[:, ys.min():ys.max() + 1, xs.min():xs.max() + 1] == 0).all()


@pytest.mark.parametrize('op', augment.SCENIC_RAND_AUGMENT_OPS)
def test_scenic_rand_augment_ops_same_on_every_frame(op):
  clip = _still_clip()
  out = augment.apply_scenic_rand_augment_op(clip, op, 15, np.random.default_rng(0))
  assert out.shape == clip.shape and out.dtype == np.uint8
  np.testing.assert_array_equal(out[0], out[1])
  np.testing.assert_array_equal(out[0], out[2])


def test_scenic_rand_augment_picks_an_op_or_identity():
  """Each layer draws one of the 11 ops or identity, uniformly (1 in 12 each)."""
  clip = _still_clip()
  same = 0
  for seed in range(240):
    rng = np.random.default_rng(seed)
    out = augment.scenic_rand_augment(clip, rng, 1, 15)
    np.testing.assert_array_equal(out[0], out[2])
    same += np.array_equal(out, clip)
  # identity and solarize (threshold int(256 * 1.5) = 384) leave the clip, and
  # auto_contrast nearly always (random pixels span [0, 255]): about 3 in 12.
  assert 30 < same < 90
  np.testing.assert_array_equal(augment.scenic_rand_augment(clip, np.random.default_rng(3),
                                                            2, 20),
                                augment.scenic_rand_augment(clip, np.random.default_rng(3),
                                                            2, 20))


# timm's RandAugment as PySlowFast runs it (slowfast/datasets/rand_augment.py).

def test_timm_rand_augment_ops_by_hand():
  clip = _still_clip()
  c, f = clip.astype(np.int32), clip.astype(np.float32)

  def op(name, m, increasing=True, sign=1.0):
    return augment.apply_timm_rand_augment_op(clip, name, m, sign, increasing)
  np.testing.assert_array_equal(op('invert', 3), 255 - c)
  np.testing.assert_array_equal(op('posterize', 5), c & 0xC0)            # 4 - 2 bits.
  np.testing.assert_array_equal(op('posterize', 10), 0 * c)              # 0 bits.
  np.testing.assert_array_equal(op('posterize', 10, False), c & 0xF0)    # 4 bits.
  np.testing.assert_array_equal(op('posterize', 0, False), 0 * c)
  np.testing.assert_array_equal(op('solarize', 5), np.where(c < 128, c, 255 - c))
  np.testing.assert_array_equal(op('solarize', 0), clip)                 # threshold 256.
  np.testing.assert_array_equal(op('solarize', 10, False), clip)         # threshold 256.
  np.testing.assert_array_equal(op('solarize', 0, False), 255 - c)       # threshold 0.
  np.testing.assert_array_equal(op('solarize_add', 10),
                                np.where(c < 128, np.minimum(c + 110, 255), c))
  np.testing.assert_array_equal(op('solarize_add', 5, False),
                                np.where(c < 128, np.minimum(c + 55, 255), c))
  np.testing.assert_array_equal(op('brightness', 0), clip)               # factor 1.
  np.testing.assert_array_equal(op('brightness', 5, sign=-1.0),          # factor 0.55.
                                np.round(f * np.float32(0.55)).astype(np.uint8))
  np.testing.assert_array_equal(op('brightness', 0, False),              # factor 0.1.
                                np.round(f * np.float32(0.1)).astype(np.uint8))
  np.testing.assert_array_equal(op('brightness', 5, False, sign=-1.0), clip)   # 1.0.
  np.testing.assert_array_equal(op('rotate', 4, sign=-1.0),
                                augment.apply_rand_augment_op(clip, 'rotate', 4, -1.0))
  with pytest.raises(ValueError, match="op='identity' is invalid"):
    op('identity', 5)


def test_timm_rand_augment_draws_ops_probability_and_magnitude(monkeypatch):
  """Each layer draws one of the 15 ops uniformly, applies it with probability 0.5, at a
  magnitude ~ N(m, std) clipped to [0, 10], with a random sign."""
  calls = []
  monkeypatch.setattr(augment, 'apply_timm_rand_augment_op',
                      lambda v, op, m, sign, inc: calls.append((op, m, sign, inc)) or v)
  clip = _still_clip()
  rng = np.random.default_rng(0)
  draws = 3000
  for _ in range(draws // 2):
    augment.timm_rand_augment(clip, rng, 2, 7.0, 0.5, increasing=True)
  assert abs(len(calls) / draws - 0.5) < 0.03
  magnitudes = np.array([m for _, m, _, _ in calls])
  assert abs(magnitudes.mean() - 7.0) < 0.05 and abs(magnitudes.std() - 0.5) < 0.05
  counts = np.array([sum(op == name for op, *_ in calls)
                     for name in augment.TIMM_RAND_AUGMENT_OPS])
  assert counts.min() > 0.5 * len(calls) / 15 and counts.max() < 1.5 * len(calls) / 15
  assert abs(np.mean([s > 0 for _, _, s, _ in calls]) - 0.5) < 0.05
  assert all(inc for *_, inc in calls)
  calls.clear()
  for _ in range(500):
    augment.timm_rand_augment(clip, rng, 1, 9.0, 5.0, increasing=False)
  magnitudes = np.array([m for _, m, _, _ in calls])
  assert magnitudes.min() == 0.0 and (magnitudes == 0.0).mean() < 0.1   # clipped at 0 ...
  assert magnitudes.max() == 10.0 and (magnitudes == 10.0).mean() > 0.3   # ... and at 10.
  assert not any(inc for *_, inc in calls)
  calls.clear()
  augment.timm_rand_augment(clip, rng, 200, 7.0)                         # mstd 0.
  assert {m for _, m, _, _ in calls} == {7.0}


def test_timm_rand_augment_same_on_every_frame_and_deterministic():
  clip = _still_clip()
  out = augment.rand_augment_clip(clip, np.random.default_rng(4), 'timm_increasing', 4, 7.0,
                                  0.5)
  assert not np.array_equal(out, clip)
  np.testing.assert_array_equal(out[0], out[2])
  np.testing.assert_array_equal(
      out, augment.rand_augment_clip(clip, np.random.default_rng(4), 'timm_increasing', 4,
                                     7.0, 0.5))


# Random erasing (PySlowFast random_erasing.py, 'cube' mode).

def test_random_erasing_prob_zero_is_identity():
  clip = np.full((3, 32, 32, 3), 7.0, np.float32)
  rng = np.random.default_rng(0)
  assert augment.random_erasing(clip, rng, 0.0) is clip
  assert rng.random() == np.random.default_rng(0).random()   # no draw was taken.


def test_random_erasing_area_statistics():
  """Erased-area fractions lie in PySlowFast's [0.02, 1/3] (up to rounding of h, w),
  with one box per clip on every frame, filled with per-pixel, per-frame noise."""
  clip = np.full((2, 64, 64, 3), 7.0, np.float32)        # far from N(0, 1) noise.
  fractions, erased = [], 0
  for seed in range(1500):
    out = augment.random_erasing(clip, np.random.default_rng(seed), 0.25)
    mask = out != 7.0
    if not mask.any():
      continue
    erased += 1
    np.testing.assert_array_equal(mask[0], mask[1])
    assert not np.array_equal(out[0][mask[0]], out[1][mask[1]])
    ys, xs = np.nonzero(mask[0].any(-1))
    h, w = np.ptp(ys) + 1, np.ptp(xs) + 1
    assert mask[0].all(-1).sum() == h * w                 # one rectangle.
    assert h < 64 and w < 64
    fractions.append(h * w / 64 ** 2)
  assert 0.20 * 1500 < erased < 0.30 * 1500                # prob 0.25.
  fractions = np.array(fractions)
  assert fractions.min() >= 0.015 and fractions.max() <= 0.36
  assert fractions.min() < 0.04 and fractions.max() > 0.28
  # Area uniform in [0.02, 1/3]: mean ~0.177, slightly less (big, long boxes miss).
  assert 0.14 < fractions.mean() < 0.19


def test_random_erasing_box_aspect_range():
  rng = np.random.default_rng(0)
  ratios = []
  for _ in range(2000):
    y, x, h, w = augment.random_erasing_box(200, 200, rng)
    assert 0 <= y and y + h <= 200 and 0 <= x and x + w <= 200
    ratios.append(h / w)
  assert 0.28 <= min(ratios) < 0.35 and 3.0 < max(ratios) <= 3.5


# Random-resized crop (PySlowFast transform.py `random_resized_crop`).

def test_random_resized_crop_matches_pyslowfast_ranges():
  rng = np.random.default_rng(0)
  areas, aspects = [], []
  for _ in range(2000):
    y, x, h, w = augment.random_resized_crop_box(240, 320, rng)
    assert 0 <= y and y + h <= 240 and 0 <= x and x + w <= 320
    areas.append(h * w / (240 * 320))
    aspects.append(w / h)
  assert 0.07 < min(areas) < 0.1 and max(areas) <= 1.0
  assert 0.73 < min(aspects) < 0.76 and 1.31 < max(aspects) < 1.36
  rng = np.random.default_rng(0)
  wide = [augment.random_resized_crop_box(240, 320, rng, (0.08, 0.3), (2.0, 3.0))
          for _ in range(500)]
  assert all(1.9 < w / h < 3.1 for _, _, h, w in wide)


def test_random_resized_crop_fallback_is_pyslowfasts_centre_crop():
  """After 10 misses: the centred whole frame narrowed to the nearest allowed aspect."""
  rng = np.random.default_rng(0)
  assert augment.random_resized_crop_box(10, 100, rng, (0.9, 1.0)) == (0, 43, 10, 13)
  assert augment.random_resized_crop_box(100, 10, rng, (0.9, 1.0)) == (43, 0, 13, 10)
  # 30x40 is narrower than 3:1: full width, h = round(40 / 3) = 13, centred.
  assert augment.random_resized_crop_box(30, 40, rng, (0.9, 1.0), (3.0, 4.0)) == (
      8, 0, 13, 40)
  # A frame whose aspect is in range: the whole frame.
  assert augment.random_resized_crop_box(3, 4, rng, (0.99, 1.0), (1.3, 1.34)) == (
      0, 0, 3, 4)


# The options in config.dataset and the pipeline.

def _config(**dataset):
  return synthetic_config(**{'num_workers': 0, **dataset})


NEW_FIELDS = ('crop_aspect_range', 'randaugment_ops', 'color_augment_prob',
              'color_drop_prob', 'random_erasing_prob', 'repeated_augmentation')


def test_defaults_leave_batches_unchanged():
  defaults = config_lib.default_config().dataset
  new = {k: defaults[k] for k in NEW_FIELDS}
  assert new == dict(crop_aspect_range=None, randaugment_ops='default',
                     color_augment_prob=0.0, color_drop_prob=0.0,
                     random_erasing_prob=0.0, repeated_augmentation=1)
  data.validate(defaults)
  plain = data.get_dataset(_config()).train_batch(3, 8)
  explicit = data.get_dataset(_config(**new)).train_batch(3, 8)
  for key in plain:
    np.testing.assert_array_equal(plain[key], explicit[key])


def test_repeated_augmentation_order():
  for step in range(4):
    order = pipeline.train_order(0, step, 8, 96, repeats=2)
    np.testing.assert_array_equal(order[0::2], order[1::2])
    np.testing.assert_array_equal(order[0::2], pipeline.train_order(0, step, 4, 96))
  odd = pipeline.train_order(0, 0, 7, 96, repeats=3)      # 3 examples: 3 + 3 + 1.
  assert odd.tolist() == np.repeat(pipeline.train_order(0, 0, 3, 96), 3)[:7].tolist()
  seen = np.concatenate([pipeline.train_order(0, s, 8, 96, 2)[::2] for s in range(24)])
  assert sorted(seen) == list(range(96))                      # an epoch in 24 steps.


def test_repeated_augmentation_copies_differ_in_their_crops():
  ds = data.get_dataset(_config(repeated_augmentation=2, crop_area_range=(0.08, 1.0),
                               num_workers=2))
  batch = ds.train_batch(2, 8)
  np.testing.assert_array_equal(batch['label'][0::2], batch['label'][1::2])
  for row in range(0, 8, 2):
    assert not np.array_equal(batch['video'][row], batch['video'][row + 1])
  again = ds.train_batch(2, 8)
  np.testing.assert_array_equal(batch['video'], again['video'])
  stream = ds.train_batches(2, 8)                     # decoded by 2 worker threads.
  np.testing.assert_array_equal(batch['video'], next(stream)['video'])
  stream.close()
  ds.close()


@pytest.mark.parametrize('field,value,message', [
    ('randaugment_ops', 'autoaugment', "config.dataset.randaugment_ops='autoaugment' is "
     "invalid: expected one of ('default', 'scenic', 'timm', 'timm_increasing')."),
    ('randaugment_magnitude_std', 0.5, "config.dataset.randaugment_magnitude_std=0.5 is "
     "invalid: expected a standard deviation >= 0, and 0 unless randaugment_ops is one of "
     "('timm', 'timm_increasing') (randaugment_ops='scenic')."),
    ('randaugment_magnitude', 21, "a magnitude in [0, 20] for randaugment_ops='scenic'"),
    ('color_augment_prob', 1.5, 'a probability in [0, 1]'),
    ('color_drop_prob', -0.1, 'a probability in [0, 1]'),
    ('random_erasing_prob', True, 'a probability in [0, 1]'),
    ('repeated_augmentation', 0, 'an integer >= 1'),
    ('crop_aspect_range', (1.5, 0.5), 'config.dataset.crop_aspect_range=(1.5, 0.5)'),
])
def test_new_fields_are_validated(field, value, message):
  d = ml_collections.ConfigDict(dict(_config().dataset.to_dict(), randaugment_ops='scenic'),
                                type_safe=False)
  d[field] = value
  with pytest.raises(errors.ConfigError) as e:
    data.validate(d)
  assert message in str(e.value)


def test_scenic_magnitudes_of_scenics_configs_are_accepted():
  for magnitude in (15, 20):       # Epic-Kitchens, SSv2 ViViT configs.
    data.validate(_config(randaugment_ops='scenic', randaugment_magnitude=magnitude,
                          randaugment_layers=2).dataset)
  with pytest.raises(errors.ConfigError, match=r"\[0, 10\] for randaugment_ops='default'"):
    data.validate(_config(randaugment_magnitude=15).dataset)
  with pytest.raises(errors.ConfigError, match='randaugment_ops'):
    data.get_dataset(_config(randaugment_ops='autoaugment'))
