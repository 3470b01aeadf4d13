"""Checkpoint conversion: start from existing weights, and share the results.

  load_vit_npz(path)        image ViT .npz (vision_transformer / big_vision) -> (config, params)
  load_huggingface(path)    HF ViViT / TimeSformer save_pretrained dir -> (config, params)
  save_huggingface(config, params, out_dir)   the inverse
  load_scenic(path, ...)    Scenic ViViT checkpoint (msgpack / orbax) -> (config, params)
  load_converted(path)      a directory written by save_converted or a training workdir
  save_converted(config, params, out_dir)     the CLI's output (`python -m vivit_jax.convert`)
  init_from(config, params) the trainer's hook for `config.init_from` (initialise.py)

Each loader returns a full ConfigDict and a params tree for
`models.create_model(config.model, config.dataset.num_classes)`. Nothing here unpickles.
"""
from vivit_jax.convert.common import (ConversionError, load_converted, save_converted)
from vivit_jax.convert.initialise import init_from, initialise


def load_vit_npz(path):
  """(config, params) of an image ViT .npz; see vit_npz.py."""
  from vivit_jax.convert import vit_npz
  return vit_npz.load_vit_npz(path)


def load_huggingface(path):
  """(config, params) of a Hugging Face ViViT / TimeSformer directory; see huggingface.py."""
  from vivit_jax.convert import huggingface
  return huggingface.load_huggingface(path)


def save_huggingface(config, params, out_dir):
  """Writes a Hugging Face save_pretrained directory; see huggingface.py."""
  from vivit_jax.convert import huggingface
  return huggingface.save_huggingface(config, params, out_dir)


def load_scenic(path, *args, **kwargs):
  """(config, params) of a Scenic ViViT checkpoint; see scenic.py."""
  from vivit_jax.convert import scenic
  return scenic.load_scenic(path, *args, **kwargs)


__all__ = ['ConversionError', 'init_from', 'initialise', 'load_converted', 'load_huggingface',
           'load_scenic', 'load_vit_npz', 'save_converted', 'save_huggingface']
