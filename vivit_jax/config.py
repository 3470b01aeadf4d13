"""Default config groups shared by every config file, and whole-config validation.

Config files under `configs/` start from `default_config()` and override what their
experiment changes, big_vision style. `validate_config` runs before any compute and
raises `ConfigError` naming the field, the bad value and what would be valid.

Groups (see ../shared/DESIGN.md):
  model      architecture; `model.name` picks the family in `models.create_model`.
  dataset    source and the model's input/output sizes (`num_frames`, `crop_size`,
             `num_classes`) plus sampling and augmentation.
  optimizer  optax optimiser (`sgd` with momentum, or `adamw`), weight decay, clipping.
  schedule   learning rate: linear warm-up then cosine (or constant) decay.
  trainer    batch size, steps, cadences, seed, parallelism, precision, loss options.
  init_from  optional checkpoint to initialise from (`init_from.path`, None = random
             init; see `init_from_config`).
"""
from __future__ import annotations

import importlib.util
import pathlib
from typing import Callable, Optional

import ml_collections
from ml_collections.config_dict import placeholder

from vivit_jax.errors import ConfigError, config_error  # noqa: F401  (re-exported)


def load_config(path: str, arg: str | None = None, **kwargs) -> ml_collections.ConfigDict:
  """`get_config(arg, **kwargs)` of the config file at `path` (as `--config=path:arg`
  would, for no kwargs)."""
  path = pathlib.Path(path)
  if not path.is_file():
    raise FileNotFoundError(f'config file {str(path)!r} does not exist')
  spec = importlib.util.spec_from_file_location(f'_config_{path.stem}', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  if arg is None and not kwargs:
    return module.get_config()
  return module.get_config(arg, **kwargs)


def sibling_config(config_file: str, name: str, arg: str | None = None,
                   **kwargs) -> ml_collections.ConfigDict:
  """The config of file `name` next to `config_file` (configs/ is not a package), for
  a config that is a variant of another: `sibling_config(__file__, 'swin_t.py', 'S')`."""
  return load_config(pathlib.Path(config_file).resolve().parent / name, arg, **kwargs)


def default_model_config() -> ml_collections.ConfigDict:
  """ViViT-B/16x2 spatio-temporal (Model 1) defaults, as in the paper's code."""
  m = ml_collections.ConfigDict()
  m.name = 'vivit'
  # 'spatio_temporal' (Model 1), 'factorised_encoder' (Model 2),
  # 'factorised_self_attention' (Model 3), 'factorised_dot_product' (Model 4).
  m.attention_type = 'spatio_temporal'
  # Model 3 only: 'space_time' (spatial attention, then temporal) or 'time_space'
  # (temporal first; Scenic's default, set by its checkpoint importer).
  m.attention_order = 'space_time'
  m.embedding = 'tubelet'          # 'tubelet' (3D patches) or 'uniform_frame' (2D patches).
  m.patch_size = (16, 16)          # spatial patch (height, width) in pixels.
  m.temporal_patch_size = 2        # tubelet length t in frames; must be 1 for uniform_frame.
  m.hidden_size = 768
  m.num_layers = 12                # Model 2: layers of the spatial encoder (L_s).
  m.temporal_num_layers = 4        # Model 2 only: L_t; 0 = the average-pool baseline.
  m.num_heads = 12
  m.mlp_dim = 3072
  m.classifier = 'token'   # 'token' (CLS), or pooled: 'gap' (mean), 'gmp' (max), 'gsp' (sum).
  m.spatial_classifier = 'token'   # Model 2: per-time-slot representation ('token'/'gap').
  m.representation_size = None     # pre-logits Dense+tanh width, None = no pre-logits.
  m.dropout_rate = 0.0
  m.attention_dropout_rate = 0.0
  m.stochastic_depth = 0.0         # drop-path rate of the last layer (linear in depth).
  m.layer_norm_epsilon = 1e-6
  m.gelu_approximate = False       # False: exact erf GELU; True: tanh approximation.
  m.dtype = 'float32'              # compute dtype ('float32' or 'bfloat16').
  m.param_dtype = 'float32'
  # 'xla': fastest correct kernel per backend (CPU: the C++ 'cpu_flash' kernel where it
  # builds and applies, else 'chunked'; GPU: cuDNN where it applies); 'cudnn', 'chunked',
  # 'cpu_flash', 'explicit' force one. See models.layers.
  m.attention_impl = 'xla'
  m.remat = False                  # nn.remat each encoder block (less memory, more compute).
  m.remat_policy = 'nothing_saveable'   # what remat keeps: models.layers.REMAT_POLICIES.
  m.head_bias_init = 0.0
  return m


def shared_model_options(model: ml_collections.ConfigDict, *,
                         layer_norm_epsilon: float = 1e-6) -> ml_collections.ConfigDict:
  """Sets the numerics/memory options every model family has (see default_model_config
  for their meaning): LayerNorm epsilon, exact GELU, fp32 compute and params, the
  backend's default attention kernel, no remat."""
  model.layer_norm_epsilon = layer_norm_epsilon
  model.gelu_approximate = False
  model.dtype = model.param_dtype = 'float32'
  model.attention_impl = 'xla'
  model.remat, model.remat_policy = False, 'nothing_saveable'
  return model


def default_config() -> ml_collections.ConfigDict:
  """Every group with its defaults; config files override fields."""
  c = ml_collections.ConfigDict()
  c.experiment_name = ''
  c.model = default_model_config()

  c.dataset = ml_collections.ConfigDict()
  c.dataset.name = 'synthetic'
  c.dataset.num_frames = 16
  c.dataset.crop_size = 32
  c.dataset.num_classes = 10
  c.dataset.stride = 1                       # frame stride of a dense clip.
  c.dataset.num_test_clips = 1               # temporal views at test time.
  c.dataset.num_test_crops = 1               # spatial views at test time (1 or 3).
  c.dataset.mean_rgb = (0.5, 0.5, 0.5)       # normalisation, pixels in [0, 1].
  c.dataset.std_rgb = (0.5, 0.5, 0.5)
  c.dataset.num_train_examples = 4096        # synthetic only.
  c.dataset.num_eval_examples = 512          # synthetic only (validation and test each).
  c.dataset.seed = 0                         # synthetic generation seed.
  # Decoded sources ('video_files', 'tfrecord', 'tfds'; see vivit_jax/data/).
  c.dataset.data_dir = ''                    # index/class folders, shards, TFDS data_dir.
  c.dataset.splits = ml_collections.ConfigDict(  # split -> file stem/folder/glob/TFDS split.
      {'train': 'train', 'validation': 'validation', 'test': 'test'})
  c.dataset.tfds_name = ''                   # e.g. 'ucf101' (name='tfds').
  c.dataset.video_key = 'video'              # TFDS feature names.
  c.dataset.label_key = 'label'
  c.dataset.label_names = placeholder(object)  # list or .txt/.json file; None = from data.
  c.dataset.temporal_sampling = 'dense'      # 'dense' (stride) or 'uniform' (segments).
  c.dataset.min_resize = placeholder(int)    # shorter side before cropping; None = keep.
  c.dataset.scale_jitter = placeholder(tuple)  # (lo, hi) factors, e.g. (0.9, 1.33).
  c.dataset.scale_jitter_prob = 1.0
  c.dataset.crop_area_range = placeholder(tuple)  # Inception crop area fractions.
  c.dataset.random_flip = False              # keep False where left/right is a label.
  c.dataset.color_jitter = 0.0               # strength; 0 = off.
  c.dataset.randaugment_layers = 0           # ops per clip; 0 = off.
  c.dataset.randaugment_magnitude = 9.0      # in [0, 10].
  c.dataset.num_workers = 2                  # decoding workers; 0 = in the main thread.
  c.dataset.worker_type = 'thread'           # 'thread', or 'process' (TFRecord/TFDS: GIL).
  c.dataset.prefetch_batches = 2             # batches decoded ahead of the trainer.
  c.dataset.max_failure_fraction = 0.1       # failed reads of a split before stopping.

  c.optimizer = ml_collections.ConfigDict()
  c.optimizer.name = 'sgd'                   # 'sgd' (momentum) or 'adamw'.
  c.optimizer.momentum = 0.9
  c.optimizer.nesterov = False
  c.optimizer.b1 = 0.9
  c.optimizer.b2 = 0.999
  c.optimizer.weight_decay = 0.0             # decoupled; skips biases, norms, embeddings.
  c.optimizer.grad_clip_norm = 1.0           # global-norm clipping; None/0 = off.

  c.schedule = ml_collections.ConfigDict()
  c.schedule.name = 'warmup_cosine'          # 'warmup_cosine' or 'constant'.
  c.schedule.base_lr = 0.1
  c.schedule.warmup_steps = 100
  c.schedule.end_lr = 0.0

  c.trainer = ml_collections.ConfigDict()
  c.trainer.batch_size = 32                  # global batch over all devices and hosts.
  c.trainer.num_train_steps = 1000
  c.trainer.log_every = 50
  c.trainer.eval_every = 250
  c.trainer.checkpoint_every = 250
  c.trainer.keep_checkpoints = 3
  c.trainer.seed = 0
  c.trainer.parallelism = 'jit'              # 'jit' (mesh + NamedSharding) or 'pmap'.
  c.trainer.cpu_devices = 1                  # CPU backend: split the cores into this many
                                             # devices (main; capped at the cores).
  c.trainer.grad_accum_steps = 1
  c.trainer.label_smoothing = 0.0
  c.trainer.mixup_alpha = 0.0                # 0 = no mixup.
  c.trainer.eval_batch_size = 32
  c.trainer.prefetch_to_device = 2           # batches put on device ahead of the step.
  c.trainer.test_at_end = True               # main: multi-view test eval after training.
  c.trainer.temporal_control = 'none'       # 'shuffle' / 'single_frame': space-only controls.

  c.init_from = init_from_config()
  return c


def init_from_config(path=None, **overrides) -> ml_collections.ConfigDict:
  """The `init_from` group: where the trainer's initial params come from (see
  vivit_jax/convert/initialise.py). `path=None` is a random init.

    path                     a ViT .npz, a converted dir (`python -m vivit_jax.convert`),
                             a vivit_jax workdir, a Hugging Face dir or a Scenic checkpoint.
    format                   None (guessed) or 'vit_npz' / 'vivit_jax' / 'huggingface' /
                             'scenic'.
    checkpoint               vivit_jax workdirs: None (newest), 'best' or a step dir.
    kernel_init              2D -> tubelet patch kernel: 'central_frame' (the kernel at
                             t // 2, zeros elsewhere) or 'average' (kernel / t everywhere).
    temporal_attention_init  Model 3 / TimeSformer temporal attention: 'copy_spatial'
                             (the spatial attention and LayerNorm copied) or 'zeros'
                             (zero output projection: each block starts as the image block).
    restore_head             restore output_projection when its shape matches (a head of
                             another class count is always re-initialised).
    scenic_config            Scenic sources: their config (a path to a config file), or
    source_num_frames, source_crop_size, source_attention_type   the facts it gives.
  """
  text = lambda: ml_collections.config_dict.placeholder(str)   # one reference each.
  number = lambda: ml_collections.config_dict.placeholder(int)
  ic = ml_collections.ConfigDict({
      'path': text(), 'format': text(), 'checkpoint': text(), 'kernel_init': 'central_frame',
      'temporal_attention_init': 'copy_spatial', 'restore_head': True,
      'scenic_config': text(), 'source_num_frames': number(), 'source_crop_size': number(),
      'source_attention_type': text()})
  # Typed placeholders (None until set), so `--config.init_from.path=...` works.
  ic.update(dict(overrides, path=path) if path is not None else overrides)
  return ic


VIT_SIZES = {  # (hidden_size, num_layers, num_heads, mlp_dim) of the ViT paper.
    'Ti': (192, 12, 3, 768),
    'S': (384, 12, 6, 1536),
    'B': (768, 12, 12, 3072),
    'L': (1024, 24, 16, 4096),
    'H': (1280, 32, 16, 5120),
}


def set_vit_size(model: ml_collections.ConfigDict, size: str) -> ml_collections.ConfigDict:
  """Sets hidden_size/num_layers/num_heads/mlp_dim of `model` to ViT-`size`."""
  model.hidden_size, model.num_layers, model.num_heads, model.mlp_dim = VIT_SIZES[size]
  return model


def kinetics400_recipe(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The ViViT paper's Kinetics-400 data and optimisation recipe (appendix A):
  32 frames at stride 2, 224^2 crops, 4 temporal x 3 spatial test views, SGD momentum
  0.9, batch 64, lr 0.1 with linear warm-up (2.5 epochs) and cosine decay over 30 epochs.
  """
  d = config.dataset
  d.name = 'tfrecord'
  d.data_dir = ''                           # shards of SequenceExamples (see data/).
  d.num_frames, d.stride, d.crop_size, d.num_classes = 32, 2, 224, 400
  d.num_test_clips, d.num_test_crops = 4, 3
  d.min_resize = 256
  d.scale_jitter = (0.9, 1.33)
  d.random_flip = True
  d.mean_rgb, d.std_rgb = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)
  d.num_train_examples = 240_000            # approx. Kinetics-400 train clips.
  steps_per_epoch = d.num_train_examples // 64
  config.optimizer.name, config.optimizer.momentum = 'sgd', 0.9
  config.optimizer.weight_decay, config.optimizer.grad_clip_norm = 0.0, 1.0
  config.schedule.name, config.schedule.base_lr = 'warmup_cosine', 0.1
  config.schedule.warmup_steps = int(2.5 * steps_per_epoch)
  t = config.trainer
  t.batch_size, t.num_train_steps = 64, 30 * steps_per_epoch
  t.log_every, t.eval_every, t.checkpoint_every = 100, 5000, 1000
  t.label_smoothing, t.mixup_alpha = 0.1, 0.3
  config.model.stochastic_depth = 0.3
  return config


def synthetic_transformer(model: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The CPU-sized transformer of the synthetic configs: tubelets 8x4x4 on 16x32x32 clips
  (2x8x8 = 128 tokens), hidden 64, 2 layers, 4 heads, MLP 256.

  Measured on the synthetic task (Model 1, validation top-1 after 2000 steps, with the
  earlier rotation classes): 8x8 patches (t=2 or 4) learned the moves but not the
  direction of growth (57-60%), 4x4 patches did better (t=4: 70% with 256 tokens; t=8:
  70-74% at half the cost). At 1500 steps neither 4 layers (67%) nor lr 3e-3 (57%) beat
  this model (72%)."""
  model.embedding, model.patch_size, model.temporal_patch_size = 'tubelet', (4, 4), 8
  model.hidden_size, model.num_layers, model.num_heads, model.mlp_dim = 64, 2, 4, 256
  return model


def tiny_transformer(model: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Test-sized transformer for the synthetic 'tiny' arg (4x8x8 clips, patches 2x4x4)."""
  model.hidden_size, model.num_layers, model.num_heads, model.mlp_dim = 16, 1, 2, 32
  model.patch_size, model.temporal_patch_size = (4, 4), 2
  if model.get('attention_type') == 'factorised_encoder':
    model.temporal_num_layers = 1
  return model


SYNTHETIC_ARGS = ('tiny', 'shuffle', 'single_frame')


def synthetic_recipe(config: ml_collections.ConfigDict, arg: Optional[str] = None, *,
                     tiny_model: Callable = tiny_transformer,
                     base_lr: float = 1e-3,
                     warmup_steps: int = 100) -> ml_collections.ConfigDict:
  """Data, optimisation and trainer of the synthetic motion task; then applies `arg`.

  16 frames of 32x32, 10 classes, 16384 training videos; AdamW at `base_lr` (1e-3;
  the factorised ViViT Models 2-4 pass 3e-4: at 1e-3 they sat on the initial loss
  plateau until the cosine had brought the rate down to about 5e-4), warm-up
  `warmup_steps` (100) + cosine, batch 32, 4000 steps on two CPU devices where the
  backend is a CPU (Model 1: about 7 minutes on 2 cores, test included); the test
  split is read as 3 clips x 3 crops (the papers' multi-view protocol). `arg` is
  comma-separated (`--config=configs/synthetic/x.py:tiny,shuffle`):
    tiny          test-sized data and trainer (seconds on CPU); `tiny_model(model)`
                  shrinks the model (each family passes its own).
    shuffle       space-only control: frames shuffled (one random permutation per batch).
    single_frame  space-only control: the middle frame repeated. Controls stay near
                  chance on the synthetic task, whose classes differ only in motion.
  """
  d = config.dataset
  d.name, d.num_frames, d.crop_size, d.num_classes = 'synthetic', 16, 32, 10
  d.num_train_examples = 16384     # underfits rather than overfits at this budget.
  d.num_test_clips = d.num_test_crops = 3   # test: 3 clips x 3 crops, softmax-averaged.
  o = config.optimizer
  o.name, o.weight_decay, o.grad_clip_norm = 'adamw', 1e-4, 1.0
  s = config.schedule
  s.name, s.base_lr, s.warmup_steps = 'warmup_cosine', base_lr, warmup_steps
  t = config.trainer
  t.batch_size, t.eval_batch_size, t.num_train_steps = 32, 64, 4000
  t.log_every, t.eval_every, t.checkpoint_every = 100, 1000, 1000
  t.cpu_devices = 2                # on a CPU: two data-parallel devices, ~1.2x steps/s.
  for a in (arg or '').split(','):
    a = a.strip()
    if not a:
      continue
    if a == 'tiny':
      tiny_model(config.model)
      d.num_frames, d.crop_size = 4, 8
      d.num_train_examples, d.num_eval_examples = 256, 64
      d.num_test_clips = d.num_test_crops = 1
      t.batch_size = t.eval_batch_size = 16
      t.num_train_steps = 20
      t.log_every = t.eval_every = t.checkpoint_every = 10
      s.warmup_steps = 2
    elif a in ('shuffle', 'single_frame'):
      t.temporal_control = a
      config.experiment_name += '_' + a
    else:
      raise config_error('arg', a, f'comma-separated values from {list(SYNTHETIC_ARGS)}')
  return config


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Raises ConfigError for any field that cannot work; call before any compute."""
  # Imported here so `vivit_jax.config` stays importable without the model zoo.
  from vivit_jax import models

  for group in ('model', 'dataset', 'trainer'):
    if group not in config:
      raise config_error(group, None, f'a `{group}` group (start from '
                         'vivit_jax.config.default_config())')
  d = config.dataset
  for field in ('num_frames', 'crop_size', 'num_classes'):
    value = d.get(field)
    if not isinstance(value, int) or value < 1:
      raise config_error(f'dataset.{field}', value, 'a positive integer')
  models.validate_model_config(config.model, num_frames=d.num_frames,
                               crop_size=d.crop_size)
  _validate_dataset_fields(d)
  t = config.trainer
  if not isinstance(t.batch_size, int) or t.batch_size < 1:
    raise config_error('trainer.batch_size', t.batch_size, 'a positive integer')
  if t.get('parallelism', 'jit') not in ('jit', 'pmap'):
    raise config_error('trainer.parallelism', t.parallelism, "one of 'jit', 'pmap'")
  cpu_devices = t.get('cpu_devices', 1)
  if not _is_int(cpu_devices, 1):
    raise config_error('trainer.cpu_devices', cpu_devices, 'a positive integer')
  prefetch = t.get('prefetch_to_device', 2)
  if not _is_int(prefetch, 0):
    raise config_error('trainer.prefetch_to_device', prefetch,
                       'a non-negative integer (0 = no prefetch)')
  from vivit_jax.models import layers   # pylint: disable=import-outside-toplevel
  policy = config.model.get('remat_policy', 'nothing_saveable')
  if policy not in layers.REMAT_POLICIES:
    raise config_error('model.remat_policy', policy, f'one of {sorted(layers.REMAT_POLICIES)}')


def _is_int(v, lo: int) -> bool:
  """Whether `v` is an int (not a bool) >= lo."""
  return isinstance(v, int) and not isinstance(v, bool) and v >= lo


def _validate_dataset_fields(d: ml_collections.ConfigDict) -> None:
  """Sampling/augmentation fields of the decoded sources (absent fields are fine)."""
  def check(field, ok, expected):
    if field in d and d[field] is not None and not ok(d[field]):
      raise config_error(f'dataset.{field}', d[field], expected)

  def is_range(v):
    return (isinstance(v, (tuple, list)) and len(v) == 2
            and all(isinstance(x, (int, float)) for x in v) and 0 < v[0] <= v[1])

  check('temporal_sampling', lambda v: v in ('dense', 'uniform'),
        "one of 'dense', 'uniform'")
  check('stride', lambda v: _is_int(v, 1), 'a positive integer')
  check('num_test_clips', lambda v: _is_int(v, 1), 'a positive integer')
  check('num_test_crops', lambda v: v in (1, 3), '1 (centre) or 3')
  check('min_resize', lambda v: _is_int(v, d.crop_size),
        f'None or an integer >= dataset.crop_size={d.crop_size}')
  check('scale_jitter', is_range, 'None or (lo, hi) with 0 < lo <= hi, e.g. (0.9, 1.33)')
  check('crop_area_range', lambda v: is_range(v) and v[1] <= 1,
        'None or (lo, hi) with 0 < lo <= hi <= 1')
  check('scale_jitter_prob', lambda v: 0 <= v <= 1, 'a probability in [0, 1]')
  check('random_flip', lambda v: isinstance(v, bool), 'True or False')
  check('color_jitter', lambda v: isinstance(v, (int, float)) and v >= 0,
        'a strength >= 0 (0 = off)')
  check('randaugment_layers', lambda v: _is_int(v, 0), 'an integer >= 0 (0 = off)')
  check('randaugment_magnitude', lambda v: 0 <= v <= 10, 'a magnitude in [0, 10]')
  check('num_workers', lambda v: _is_int(v, 0), 'an integer >= 0 (0 = no workers)')
  from vivit_jax.data.pipeline import WORKER_TYPES   # pylint: disable=import-outside-toplevel
  check('worker_type', lambda v: v in WORKER_TYPES, f'one of {WORKER_TYPES}')
  check('prefetch_batches', lambda v: _is_int(v, 1), 'a positive integer')
  check('max_failure_fraction', lambda v: 0 <= v <= 1, 'a fraction in [0, 1]')
  for field in ('mean_rgb', 'std_rgb'):
    check(field, lambda v: len(v) == 3 and (field == 'mean_rgb' or min(v) > 0),
          '3 per-channel values (std > 0)')
