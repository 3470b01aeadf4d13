r"""Per-device memory of a training step, replicated vs sharded parameters (FSDP), from
compile-only runs on 8 forced CPU devices (nothing is allocated or executed).

  python -m experiments.fsdp_memory [--size=H] [--patch=14] [--frames=32] \
      [--fsdp=1,8] [--batch_per_device=1] [--remat] [--json=PATH]

The model is ViViT Model 2 (factorised encoder, L_t=4) of configs/kinetics400 with the
ViT size `--size` (Ti/S/B/L/H, or the larger g/G/e/22B), tubelets 2 x patch x patch, `--frames` frames of 224^2,
AdamW (params + two moments in float32). For each fsdp size: the compiled train step's
memory analysis per device: arguments (state + batch), temporaries (activations kept
for the backward pass and workspace), outputs not aliased with donated inputs, and
their sum (the peak a device must hold, as XLA:CPU plans buffers; accelerators plan
similarly but not identically). Prints a markdown table.
"""
import os

os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') +
                           ' --xla_force_host_platform_device_count=8').strip()

import json  # noqa: E402
import time  # noqa: E402

import jax  # noqa: E402
import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402
from jax.sharding import NamedSharding, PartitionSpec as P  # noqa: E402

from vivit_jax import recipes  # noqa: E402
from vivit_jax.train import parallel  # noqa: E402
from vivit_jax.train import setup as setup_lib  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string('size', 'H', 'ViT size: Ti, S, B, L, H, or g, G, e, 22B (LARGER_SIZES).')
flags.DEFINE_integer('patch', 14, 'Spatial patch side (tubelets 2 x patch x patch).')
flags.DEFINE_integer('frames', 32, 'Frames per clip.')
flags.DEFINE_list('fsdp', ['1', '8'], 'fsdp axis sizes to compile.')
flags.DEFINE_integer('batch_per_device', 1, 'Clips per device.')
flags.DEFINE_bool('remat', False, 'Rematerialise each encoder block (model.remat).')
flags.DEFINE_string('json', None, 'Optional path to write the rows as JSON.')

GIB = 2 ** 30
# Larger than ViT-H: (hidden_size, num_layers, num_heads, mlp_dim) of ViT-g/14 and
# ViT-G/14 ("Scaling Vision Transformers", Zhai et al. 2022), ViT-e (PaLI, Chen et al.
# 2022) and ViT-22B's sizes (Dehghani et al. 2023; here with our standard blocks).
LARGER_SIZES = {'g': (1408, 40, 16, 6144), 'G': (1664, 48, 16, 8192),
                'e': (1792, 56, 16, 15360), '22B': (6144, 48, 48, 24576)}


def model2_config(size: str, patch: int, frames: int, fsdp: int, batch: int, remat: bool):
  """configs/kinetics400/vivit_l16x2_factorised_encoder.py at ViT size `size`."""
  import importlib.util
  path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                      'configs', 'kinetics400', 'vivit_l16x2_factorised_encoder.py')
  spec = importlib.util.spec_from_file_location('cfg', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config()
  if size in LARGER_SIZES:
    m = config.model
    m.hidden_size, m.num_layers, m.num_heads, m.mlp_dim = LARGER_SIZES[size]
  else:
    recipes.set_vit_size(config.model, size)
  config.model.patch_size = (patch, patch)
  config.model.remat = remat
  config.dataset.num_frames = frames
  config.trainer.batch_size = batch
  config.trainer.mesh.fsdp = fsdp
  return config


def step_memory(config) -> dict:
  """Compiled per-device memory (bytes) of one training step of `config`."""
  s = setup_lib.model_and_steps(config)
  par = s.par
  mesh = parallel.make_mesh(fsdp=int(config.trainer.mesh.fsdp))
  rows = NamedSharding(mesh, P(mesh.axis_names))
  d = config.dataset
  b = int(config.trainer.batch_size)
  batch = {'video': jax.ShapeDtypeStruct((b, d.num_frames, d.crop_size, d.crop_size, 3),
                                         np.float32, sharding=rows),
           'label': jax.ShapeDtypeStruct((b,), np.int32, sharding=rows)}
  rng = jax.ShapeDtypeStruct((2,), np.uint32,
                             sharding=NamedSharding(mesh, P()))
  state = par.with_sharding(s.abstract_state)
  start = time.time()
  m = par.train_step.lower(state, batch, rng).compile().memory_analysis()
  params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(s.abstract_state.params))
  state_bytes = sum(
      int(np.prod(x.sharding.shard_shape(x.shape))) * x.dtype.itemsize
      for x in jax.tree.leaves(state))
  total = (m.argument_size_in_bytes + m.output_size_in_bytes - m.alias_size_in_bytes
           + m.temp_size_in_bytes)
  return {'params': params, 'state_bytes': state_bytes,
          'argument_bytes': m.argument_size_in_bytes, 'temp_bytes': m.temp_size_in_bytes,
          'output_bytes': m.output_size_in_bytes, 'alias_bytes': m.alias_size_in_bytes,
          'total_bytes': total, 'compile_seconds': time.time() - start}


def main(argv):
  del argv
  assert jax.device_count() == 8, jax.devices()
  rows = []
  for fsdp in map(int, FLAGS.fsdp):
    config = model2_config(FLAGS.size, FLAGS.patch, FLAGS.frames, fsdp,
                           8 * FLAGS.batch_per_device, FLAGS.remat)
    row = {'size': FLAGS.size, 'patch': FLAGS.patch, 'frames': FLAGS.frames,
           'fsdp': fsdp, 'batch_per_device': FLAGS.batch_per_device,
           'remat': FLAGS.remat, **step_memory(config)}
    rows.append(row)
    print(json.dumps(row), flush=True)
  print('\n| ViViT Model 2 | fsdp | params (M) | state / device (GiB) | temporaries (GiB) '
        '| peak / device (GiB) |\n|---|---|---|---|---|---|')
  for r in rows:
    print(f"| {r['size']}/{r['patch']}x2, {r['frames']} frames, {r['batch_per_device']} "
          f"clip/device{', remat' if r['remat'] else ''} | {r['fsdp']} | "
          f"{r['params'] / 1e6:.0f} | {r['state_bytes'] / GIB:.2f} | "
          f"{r['temp_bytes'] / GIB:.2f} | {r['total_bytes'] / GIB:.2f} |")
  if FLAGS.json:
    with open(FLAGS.json, 'w') as f:
      json.dump(rows, f, indent=1)


if __name__ == '__main__':
  app.run(main)
