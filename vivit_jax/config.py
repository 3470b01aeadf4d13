"""Default config groups shared by every config file, and whole-config validation.

Config files under `configs/` start from `default_config()` and override what their
experiment changes, big_vision style (recipes in `vivit_jax.recipes`). `validate_config`
runs before any compute and raises `ConfigError` naming the field, the bad value and what
would be valid; it checks the groups and calls each package's own check, in one direction
(`data.validate`, `models.validate`). The trainer's own fields and the dataset splits a run
needs are checked by `vivit_jax.train.validate`, which calls this first.

Groups (see ../shared/DESIGN.md):
  task       'classification' (default) or 'masked_pretraining' (model 'videomae').
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

import ml_collections
from ml_collections.config_dict import placeholder

from vivit_jax import data, models
from vivit_jax.errors import ConfigError, config_error  # noqa: F401  (re-exported)
from vivit_jax.models import layers


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
  m.head_bias_init = 0.0
  # layer_norm_epsilon, gelu_approximate, dtype, param_dtype, attention_impl ('auto': the
  # backend's fastest exact kernel; see vivit_jax.ops.attention), remat, remat_policy.
  return layers.shared_model_options(m)


def default_config() -> ml_collections.ConfigDict:
  """Every group with its defaults; config files override fields."""
  c = ml_collections.ConfigDict()
  c.experiment_name = ''
  # 'classification' (labels -> logits) or 'masked_pretraining' (no labels: model.name
  # 'videomae' reconstructs masked tubelets; vivit_jax/train/pretraining.py).
  c.task = 'classification'
  c.model = default_model_config()

  c.dataset = ml_collections.ConfigDict()
  c.dataset.name = 'synthetic'
  c.dataset.num_frames = 16
  c.dataset.crop_size = 32
  c.dataset.num_classes = 10
  # Label kind (data/labels.py): label groups, e.g. (('verb', 97), ('noun', 300)) with
  # num_classes their sum (one logit block per group), or multi-label class sets.
  c.dataset.label_groups = placeholder(tuple)
  c.dataset.multi_label = False
  c.dataset.stride = 1                       # frame stride of a dense clip.
  c.dataset.num_test_clips = 1               # temporal views at test time.
  c.dataset.num_test_crops = 1               # spatial views at test time (1 or 3).
  c.dataset.mean_rgb = (0.5, 0.5, 0.5)       # normalisation, pixels in [0, 1].
  c.dataset.std_rgb = (0.5, 0.5, 0.5)
  c.dataset.num_train_examples = 4096        # synthetic only.
  c.dataset.num_eval_examples = 512          # synthetic only (validation and test each).
  c.dataset.seed = 0                         # synthetic generation seed.
  c.dataset.synthetic_labels = 'class'       # synthetic: 'class', 'verb_noun' or
                                             # 'multi_label' (data/synthetic.py).
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
  c.dataset.crop_aspect_range = placeholder(tuple)  # its w/h range; None = (3/4, 4/3).
  c.dataset.random_flip = False              # keep False where left/right is a label.
  c.dataset.color_jitter = 0.0               # strength; 0 = off.
  c.dataset.randaugment_layers = 0           # ops per clip; 0 = off.
  c.dataset.randaugment_magnitude = 9.0      # in [0, 10] ('scenic': [0, 20]).
  c.dataset.randaugment_ops = 'default'      # 'default' (ours), 'scenic' (video ops),
  #                                          'timm' / 'timm_increasing' (PySlowFast's).
  c.dataset.randaugment_magnitude_std = 0.0  # timm's mstd: magnitude ~ N(m, std).
  c.dataset.color_augment_prob = 0.0         # Scenic/DMVR colour augment; 0 = off.
  c.dataset.color_drop_prob = 0.0            # DMVR colour drop (grayscale); 0 = off.
  c.dataset.random_erasing_prob = 0.0        # PySlowFast random erasing; 0 = off.
  c.dataset.repeated_augmentation = 1        # copies of an example per batch; 1 = off.
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
  c.optimizer.weight_decay = 0.0             # sgd: coupled (wd * param added to the
                                             # gradient before momentum, as PyTorch);
                                             # adamw: decoupled (as torch AdamW).
  c.optimizer.no_decay = placeholder(tuple)  # regexes over '/'-joined param paths not
                                             # decayed; None = default rule (biases,
                                             # norms, pos embeddings, class tokens);
                                             # () = decay all. See train/optim.py.
  c.optimizer.grad_clip_norm = 1.0           # global-norm clipping (before decay);
                                             # None/0 = off.
  c.optimizer.layer_decay = placeholder(float)  # BEiT layer-wise lr decay in (0, 1]:
                                             # block i of L gets decay**(L - i),
                                             # embeddings decay**(L + 1); None = off.
  c.optimizer.lr_multipliers = placeholder(tuple)  # ((regex, mult), ...) over param
                                             # paths, first match wins; None = all 1.

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
  # jit's device mesh: 'data' x 'fsdp' devices (-1: the rest); batches split over both,
  # params and optimiser state over 'fsdp' (FSDP / ZeRO-3; 1 = replicated), see
  # train/parallel.py.
  c.trainer.mesh = ml_collections.ConfigDict({'data': -1, 'fsdp': 1})
  c.trainer.cpu_devices = 1                  # CPU backend: split the cores into this many
                                             # devices (main; capped at the cores).
  c.trainer.grad_accum_steps = 1
  c.trainer.label_smoothing = 0.0
  c.trainer.mixup_alpha = 0.0                # 0 = no mixup.
  c.trainer.cutmix_alpha = 0.0               # CutMix Beta alpha; 0 = off (timm/PySlowFast).
  c.trainer.mixup_switch_prob = 0.5          # mixup and CutMix both on: P(CutMix) per batch.
  c.trainer.eval_batch_size = 32
  c.trainer.prefetch_to_device = 2           # batches put on device ahead of the step.
  c.trainer.test_at_end = True               # main: multi-view test eval after training.
  # Test views -> one prediction: 'softmax' (mean of the views' softmaxes: PySlowFast,
  # mmaction2) or 'logits' (softmax of the mean logits: Scenic's ViViT).
  c.trainer.view_aggregation = 'softmax'
  c.trainer.temporal_control = 'none'       # 'shuffle' / 'single_frame': space-only controls.
  # Frozen params (zero updates; train/optim.py): None, 'backbone' (linear probing: only
  # the class projection `output_projection` trains) or regexes of the paths to freeze.
  c.trainer.freeze = placeholder(object)
  # Validation clips drawn with labels and attention rollout to TensorBoard at each
  # evaluation (train/evaluate.py AttentionSummaries; masked pretraining: input / masked /
  # reconstruction, pretraining.ReconstructionSummaries); 0 = off (an extra compile + pass).
  c.trainer.summary_clips = 0

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


TASKS = ('classification', 'masked_pretraining')


def is_pretraining(config: ml_collections.ConfigDict) -> bool:
  """Whether `config.task` is 'masked_pretraining' (configs without `task` classify)."""
  return config.get('task', 'classification') == 'masked_pretraining'


def check_task(config: ml_collections.ConfigDict) -> None:
  """`config.task` must be one of TASKS, and masked pretraining goes with the 'videomae'
  model (and only with it)."""
  task = config.get('task', 'classification')
  if task not in TASKS:
    raise config_error('task', task, f'one of {list(TASKS)}')
  name = config.model.get('name')
  if (name == 'videomae') != (task == 'masked_pretraining'):
    raise config_error('task', task, "'masked_pretraining' with model.name='videomae', "
                       "'classification' with any other model")


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Raises ConfigError for any field that cannot work; call before any compute."""
  for group in ('model', 'dataset', 'trainer'):
    if group not in config:
      raise config_error(group, None, f'a `{group}` group (start from '
                         'vivit_jax.config.default_config())')
  check_task(config)
  d = config.dataset
  data.validate(d)
  models.validate(config.model, num_frames=d.num_frames, crop_size=d.crop_size)
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


def _is_int(v, lo: int) -> bool:
  """Whether `v` is an int (not a bool) >= lo."""
  return isinstance(v, int) and not isinstance(v, bool) and v >= lo
