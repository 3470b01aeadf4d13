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


# Uniform (segment) sampling and the mode dispatch.

def test_uniform_random_indices_one_per_segment():
  rng = np.random.default_rng(0)
  seen = set()
  for _ in range(100):
    idx = sampling.uniform_random_indices(20, 4, rng)        # segments of 5 frames.
    assert idx.dtype == np.int32
    np.testing.assert_array_equal(idx // 5, [0, 1, 2, 3])
    seen.update(idx.tolist())
  assert seen == set(range(20))
  np.testing.assert_array_equal(sampling.uniform_random_indices(3, 6, rng) // 1 <= 2,
                                [True] * 6)


def test_uniform_multi_clip_indices_exact():
  # Segments of 5: clip 0 at 1/4, clip 1 at 3/4 of each segment.
  np.testing.assert_array_equal(sampling.uniform_multi_clip_indices(20, 4, 2),
                                [[1, 6, 11, 16], [3, 8, 13, 18]])
  np.testing.assert_array_equal(sampling.uniform_multi_clip_indices(10, 5, 1)[0],
                                sampling.uniform_indices(10, 5))
  np.testing.assert_array_equal(sampling.uniform_multi_clip_indices(3, 4, 2),
                                [[0, 0, 1, 2], [0, 1, 2, 2]])


def test_mode_dispatch():
  rng = np.random.default_rng(0)
  assert sampling.train_clip_indices('dense', 30, 4, 3, rng).tolist()[1:] == [
      sampling.train_clip_indices('dense', 30, 4, 3, np.random.default_rng(0))[0] + k
      for k in (3, 6, 9)]
  np.testing.assert_array_equal(sampling.eval_clip_indices('dense', 20, 4, 2, 3),
                                sampling.multi_clip_indices(20, 4, 2, 3))
  np.testing.assert_array_equal(sampling.eval_clip_indices('uniform', 20, 4, 2, 2),
                                sampling.uniform_multi_clip_indices(20, 4, 2))
  with pytest.raises(ValueError, match="'tsn'"):
    sampling.train_clip_indices('tsn', 20, 4, 1, rng)


# Crops of decoded frames: scale jitter, test views, resize_box.

def test_scale_jitter_box_without_jitter_is_an_integer_crop():
  rng = np.random.default_rng(0)
  positions = set()
  for _ in range(200):
    y, x, h, w = augment.scale_jitter_box(20, 24, 16, rng, factor_range=None)
    assert (h, w) == (16, 16) and float(y).is_integer() and float(x).is_integer()
    positions.add((y, x))
  assert {p[0] for p in positions} == set(range(5))
  assert {p[1] for p in positions} == set(range(9))


def test_scale_jitter_box_scales():
  rng = np.random.default_rng(1)
  # 40x60 frames, shorter side to 20 (scale 1/2), factors in [0.9, 1.33]: a 16-pixel
  # crop covers 16 / (0.5 f) frame pixels, f independent for height and width.
  hs, ws = [], []
  for _ in range(300):
    y, x, h, w = augment.scale_jitter_box(40, 60, 16, rng, min_resize=20,
                                          factor_range=(0.9, 1.33))
    assert 0 <= y and y + h <= 40 + 1e-9 and 0 <= x and x + w <= 60 + 1e-9
    hs.append(h)
    ws.append(w)
  for sides in (hs, ws):
    assert 16 / 0.5 / 1.33 - 1e-6 <= min(sides) < 25.5 and max(sides) > 34
    assert max(sides) <= 16 / 0.5 / 0.9 + 1e-6
  assert not np.allclose(hs, ws)                          # independent factors.


def test_eval_view_boxes():
  # Shorter side 20 -> 30: scale 1.5; 16-pixel crops are 16 / 1.5 frame pixels.
  boxes = augment.eval_view_boxes(20, 30, 16, 3, min_resize=30)
  np.testing.assert_allclose(boxes, np.array(augment.three_crop_boxes(30, 45, 16)) / 1.5)
  assert augment.eval_view_boxes(20, 30, 16, 1) == [(2.0, 7.0, 16.0, 16.0)]
  with pytest.raises(ValueError, match='num_crops=2'):
    augment.eval_view_boxes(20, 30, 16, 2)


@pytest.mark.parametrize('height, width, crop, min_resize', [
    (32, 24, 8, 8), (24, 32, 8, 8), (240, 320, 224, 256), (101, 57, 16, 20)])
def test_eval_view_boxes_stay_inside_frames_the_resize_rounds(height, width, crop, min_resize):
  """Shorter side 24 -> 8 resizes 32 to round(10.67) = 11 rows; the bottom crop then
  ends at the frame's last row (it used to end at 33 of 32, and PIL refused the box)."""
  for num_crops in (1, 3):
    boxes = augment.eval_view_boxes(height, width, crop, num_crops, min_resize)
    for y, x, h, w in boxes:
      assert y >= 0 and x >= 0
      assert y + h <= height + 1e-9 and x + w <= width + 1e-9
  last = augment.eval_view_boxes(height, width, crop, 3, min_resize)[-1]
  assert max(last[0] + last[2] - height, last[1] + last[3] - width) == pytest.approx(0)
  video = _video(t=1, h=height, w=width)
  views = [augment.resize_box(video, b, crop, crop)
           for b in augment.eval_view_boxes(height, width, crop, 3, min_resize)]
  assert all(v.shape == (1, crop, crop, video.shape[-1]) for v in views)


def test_resize_box():
  video = _video(t=2, h=12, w=16)
  np.testing.assert_array_equal(augment.resize_box(video, (2, 3, 8, 8), 8, 8),
                                video[:, 2:10, 3:11])
  smooth = np.broadcast_to(np.linspace(0, 255, 16)[None, None, :, None],
                           (2, 12, 16, 3)).astype(np.uint8)
  out = augment.resize_box(smooth, (0.0, 0.0, 12.0, 16.0), 6, 8)
  assert out.shape == (2, 6, 8, 3) and out.dtype == np.uint8
  np.testing.assert_allclose(out, augment.resize(smooth, 6, 8), atol=2)


# Colour jitter and RandAugment: the same parameters on every frame.

def _still_clip(t=3, seed=0):
  """A clip whose frames are all the same image."""
  frame = _video(t=1, h=16, w=16, seed=seed)
  return np.repeat(frame, t, axis=0)


def test_color_jitter_consistent_and_deterministic():
  clip = _still_clip()
  out = augment.color_jitter(clip, np.random.default_rng(3), strength=1.0, prob=1.0)
  assert out.dtype == np.float32 and out.shape == clip.shape
  assert 0 <= out.min() and out.max() <= 255
  np.testing.assert_array_equal(out[0], out[1])
  np.testing.assert_array_equal(out[0], out[2])
  assert np.abs(out - clip).mean() > 1
  again = augment.color_jitter(clip, np.random.default_rng(3), strength=1.0, prob=1.0)
  np.testing.assert_array_equal(out, again)
  np.testing.assert_array_equal(
      augment.color_jitter(clip, np.random.default_rng(3), prob=0.0), clip)


def test_adjust_hue():
  clip = _video().astype(np.float32)
  np.testing.assert_allclose(augment.adjust_hue(clip, 0.0), clip, atol=1e-3)
  np.testing.assert_allclose(augment.adjust_hue(clip, 1.0), clip, atol=1e-2)
  grey = np.full((1, 2, 2, 3), 100.0, np.float32)       # grey has no hue.
  np.testing.assert_allclose(augment.adjust_hue(grey, 0.3), grey, atol=1e-3)
  assert np.abs(augment.adjust_hue(clip, 0.25) - clip).mean() > 5


@pytest.mark.parametrize('op', augment.RAND_AUGMENT_OPS)
def test_rand_augment_ops_same_on_every_frame(op):
  clip = _still_clip()
  out = augment.apply_rand_augment_op(clip, op, 9, -1.0)
  assert out.shape == clip.shape and out.dtype == np.uint8
  np.testing.assert_array_equal(out[0], out[1])
  np.testing.assert_array_equal(out[0], out[2])
  if op != 'identity':
    assert not np.array_equal(out, clip)


def test_rand_augment_ops_match_pil():
  from PIL import Image, ImageOps
  clip = _video(t=1, h=32, w=32)     # PIL equalizes one image: compare a 1-frame clip.
  image = Image.fromarray(clip[0])
  np.testing.assert_array_equal(augment.apply_rand_augment_op(clip, 'equalize', 5)[0],
                                np.asarray(ImageOps.equalize(image)))
  np.testing.assert_array_equal(augment.apply_rand_augment_op(clip, 'solarize', 5)[0],
                                np.asarray(ImageOps.solarize(image, 128)))
  np.testing.assert_array_equal(augment.apply_rand_augment_op(clip, 'posterize', 5)[0],
                                np.asarray(ImageOps.posterize(image, 6)))
  np.testing.assert_allclose(augment.apply_rand_augment_op(clip, 'auto_contrast', 5)[0],
                             np.asarray(ImageOps.autocontrast(image)), atol=1)


def test_rand_augment_translate_and_determinism():
  clip = _still_clip()
  m = 10 * 4 / (0.45 * 16)       # magnitude of a 4-pixel shift (45% of 16 at 10).
  out = augment.apply_rand_augment_op(clip, 'translate_x', m, 1.0)
  np.testing.assert_array_equal(out[:, :, :12], clip[:, :, 4:])
  assert (out[:, :, 12:] == 128).all()
  a = augment.rand_augment(clip, np.random.default_rng(7), 3, 9)
  b = augment.rand_augment(clip, np.random.default_rng(7), 3, 9)
  np.testing.assert_array_equal(a, b)
  np.testing.assert_array_equal(a[0], a[2])
