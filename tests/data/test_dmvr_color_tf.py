"""Our Scenic/DMVR colour augmentation against the TensorFlow ops DMVR's
`color_default_augm` calls (tf.image.adjust_brightness/saturation/contrast/hue,
rgb_to_grayscale), including pixels pushed outside [0, 1] by the brightness step.
Skipped where TensorFlow is not installed."""
import numpy as np
import pytest

from vivit_jax.data import augment

tf = pytest.importorskip('tensorflow')


def _frames():
  rng = np.random.default_rng(0)
  f = rng.integers(0, 256, (4, 20, 24, 3)).astype(np.float32) / 255 + 0.1
  f[0, :3] -= 0.5          # rows with every channel <= 0.
  f[1, :2] += 0.3          # rows above 1.
  return f


@pytest.mark.parametrize('factor', [0.0, 0.6, 1.0, 1.4])
def test_saturation_and_contrast_match_tf(factor):
  f = _frames()
  np.testing.assert_allclose(augment.adjust_saturation(f, factor),
                             tf.image.adjust_saturation(f, factor).numpy(), atol=1e-5)
  np.testing.assert_allclose(augment.adjust_contrast(f, factor),
                             tf.image.adjust_contrast(f, factor).numpy(), atol=1e-5)


@pytest.mark.parametrize('delta', [-0.2, 0.0, 0.13, 0.2])
def test_hue_matches_tf(delta):
  f = _frames()
  np.testing.assert_allclose(augment.adjust_hue_hsv(f, delta),
                             tf.image.adjust_hue(f, delta).numpy(), atol=1e-5)


def test_color_augment_and_drop_match_dmvr_order():
  x = _frames().clip(0, 1)
  params = (0.1, 1.3, 0.7, -0.15)
  t = tf.image.adjust_brightness(x, params[0])
  t = tf.image.adjust_saturation(t, params[1])
  t = tf.image.adjust_contrast(t, params[2])
  t = tf.image.adjust_hue(t, params[3])
  t = tf.clip_by_value(t, 0.0, 1.0)
  np.testing.assert_allclose(augment.apply_dmvr_color(x, params), t.numpy(), atol=1e-5)
  gray = tf.tile(tf.image.rgb_to_grayscale(x), [1, 1, 1, 3]).numpy()
  np.testing.assert_allclose(augment.to_grayscale(x), gray, atol=1e-6)
  pixels = (x * 255).astype(np.uint8)
  np.testing.assert_array_equal(augment._tf_gray_uint8(pixels),
                                tf.image.rgb_to_grayscale(pixels).numpy())
