r"""Ship a trained or imported checkpoint as a StableHLO module or a TensorFlow SavedModel.

  python -m vivit_jax.export --workdir=/tmp/run --format=stablehlo --out=/tmp/vivit.shlo
  python -m vivit_jax.export --workdir=/tmp/run --checkpoint=best --format=saved_model \
      --out=/tmp/vivit_saved_model

Both take one view per clip, T = dataset.num_frames frames of S x S = dataset.crop_size
pixels, RGB, with a symbolic batch size B; cutting a video into the config's test views
and aggregating them (`trainer.view_aggregation`) is the caller's job (the sidecar says
how; vivit_jax.inference.test_views does it in Python).

--format=stablehlo writes OUT: `jax.export` serialized bytes of
    normalised video float32[B, T, S, S, 3] -> logits float32[B, K],
  with the parameters baked in as constants: one self-contained file a server loads with
  `jax.export.deserialize(open(OUT, 'rb').read()).call(video)` (no flax, no params tree
  to rebuild; the price: the file holds the weights (4 bytes per float32 parameter) and must
  stay under the 2 GB limit of one serialized module). Beside it, OUT.json (the sidecar):
  input shape/dtype/layout, the normalisation ((pixels / 255 - mean_rgb) / std_rgb), the
  test-view protocol, num_classes, label_names, config name, checkpoint, platforms.
--format=saved_model writes the directory OUT: a SavedModel (jax2tf native serialization:
  the jax.export module runs inside TensorFlow through `XlaCallModule`) whose
  `serving_default` signature takes `frames: uint8[B, T, S, S, 3]` (raw RGB pixels of the
  cropped view), normalises them exactly as `data.augment.normalize` (float32
  `pixels * scale - shift`) and returns `logits` and `probabilities` (softmax),
  float32[B, K]. The parameters are TF variables (the variables/ folder), not graph
  constants, so large models stay under the 2 GB protobuf limit. The sidecar is
  OUT/vivit_jax.json.

The forward pass is traced with portable ops only (`ops.switches.flop_counting()`:
explicit attention, XLA dots; none of the C++ CPU kernels or cuDNN custom calls), for
the platforms of --platforms (default cpu,cuda), so an export made on a CPU runs on a GPU.
"""
from __future__ import annotations

import json
import os
import sys
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from vivit_jax import cli
from vivit_jax.data import augment
from vivit_jax.errors import ConfigError
from vivit_jax.inference import define_checkpoint_flags, label_names, load_from_flags
from vivit_jax.ops import switches

FORMATS = ('stablehlo', 'saved_model')
PLATFORMS = ('cpu', 'cuda', 'rocm', 'tpu')
SIDECAR_NAME = 'vivit_jax.json'   # inside a SavedModel directory.


def _define_flags():
  """The CLI flags, defined only when run as a program (see predict.py)."""
  define_checkpoint_flags(clip_size=False)
  flags.DEFINE_string('format', None, f'One of {", ".join(FORMATS)}.')
  flags.DEFINE_string('out', None, 'Output file (stablehlo) or directory (saved_model).')
  flags.DEFINE_list('platforms', ['cpu', 'cuda'], 'Platforms the module is lowered for.')


def check_args(fmt, out, platforms: Sequence[str]) -> tuple[str, ...]:
  """Raises ConfigError naming a bad --format / --out / --platforms (before any load)."""
  if fmt not in FORMATS:
    raise ConfigError(f'--format={fmt!r} is invalid: expected one of {", ".join(FORMATS)}.')
  if not out:
    raise ConfigError('--out is missing: expected the file (stablehlo) or directory '
                      '(saved_model) to write.')
  bad = [p for p in platforms if p not in PLATFORMS]
  if bad or not platforms:
    raise ConfigError(f'--platforms={",".join(platforms)!r} is invalid: expected a '
                      f'comma-separated subset of {", ".join(PLATFORMS)}.')
  return tuple(platforms)


def _input_spec(config, batch, dtype):
  d = config.dataset
  return jax.ShapeDtypeStruct((batch, d.num_frames, d.crop_size, d.crop_size, 3), dtype)


def apply_portable(model, params, video):
  """logits float32[B, K] of `video`, traced with portable ops only (no custom calls;
  see the module docstring)."""
  with switches.flop_counting():
    return model.apply({'params': params}, video, train=False)


def export_stablehlo(model, params, config, platforms=('cpu', 'cuda')):
  """jax.export.Exported of `video float32[B, T, S, S, 3] -> logits float32[B, K]` with
  `params` baked in and B symbolic."""
  batch, = jax.export.symbolic_shape('B')
  forward = jax.jit(lambda video: apply_portable(model, params, video))
  return jax.export.export(forward, platforms=platforms)(
      _input_spec(config, batch, jnp.float32))


def preprocess(frames, config):
  """float32[..., 3]: uint8 RGB `frames` normalised as `data.augment.normalize` does
  (same float32 constants, `pixels * scale - shift`)."""
  scale, shift = augment.normalize_affine(config.dataset.mean_rgb, config.dataset.std_rgb)
  return frames.astype(jnp.float32) * scale - shift


def serve(model, config):
  """`(params, frames uint8[B, T, S, S, 3]) -> {'logits', 'probabilities'}`, float32[B, K]."""
  def fn(params, frames):
    logits = apply_portable(model, params, preprocess(frames, config))
    return {'logits': logits, 'probabilities': jax.nn.softmax(logits, axis=-1)}
  return fn


def save_saved_model(model, params, config, out: str, platforms=('cpu', 'cuda')) -> None:
  """Writes the SavedModel directory `out` (see the module docstring)."""
  import tensorflow as tf
  from jax.experimental import jax2tf
  tf.config.set_visible_devices([], 'GPU')   # never take accelerator memory.
  d = config.dataset
  fn = jax2tf.convert(serve(model, config), polymorphic_shapes=[None, '(B, ...)'],
                      native_serialization_platforms=platforms, with_gradient=False)
  module = tf.Module()
  module.params = jax.tree.map(lambda p: tf.Variable(np.asarray(p), trainable=False),
                               params)
  spec = tf.TensorSpec([None, d.num_frames, d.crop_size, d.crop_size, 3], tf.uint8,
                       name='frames')
  module.serving = tf.function(lambda frames: fn(module.params, frames),
                               input_signature=[spec], autograph=False)
  tf.saved_model.save(module, out, signatures={'serving_default': module.serving})


def sidecar(config, fmt: str, names: Sequence[str], step_dir: str, platforms) -> dict:
  """What a server needs to call the export (written as JSON next to it)."""
  d = config.dataset
  dtype = 'float32' if fmt == 'stablehlo' else 'uint8'
  return {
      'format': fmt,
      'config_name': config.get('experiment_name', '') or '',
      'model': config.model.name,
      'checkpoint': step_dir,
      'platforms': list(platforms),
      'input': {'name': 'video' if fmt == 'stablehlo' else 'frames',
                'shape': ['B', d.num_frames, d.crop_size, d.crop_size, 3],
                'dtype': dtype, 'layout': 'batch, time, height, width, RGB',
                'normalised': fmt == 'stablehlo'},
      'normalisation': {'formula': '(pixels / 255 - mean_rgb) / std_rgb',
                        'mean_rgb': [float(v) for v in d.mean_rgb],
                        'std_rgb': [float(v) for v in d.std_rgb],
                        'done_by': 'caller' if fmt == 'stablehlo' else 'model'},
      'outputs': (['logits'] if fmt == 'stablehlo' else ['logits', 'probabilities']),
      'test_views': {'num_test_clips': int(d.get('num_test_clips', 1)),
                     'num_test_crops': int(d.get('num_test_crops', 1)),
                     'min_resize': d.get('min_resize', None),
                     'stride': d.get('stride', None),
                     'temporal_sampling': d.get('temporal_sampling', None),
                     'view_aggregation': config.trainer.get('view_aggregation',
                                                            'softmax')},
      'num_classes': int(d.num_classes),
      'label_names': list(names),
  }


def _write_json(path: str, value: dict) -> None:
  with open(path, 'w') as f:
    json.dump(value, f, indent=2)
    f.write('\n')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  FLAGS = flags.FLAGS
  platforms = check_args(FLAGS.format, FLAGS.out, FLAGS.platforms)
  config, model, params, step_dir = load_from_flags(FLAGS, clip_size=False)
  names = label_names(config, config.dataset.num_classes,
                      [FLAGS.workdir, FLAGS.checkpoint, step_dir])
  info = sidecar(config, FLAGS.format, names, step_dir, platforms)
  out = FLAGS.out
  if FLAGS.format == 'stablehlo':
    exported = export_stablehlo(model, params, config, platforms)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, 'wb') as f:
      f.write(exported.serialize())
    _write_json(out + '.json', info)
    print(f'wrote {out} ({os.path.getsize(out) / 2**20:.1f} MiB) and {out}.json')
  else:
    save_saved_model(model, params, config, out, platforms)
    _write_json(os.path.join(out, SIDECAR_NAME), info)
    print(f'wrote SavedModel {out} (serving_default: frames uint8'
          f'{list(info["input"]["shape"])} -> logits, probabilities)')
  return 0


if __name__ == '__main__':
  _define_flags()
  cli.run(lambda argv: sys.exit(main(argv)))
