"""Small synthetic configs and an independent reference for the pipeline's training clips,
shared by the synthetic-source and augmentation tests."""
import ml_collections
import numpy as np

from vivit_jax.data import augment, pipeline, sampling


def synthetic_config(**dataset):
  """A synthetic dataset config: 96 train / 40 eval videos, 8-frame 16x16 clips cut from
  the generated 18x18 videos, no augmentation; `dataset` overrides fields."""
  c = ml_collections.ConfigDict()
  c.dataset = ml_collections.ConfigDict(dict(
      name='synthetic', num_frames=8, crop_size=16, num_classes=10, stride=1,
      num_test_clips=1, num_test_crops=1, mean_rgb=(0.5, 0.5, 0.5),
      std_rgb=(0.5, 0.5, 0.5), num_train_examples=96, num_eval_examples=40, seed=0))
  c.dataset.update(dataset)
  c.trainer = ml_collections.ConfigDict(dict(seed=0))
  return c


def expected_train_clip(ds, step, row, index):
  """Training clip `row` of `step` (example `index`) computed directly from the sampling
  and augment functions, in the pipeline's order, with the random stream of
  (seed, step, process, row); for `synthetic_config` datasets (18x18 videos, crop 16)."""
  o = ds.options
  rng = np.random.default_rng([ds.seed, pipeline._AUGMENT, ds.process_index, step, row])
  video = ds.readers['train'].videos[index]
  frames = video[sampling.train_clip_indices(o.temporal_sampling, len(video),
                                             o.num_frames, o.stride, rng)]
  if o.crop_area_range is not None:
    box = augment.random_resized_crop_box(18, 18, rng, o.crop_area_range,
                                          o.crop_aspect_range or (3 / 4, 4 / 3))
  else:
    box = augment.scale_jitter_box(18, 18, 16, rng, factor_range=o.scale_jitter)
  clip = augment.resize_box(frames, box, 16, 16)
  if o.randaugment_layers:
    clip = augment.rand_augment_clip(clip, rng, o.randaugment_ops, o.randaugment_layers,
                                     o.randaugment_magnitude, o.randaugment_magnitude_std)
  if o.color_jitter:
    clip = augment.color_jitter(clip, rng, o.color_jitter)
  if o.color_augment_prob or o.color_drop_prob:
    clip = augment.dmvr_color_augment(clip, rng, o.color_augment_prob, o.color_drop_prob)
  clip = augment.normalize(clip, (0.5,) * 3, (0.5,) * 3)
  if o.random_erasing_prob:
    clip = augment.random_erasing(clip, rng, o.random_erasing_prob)
  return clip
