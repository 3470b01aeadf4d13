r"""Convert a checkpoint into this project's format, or export one to Hugging Face.

  python -m vivit_jax.convert --from=vit_npz ViT-B_16.npz --out=/tmp/vit_b16
  python -m vivit_jax.convert --from=huggingface /path/to/vivit-b-16x2-kinetics400 \
      --out=/tmp/vivit_k400
  python -m vivit_jax.convert --from=scenic /path/to/checkpoint_30000 --num_frames=32 \
      --out=/tmp/scenic_m1            (or --scenic_config=/path/to/scenic_config.py)
  python -m vivit_jax.convert --from=vivit_jax /tmp/run --to=huggingface --out=/tmp/hf

The default output (`--to=vivit_jax`) is a directory with config.json, params/ (orbax)
and config.py (`get_config()` returning that config), usable as
  --config.init_from.path=DIR                      (initialise a training run),
  python -m vivit_jax.main --config=DIR/config.py --workdir=W --mode=eval --checkpoint=DIR
  python -m vivit_jax.predict --checkpoint=DIR --config=DIR/config.py VIDEO...
`--to=huggingface` writes a save_pretrained directory (config.json, model.safetensors,
preprocessor_config.json) for ViViT Model 1 and TimeSformer.
"""
from __future__ import annotations

import os

from absl import app, flags, logging

from vivit_jax import cli, convert
from vivit_jax.config import validate_config
from vivit_jax.errors import ConversionError

SOURCES = ('vit_npz', 'scenic', 'huggingface', 'vivit_jax')

_FROM = flags.DEFINE_enum('from', None, list(SOURCES), 'Source checkpoint format.')
_OUT = flags.DEFINE_string('out', None, 'Output directory (must not exist or be empty).')
_TO = flags.DEFINE_enum('to', 'vivit_jax', ['vivit_jax', 'huggingface'], 'Output format.')
_CHECKPOINT = flags.DEFINE_string('checkpoint', None,
                                  "--from=vivit_jax workdirs: 'latest', 'best' or a path.")
_NUM_FRAMES = flags.DEFINE_integer('num_frames', None, 'Scenic: the clip length.')
_CROP_SIZE = flags.DEFINE_integer('crop_size', None, 'Scenic: the crop size in pixels.')
_ATTENTION = flags.DEFINE_string('attention_type', None,
                                 "Scenic: e.g. 'factorized_dot_product_attention'.")
_SCENIC_CONFIG = flags.DEFINE_string('scenic_config', None, "Scenic: the run's config file.")
_CLASSIFIER = flags.DEFINE_enum('classifier', None, ['token', 'gap', 'gmp', 'gsp'],
                                "Scenic: model.classifier of a model without CLS tokens.")
_LABEL_GROUPS = flags.DEFINE_string(
    'label_groups', None, "Scenic multi-head models: 'name:size,...' in logit order, e.g. "
    "'noun:300,verb:97' (its split_names and class_splits).")
flags.mark_flags_as_required(['from', 'out'])

_CONFIG_PY = '''"""Config of a converted checkpoint (written by `python -m vivit_jax.convert`)."""
import os

from vivit_jax.convert.common import config_from_json


def get_config(arg=None):
  del arg
  path = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'config.json')
  with open(path) as f:
    return config_from_json(f.read())
'''


def parse_label_groups(text):
  """'noun:300,verb:97' -> (('noun', 300), ('verb', 97)); None stays None."""
  if not text:
    return None
  groups = []
  for item in text.split(','):
    name, _, size = item.partition(':')
    if not name.strip() or not size.strip().isdigit():
      raise ConversionError(f"--label_groups={text!r} is invalid: expected 'name:size,...', "
                            "e.g. 'noun:300,verb:97'.")
    groups.append((name.strip(), int(size)))
  return tuple(groups)


def load(source: str, path: str):
  """(config, params) of `path` in format `source` (see SOURCES)."""
  if source == 'vit_npz':
    return convert.load_vit_npz(path)
  if source == 'huggingface':
    return convert.load_huggingface(path)
  if source == 'scenic':
    return convert.load_scenic(path, _SCENIC_CONFIG.value, num_frames=_NUM_FRAMES.value,
                               crop_size=_CROP_SIZE.value,
                               attention_type=_ATTENTION.value,
                               classifier=_CLASSIFIER.value,
                               label_groups=parse_label_groups(_LABEL_GROUPS.value))
  return convert.load_converted(path, _CHECKPOINT.value)


def main(argv):
  if len(argv) != 2:
    raise app.UsageError(f'Expected one source path, got {argv[1:]}.')
  source, path, out = _FROM.value, argv[1], _OUT.value
  if not os.path.exists(path):
    raise app.UsageError(f'{path} does not exist.')
  config, params = load(source, path)
  validate_config(config)
  if _TO.value == 'huggingface':
    out = convert.save_huggingface(config, params, out)
  else:
    out = convert.save_converted(config, params, out, source=f'{source}:{os.path.abspath(path)}')
    with open(os.path.join(out, 'config.py'), 'w') as f:
      f.write(_CONFIG_PY)
  m = config.model
  print(f'Wrote {out}: {m.name} {m.get("attention_type", "")} '
        f'({config.dataset.num_frames} frames, {config.dataset.crop_size} px, '
        f'{config.dataset.num_classes} classes).')
  logging.info('Done.')


if __name__ == '__main__':
  cli.run(main)
