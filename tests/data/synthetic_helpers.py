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
  (seed, step, global row); for `synthetic_config` datasets (18x18 videos, crop 16)."""
  o = ds.options
  rng = pipeline.augment_rng(ds.seed, step, row)
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


def global_batches(config, process_count, start_step, num_steps, global_batch):
  """{'video', 'label'} of steps start_step.. start_step + num_steps - 1, each the
  concatenation of the slices of `process_count` datasets built as processes 0..P-1 of P
  would build them (each reading global_batch // P rows, as train_batches yields them)."""
  from vivit_jax import data
  parts = []
  for p in range(process_count):
    ds = data.get_dataset(config, process_index=p, process_count=process_count)
    it = ds.train_batches(start_step, global_batch // process_count)
    parts.append([next(it) for _ in range(num_steps)])
    ds.close()
  return [{k: np.concatenate([steps[s][k] for steps in parts]) for k in ('video', 'label')}
          for s in range(num_steps)]


def assert_same_global_batches(config, global_batch, num_steps, counts=(2, 4)):
  """The global batches of steps 0..num_steps-1 are identical (bit for bit) when read
  by 1 process and by 2 or 4 (which start mid-way, as a run resumed on another
  topology does).
  Returns the labels of the 1-process batches, int32[num_steps, global_batch]."""
  one = global_batches(config, 1, 0, num_steps, global_batch)
  for count in counts:
    start = num_steps // 2 if count == 2 else 0     # resume on another topology.
    other = global_batches(config, count, start, num_steps - start, global_batch)
    for step, batch in enumerate(other, start):
      for key in ('video', 'label'):
        np.testing.assert_array_equal(batch[key], one[step][key],
                                      err_msg=f'P={count} step {step} {key}')
  return np.stack([b['label'] for b in one])
