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
from vivit_jax.convert.common import load_converted, save_converted
from vivit_jax.convert.huggingface import load_huggingface, save_huggingface
from vivit_jax.convert.initialise import init_from, initialise
from vivit_jax.convert.scenic import load_scenic
from vivit_jax.convert.vit_npz import load_vit_npz
from vivit_jax.errors import ConversionError


__all__ = ['ConversionError', 'init_from', 'initialise', 'load_converted', 'load_huggingface',
           'load_scenic', 'load_vit_npz', 'save_converted', 'save_huggingface']
