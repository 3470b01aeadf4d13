"""Temporal sampling positions and spatial ops of vivit_jax.data."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vivit_jax.data import augment, sampling


# Temporal sampling.

def test_clip_span():
  assert sampling.clip_span(4, 2) == 7
  assert sampling.clip_span(16, 1) == 16
  assert sampling.clip_span(1, 5) == 1


def test_dense_indices_exact():
  np.testing.assert_array_equal(sampling.dense_indices(10, 4, 2, start=0), [0, 2, 4, 6])
  np.testing.assert_array_equal(sampling.dense_indices(10, 4, 2, start=3), [3, 5, 7, 9])
  assert sampling.dense_indices(10, 4, 2, start=0).dtype == np.int32


def test_dense_clip_indices_covers_every_start():
  rng = np.random.default_rng(0)
  seen = set()
  for _ in range(200):
    idx = sampling.dense_clip_indices(10, 4, 2, rng)
    start = int(idx[0])
    np.testing.assert_array_equal(idx, [start, start + 2, start + 4, start + 6])
    seen.add(start)
  assert seen == {0, 1, 2, 3}          # span 7 in 10 frames: starts 0..3.


def test_short_videos_loop():
  rng = np.random.default_rng(0)
  # span 7 > 5 frames: start 0, indices modulo 5.
  np.testing.assert_array_equal(sampling.dense_clip_indices(5, 4, 2, rng), [0, 2, 4, 1])
  np.testing.assert_array_equal(sampling.dense_clip_indices(3, 5, 1, rng), [0, 1, 2, 0, 1])
  np.testing.assert_array_equal(sampling.multi_clip_indices(5, 4, 2, 2),
                                [[0, 2, 4, 1], [0, 2, 4, 1]])


def test_uniform_indices():
  np.testing.assert_array_equal(sampling.uniform_indices(10, 5), [1, 3, 5, 7, 9])
  np.testing.assert_array_equal(sampling.uniform_indices(16, 16), np.arange(16))
  np.testing.assert_array_equal(sampling.uniform_indices(3, 6), [0, 0, 1, 1, 2, 2])
  np.testing.assert_array_equal(sampling.uniform_indices(100, 4), [12, 37, 62, 87])


def test_multi_clip_indices_evenly_spaced():
  # span 7 in 20 frames: starts linspace(0, 13, 3) = 0, 6.5 -> 6, 13.
  np.testing.assert_array_equal(sampling.multi_clip_indices(20, 4, 2, 3),
                                [[0, 2, 4, 6], [6, 8, 10, 12], [13, 15, 17, 19]])
  # One clip: the centre one.
  np.testing.assert_array_equal(sampling.multi_clip_indices(20, 4, 2, 1), [[6, 8, 10, 12]])
  clips = sampling.multi_clip_indices(24, 16, 1, 4)
  np.testing.assert_array_equal(clips[:, 0], [0, 2, 5, 8])
  assert clips.shape == (4, 16) and clips.dtype == np.int32


@pytest.mark.parametrize('args', [(0, 4, 1), (10, 0, 1), (10, 4, 0)])
def test_sampling_rejects_non_positive(args):
  with pytest.raises(ValueError):
    sampling.dense_indices(*args, start=0)


# Spatial ops.

def _video(t=3, h=6, w=8, c=3, seed=0):
  return np.random.default_rng(seed).integers(0, 256, (t, h, w, c)).astype(np.uint8)


def test_random_crop_box_in_bounds_and_varied():
  rng = np.random.default_rng(0)
  boxes = {augment.random_crop_box(36, 40, 32, rng) for _ in range(300)}
  assert all(0 <= y <= 4 and 0 <= x <= 8 and (h, w) == (32, 32) for y, x, h, w in boxes)
  assert {b[0] for b in boxes} == set(range(5)) and {b[1] for b in boxes} == set(range(9))
  with pytest.raises(ValueError, match='does not fit'):
    augment.random_crop_box(30, 40, 32, rng)


def test_random_resized_crop_box():
  rng = np.random.default_rng(0)
  for _ in range(100):
    y, x, h, w = augment.random_resized_crop_box(60, 80, rng, area_range=(0.3, 1.0))
    assert 0 <= y and y + h <= 60 and 0 <= x and x + w <= 80
    assert 0.25 <= h * w / (60 * 80) <= 1.05


def test_center_and_three_crops():
  video = _video(h=6, w=10)
  assert augment.center_crop_box(6, 10, 4) == (1, 3, 4, 4)
  np.testing.assert_array_equal(augment.center_crop(video, 4), video[:, 1:5, 3:7])
  # Wider than tall: left / centre / right; taller: top / centre / bottom.
  assert augment.three_crop_boxes(6, 10, 4) == [(1, 0, 4, 4), (1, 3, 4, 4), (1, 6, 4, 4)]
  assert augment.three_crop_boxes(10, 6, 4) == [(0, 1, 4, 4), (3, 1, 4, 4), (6, 1, 4, 4)]
  assert augment.three_crop_boxes(6, 6, 6) == [(0, 0, 6, 6)] * 3
  crops = augment.three_crops(video, 4)
  assert crops.shape == (3, 3, 4, 4, 3)
  np.testing.assert_array_equal(crops[2], video[:, 1:5, 6:10])


def test_flip_left_right():
  video = _video()
  flipped = augment.flip_left_right(video)
  np.testing.assert_array_equal(flipped[:, :, 0], video[:, :, -1])
  np.testing.assert_array_equal(augment.flip_left_right(flipped), video)


@pytest.mark.parametrize('out_hw', [(6, 8), (3, 4), (12, 5), (2, 16)])
def test_resize_matches_jax_image_resize(out_hw):
  video = _video(h=6, w=8)
  ours = augment.resize(video, *out_hw)
  ref = jax.image.resize(jnp.asarray(video, jnp.float32), (3,) + out_hw + (3,),
                         method='linear', antialias=True)
  assert ours.dtype == np.float32 and ours.shape == (3,) + out_hw + (3,)
  np.testing.assert_allclose(ours, np.asarray(ref), atol=1e-3)


def test_resize_short_side():
  out = augment.resize_short_side(_video(h=6, w=9), 4)
  assert out.shape == (3, 4, 6, 3)


def test_normalize():
  video = _video()
  mean, std = (0.1, 0.5, 0.9), (0.2, 0.3, 0.4)
  out = augment.normalize(video, mean, std)
  ref = (video / 255.0 - np.array(mean)) / np.array(std)
  assert out.dtype == np.float32 and out.shape == video.shape
  np.testing.assert_allclose(out, ref, atol=1e-5)
  assert augment.normalize(np.uint8([[0, 255, 0]]), (0.5,) * 3, (0.5,) * 3).tolist() == [
      [-1.0, 1.0, -1.0]]
