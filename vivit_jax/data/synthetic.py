"""Synthetic motion dataset: 10 classes that only the order of frames tells apart.

Every video shows one to three shapes (bars, ellipses and rounded rectangles in between)
on a static textured background with per-frame pixel noise. One shape, the target,
changes; the others (distractors) stay put or jitter in a small random walk. The class
says how the target changes (`LABEL_NAMES`):

  move_left / move_right        constant horizontal velocity
  move_up / move_down           constant vertical velocity
  fade_in / fade_out            opacity over the background rises (falls) steadily
  grow / shrink                 size changes geometrically
  appear / disappear            the target pops in (out) once, inside every clip

Why no rotation pair: rotating clockwise vs counter-clockwise was one, and no model here
learned it. Its direction is the sign of a cross product (a token's offset from the
shape's centre times its motion), not of one token's change over time as for the pairs
above. A Model 1 trained on the rotation pair alone, one clean shape with no noise or
distractors, stayed at 50% after 1000 steps; in the 10-class task it capped every model
at 80%. Fading is its first-order replacement: appear/disappear is the abrupt version.
The background is near grey under a faint grating and the noise is mild: with a base
colour drawn from [40, 215] and noise up to +-8, Model 1 reached 75% instead of 86% in
the same 3000 steps, and neither difficulty needs time to overcome.

Why a single frame is no help: each class 2k+1 is the time reversal of class 2k, drawn
from the same parameter distribution (the odd class is rendered from the even class's
trajectories read backwards), so the two have identically distributed *sets* of frames.
And across all classes every object's state in one frame has the same distribution:
positions are uniform on a torus (shapes wrap around the frame edges), orientations are
uniform, static sizes and opacities are those of a growing (fading-in) shape at a random
frame, and the number of shapes in view has the same distribution (appear/disappear
videos carry one distractor more while their target is out of view half the frames).
So a one-frame classifier is at chance (10%); an order-blind model (shuffled frames)
can still tell *what* changes (the five pairs) but not in which direction, so it is
capped near 50%.

Label kinds (`config.dataset.synthetic_labels`; the config's label fields must match,
see `check_labels`):
  'class' (default)  the 10 motions above, one per clip.
  'verb_noun'        label groups verb (the 10 motions) and noun (the changing shape's
                     colour: red, green, blue or yellow), Epic-Kitchens style: every
                     shape of a clip gets a different palette colour (jittered), so the
                     noun is the colour of the shape that does the verb, and one frame
                     cannot tell which shape that is. label_groups=(('verb', 10),
                     ('noun', 4)), num_classes=14; 40 actions. Colour, not shape, is
                     the noun because the shapes are only a few pixels wide at 32x32:
                     an ellipse and a rectangle that small look alike.
  'multi_label'      two shapes change at once with changes of two different kinds
                     (pairs above) in one time direction: two forward changes, or the
                     whole video played backwards ({move_left, grow} or {move_right,
                     shrink}, ...), plus a still or jittering distractor half the time;
                     the label is the set of the two motions (multi_label=True,
                     num_classes=10; 20 label sets). Why one direction: with each
                     shape's direction drawn on its own (45 sets), Model 1 learned which
                     kinds of change a clip shows but not the directions of fading,
                     growing and appearing (their APs stayed near 0.5, moves' 0.96;
                     mAP 0.70 after 2000 steps against 0.79 with one direction).
'class' draws exactly what it did before the variants existed.

Deterministic: example i of `generate(..., seed=s)` depends only on (s, i, the sizes).
Pure numpy, vectorised over examples. `build_dataset` serves the generated arrays as one
more source of the shared pipeline (`SyntheticReader` under `pipeline.ClipDataset`).
"""
from __future__ import annotations

import functools

import numpy as np

from vivit_jax import errors
from vivit_jax.data import dataset as dataset_lib
from vivit_jax.data import labels as labels_lib
from vivit_jax.data import pipeline, sampling

LABEL_NAMES = [
    'move_left', 'move_right',
    'move_up', 'move_down',
    'fade_in', 'fade_out',
    'grow', 'shrink',
    'appear', 'disappear',
]
NUM_CLASSES = len(LABEL_NAMES)
# Label kinds (`config.dataset.synthetic_labels`, see the module docstring).
LABEL_KINDS = ('class', 'verb_noun', 'multi_label')
NOUN_NAMES = ['red', 'green', 'blue', 'yellow']    # 'verb_noun': the target's colour.
_PALETTE = np.array([[216, 48, 48], [48, 192, 48], [56, 80, 216], [208, 200, 40]],
                    np.float32)
_PALETTE_JITTER = 16        # per-video, per-channel colour jitter of a palette colour.
SPLIT_IDS = {'train': 0, 'validation': 1, 'test': 2}

_CHUNK = 64                 # examples per seeded generation chunk (fixes the data).
_SLOTS = 3                  # shapes per video: the target and up to two distractors.
_SIZE_RANGE = (0.1, 0.3)    # shape half-length as a fraction of the frame side.
_ASPECT_RANGE = (0.3, 0.5)  # half-width / half-length.
# Change over one clip (`clip_frames` frames):
_SHIFT_RANGE = (0.25, 0.6)                    # displacement, fractions of the side.
_FADE_FROM = (0.25, 0.45)   # opacity at the start of a fade-in video (1 at its end).
_GROWTH_RANGE = (1.4, 2.0)                    # size ratio end / start.
_WALK_STD = 0.01            # distractor random-walk step, fraction of the side per frame.
_BACKGROUND_RANGE = (120, 136)  # base background colour, per channel (near grey).
_NOISE_MASKS = (3, 7)       # per-video pixel noise: uniform over m + 1 levels, m drawn from these.


def split_seed(seed: int, split: str) -> int:
  """The generation seed of `split` ('train' | 'validation' | 'test') for a base seed."""
  if split not in SPLIT_IDS:
    raise ValueError(f'split={split!r} is invalid: expected one of {list(SPLIT_IDS)}.')
  return int(np.random.SeedSequence([seed, SPLIT_IDS[split]]).generate_state(1)[0])


def generate(num_examples: int, *, num_frames: int, size: int, seed: int,
             clip_frames: int | None = None, offset: int = 0, labels: str = 'class'):
  """Generates labelled synthetic videos.

  Args:
    num_examples: number of videos N.
    num_frames: frames per generated video T (may exceed the clip a model sees).
    size: side H = W of the square frames, in pixels.
    seed: generation seed (use `split_seed` for the splits of a dataset).
    clip_frames: span in frames of the clips that will be cut from the videos (default
      T). Speeds are set so a clip sees a clear change, and appear/disappear events
      happen inside every `clip_frames`-long window when T < 2 * clip_frames.
    offset: index of the first example; example i is the same for any offset/N.
    labels: the label kind, one of LABEL_KINDS (see the module docstring).
  Returns:
    videos: uint8[N, T, H, W, 3] RGB pixels; labels: int32[N] in [0, NUM_CLASSES)
    ('class'), int32[N, 2] (verb, noun) ('verb_noun') or int32[N, 2] the two distinct
    motions shown ('multi_label', target first).
  """
  if labels not in LABEL_KINDS:
    raise ValueError(f'labels={labels!r} is invalid: expected one of {LABEL_KINDS}.')
  kind = labels
  clip_frames = num_frames if clip_frames is None else min(clip_frames, num_frames)
  videos = np.empty((num_examples, num_frames, size, size, 3), np.uint8)
  labels = np.empty((num_examples,) + ((2,) if kind != 'class' else ()), np.int32)
  first_chunk, last_chunk = offset // _CHUNK, (offset + num_examples - 1) // _CHUNK
  for chunk in range(first_chunk, last_chunk + 1):
    rng = np.random.default_rng([seed, chunk])
    lo = max(offset, chunk * _CHUNK)
    hi = min(offset + num_examples, (chunk + 1) * _CHUNK)
    v, l = _generate_chunk(rng, num_frames, size, clip_frames,
                           start=lo - chunk * _CHUNK, stop=hi - chunk * _CHUNK, kind=kind)
    videos[lo - offset:hi - offset] = v
    labels[lo - offset:hi - offset] = l
  return videos, labels


def target_masks(num_examples: int, *, num_frames: int, size: int, seed: int,
                 clip_frames: int | None = None, offset: int = 0) -> np.ndarray:
  """bool[N, T, H, W]: the pixels of the target shape (the one whose change is the
  label) in the videos `generate` returns for the same arguments (the class task;
  False while the target is out of view). Distractors are not in the mask."""
  clip_frames = num_frames if clip_frames is None else min(clip_frames, num_frames)
  masks = np.zeros((num_examples, num_frames, size, size), bool)
  for chunk in range(offset // _CHUNK, (offset + num_examples - 1) // _CHUNK + 1):
    p = _sample_params(np.random.default_rng([seed, chunk]), _CHUNK, num_frames, size,
                       clip_frames)
    full = np.zeros((_CHUNK, num_frames, size, size), bool)
    for k in range(_SLOTS):
      example, frame, y, x = _shape_pixels(p, k, size)
      on = p['target'][example] == k
      full[example[on], frame[on], y[on], x[on]] = True
    lo, hi = max(offset, chunk * _CHUNK), min(offset + num_examples, (chunk + 1) * _CHUNK)
    masks[lo - offset:hi - offset] = full[lo - chunk * _CHUNK:hi - chunk * _CHUNK]
  return masks


def _generate_chunk(rng, num_frames, size, clip_frames, start, stop, kind='class'):
  """Examples [start, stop) of one chunk of _CHUNK (the whole chunk is drawn, so any
  sub-range gives the same examples)."""
  params = _sample_params(rng, _CHUNK, num_frames, size, clip_frames, kind)
  videos = _render(rng, params, num_frames, size)
  return videos[start:stop], params['label'][start:stop]


def _uniform(rng, lo_hi, shape):
  return rng.uniform(lo_hi[0], lo_hi[1], shape).astype(np.float32)


def _sample_params(rng, n, num_frames, size, clip_frames, kind='class'):
  """Per-example, per-shape, per-frame states; float32 arrays of shape [n, S, T].
  `kind` (LABEL_KINDS): 'class' draws what it always did; the variants draw more on
  the way ('verb_noun': the colours, 'multi_label': the second motion and the
  distractor), so their later draws differ from the 'class' ones."""
  t_len, s = num_frames, _SLOTS
  t = np.arange(t_len, dtype=np.float32)
  steps = max(clip_frames - 1, 1)       # frame steps within one clip.
  label = rng.integers(0, NUM_CLASSES, n).astype(np.int32)
  group = label // 2                    # 0 move x, 1 move y, 2 opacity, 3 size, 4 visibility.

  # Static state of every shape (the distribution every frame shares).
  cx = np.broadcast_to(_uniform(rng, (0, size), (n, s, 1)), (n, s, t_len)).copy()
  cy = np.broadcast_to(_uniform(rng, (0, size), (n, s, 1)), (n, s, t_len)).copy()
  theta = np.broadcast_to(_uniform(rng, (0, np.pi), (n, s, 1)), (n, s, t_len)).copy()
  log_a0, growth = _size_trajectory(rng, (n, s), size, t_len, steps)
  frame = rng.integers(0, t_len, (n, s, 1)).astype(np.float32)
  static_log_a = log_a0 + growth * frame / max(t_len - 1, 1)   # size at a random frame.
  log_a = np.broadcast_to(static_log_a, (n, s, t_len)).copy()
  # Opacity: a fade-in trajectory from alpha0 to 1 over the video, static at a random frame.
  alpha0 = _uniform(rng, _FADE_FROM, (n, s, 1))
  fade = alpha0 + (1 - alpha0) * t / max(t_len - 1, 1)                  # [n, S, T].
  alpha_frame = rng.integers(0, t_len, (n, s, 1))
  alpha = np.broadcast_to(np.take_along_axis(fade, alpha_frame, -1), (n, s, t_len)).copy()
  visible = np.ones((n, s, t_len), bool)
  aspect = _uniform(rng, _ASPECT_RANGE, (n, s))
  roundness = _uniform(rng, (0, 1), (n, s))          # 0 ellipse .. 1 rectangle.
  background = _uniform(rng, _BACKGROUND_RANGE, (n, 3))
  colour = 16 + (background[:, None, :] - 16 + rng.uniform(56, 168, (n, s, 3))) % 224

  # Distractors: half of them jitter in a random walk.
  target = rng.integers(0, s, n)
  is_target = np.arange(s)[None, :] == target[:, None]
  rank = (np.arange(s)[None, :] - target[:, None]) % s         # 0 = target.
  walks = rng.random((n, s)) < 0.5
  # The motion class of each slot, -1 for a shape that does not change: the target's,
  # and with 'multi_label' on the next slot a change of another kind (pair), in the
  # same time direction (the whole video is played backwards for odd classes).
  slot_class = np.where(is_target, label[:, None], -1)
  if kind == 'multi_label':
    other_pair = (group + rng.integers(1, NUM_CLASSES // 2, n)) % (NUM_CLASSES // 2)
    second = (2 * other_pair + label % 2).astype(np.int32)
    slot_class = np.where(rank == 1, second[:, None], slot_class)
  changing = slot_class >= 0
  walk_std = _WALK_STD * size * (walks & ~changing)[..., None]
  for c in (cx, cy):
    step = rng.normal(0, 1, (n, s, t_len)).astype(np.float32) * walk_std
    step[..., 0] = 0
    c += np.cumsum(step, axis=-1)
  # Shapes in view: 1 + {0, 1, 2} distractors w.p. {1/4, 1/2, 1/4}; appear/disappear
  # videos have 1 or 2 distractors w.p. 1/2 each, their target is in view half the time.
  num_distractors = np.where(group == 4, 1 + rng.integers(0, 2, n),
                             rng.binomial(2, 0.5, n))
  present = rank <= num_distractors[:, None]
  if kind == 'multi_label':      # both changing shapes, and a distractor w.p. 1/2.
    present = rank <= 1 + rng.integers(0, 2, n)[:, None]
  visible &= present[..., None]
  if kind == 'verb_noun':        # distinct palette colours; the target's is the noun.
    palette_order = np.argsort(rng.random((n, len(NOUN_NAMES))), axis=1)
    slot_noun = np.take_along_axis(palette_order, rank, axis=1)          # [n, S].
    jitter = rng.uniform(-_PALETTE_JITTER, _PALETTE_JITTER, (n, s, 3))
    colour = _PALETTE[slot_noun] + jitter
    noun = palette_order[:, 0].astype(np.int32)

  # Each changing shape's change, forwards (the even class of each pair).
  # float32[n, S, 1] gates.
  def changes(g):
    return (changing & (slot_class // 2 == g))[..., None]
  speed = _uniform(rng, _SHIFT_RANGE, (n, 1, 1)) * size / steps     # pixels per frame.
  cx -= changes(0) * speed * t                                       # move_left.
  cy -= changes(1) * speed * t                                       # move_up (y down).
  alpha = np.where(changes(2), fade, alpha)                          # fade_in.
  log_a = np.where(changes(3), log_a0 + growth * t / max(t_len - 1, 1), log_a)  # grow.
  first_visible = _event_frames(rng, n, t_len, clip_frames)[:, None, None]
  visible &= ~changes(4) | (t >= first_visible)                      # appear.

  # Odd classes: the same trajectories played backwards (the whole video).
  backwards = np.broadcast_to((label % 2 == 1)[:, None], (n, s))
  for a in (cx, cy, alpha, log_a, visible):
    a[backwards] = a[backwards][:, ::-1]

  params = dict(cx=cx % size, cy=cy % size, theta=theta, half_len=np.exp(log_a),
                alpha=alpha, aspect=aspect, roundness=roundness, colour=colour,
                background=background,
                **_background_texture(rng, n, size))
  params = {k: v.astype(np.float32) for k, v in params.items()}
  noise_mask = np.array(_NOISE_MASKS, np.uint8)[rng.integers(0, len(_NOISE_MASKS), n)]
  if kind == 'verb_noun':
    label = np.stack([label, noun], 1)
  elif kind == 'multi_label':
    label = np.stack([label, second], 1)
  return dict(params, label=label, visible=visible, noise_mask=noise_mask, target=target)


def _size_trajectory(rng, shape, size, t_len, steps):
  """Log half-length at frame 0 and its growth over the video, both float32[shape + (1,)]:
  growth per clip in _GROWTH_RANGE, the whole trajectory inside _SIZE_RANGE."""
  log_lo, log_hi = np.log(np.array(_SIZE_RANGE) * size)
  per_frame = np.log(_uniform(rng, _GROWTH_RANGE, shape)) / steps
  growth = np.minimum(per_frame * max(t_len - 1, 1), 0.9 * (log_hi - log_lo))
  log_a0 = log_lo + rng.random(shape).astype(np.float32) * (log_hi - log_lo - growth)
  return log_a0[..., None], growth[..., None]


def _event_frames(rng, n, t_len, clip_frames):
  """First frame in view of an appearing target, int[n]: inside every window of
  `clip_frames` frames when possible (else the middle third), symmetric about the
  middle so that appear and disappear show the target equally often."""
  lo = t_len - clip_frames + 1
  if lo > t_len - lo:
    lo = -(-t_len // 3)
  lo = max(lo, 1)
  return rng.integers(lo, max(t_len - lo, lo) + 1, n)


def _background_texture(rng, n, size):
  """Static texture: a sinusoidal grating of random frequency, angle and contrast."""
  freq = rng.uniform(1, 4, n) * 2 * np.pi / size
  angle = rng.uniform(0, np.pi, n)
  return dict(grating_fx=(freq * np.cos(angle)).astype(np.float32),
              grating_fy=(freq * np.sin(angle)).astype(np.float32),
              grating_phase=_uniform(rng, (0, 2 * np.pi), n),
              grating_amp=_uniform(rng, (0, 24), n),
              grating_tint=_uniform(rng, (0.5, 1.0), (n, 3)))


def _render(rng, p, num_frames, size):
  """Draws the videos of a parameter dict: uint8[n, T, H, W, 3].

  Colours stay in [16, 239] before the noise, so uint8 arithmetic cannot wrap around.
  """
  n = p['label'].shape[0]
  coords = np.arange(size, dtype=np.float32) + 0.5
  # Background: base colour + grating, static over time. uint8[n, H, W, 3].
  phase = (p['grating_fy'][:, None, None] * coords[None, :, None]
           + p['grating_fx'][:, None, None] * coords[None, None, :]
           + p['grating_phase'][:, None, None])
  texture = p['grating_amp'][:, None, None] * np.sin(phase)
  background = (p['background'][:, None, None, :]
                + texture[..., None] * p['grating_tint'][:, None, None, :])
  background = np.clip(background + 0.5, 16, 239).astype(np.uint8)
  video = np.empty((n, num_frames, size, size, 3), np.uint8)
  video[:] = background[:, None]

  # Shapes, in slot order (later slots on top), blended over the base background colour
  # with their opacity: uint8[n, S, T, 3].
  base = p['background'][:, None, None, :]
  colour = base + p['alpha'][..., None] * (p['colour'][:, :, None, :] - base)
  colour = np.clip(colour + 0.5, 16, 239).astype(np.uint8)
  for k in range(_SLOTS):
    example, frame, y, x = _shape_pixels(p, k, size)
    video[example, frame, y, x] = colour[example, k, frame]

  # Uniform noise in [-(m + 1) / 2, (m - 1) / 2] with m + 1 a power of two per video.
  m = p['noise_mask'][:, None, None, None, None]
  random_bytes = rng.bit_generator.random_raw(-(-video.size // 8)).view(np.uint8)
  noise = random_bytes[:video.size].reshape(video.shape) & m
  video += noise
  video -= (m + 1) // 2
  return video


def _shape_pixels(p, k, size):
  """Pixels covered by shape slot k, wrapping around the frame edges.

  Returns int arrays (example, frame, y, x), one entry per covered pixel. The test runs
  in a window of side 2R around each shape's centre rather than the whole frame.
  """
  rows = np.nonzero(p['visible'][:, k].any(1))[0]         # examples showing slot k.
  p = {name: p[name][rows, k] for name in (
      'cx', 'cy', 'theta', 'half_len', 'aspect', 'roundness', 'visible')}
  if rows.size == 0:
    return (rows,) * 4
  half_len = p['half_len']                                # float32[n, T], pixels.
  half_wid = half_len * p['aspect'][:, None]
  radius = int(np.ceil(np.max(np.hypot(half_len, half_wid)))) + 1
  radius = min(radius, size // 2)
  window = np.arange(2 * radius, dtype=np.float32)
  # Window pixel j covers [corner + j, corner + j + 1); signed offsets of the centres.
  corner_x = np.floor(p['cx']) - radius + 1               # float32[n, T].
  corner_y = np.floor(p['cy']) - radius + 1
  dx = corner_x[..., None] + window + 0.5 - p['cx'][..., None]    # [n, T, 2R].
  dy = -(corner_y[..., None] + window + 0.5 - p['cy'][..., None])  # y up.
  theta = p['theta']
  cos, sin = np.cos(theta)[..., None], np.sin(theta)[..., None]
  # Coordinates along / across the shape in units of its half-length / half-width.
  along_x, along_y = dx * cos / half_len[..., None], dy * sin / half_len[..., None]
  across_x, across_y = -dx * sin / half_wid[..., None], dy * cos / half_wid[..., None]
  u = along_x[:, :, None, :] + along_y[:, :, :, None]     # float32[n, T, 2R, 2R].
  v = across_x[:, :, None, :] + across_y[:, :, :, None]
  u *= u
  v *= v
  # roundness 0: ellipse u^2 + v^2 < 1; 1: rectangle max(u^2, v^2) < 1;
  # u + v - w min(u, v) < 1 blends the two.
  w = p['roundness'][:, None, None, None]
  uv = u + v
  np.minimum(u, v, out=u)
  u *= w
  uv -= u
  inside = uv < 1
  inside &= p['visible'][:, :, None, None]
  example, frame, wy, wx = np.nonzero(inside)
  y = (corner_y[example, frame].astype(np.int64) + wy) % size
  x = (corner_x[example, frame].astype(np.int64) + wx) % size
  return rows[example], frame, y, x


# The source built from a config.


def default_video_frames(clip_frames: int, num_test_clips: int) -> int:
  """Generated length: a clip plus half a clip of room for random temporal crops (and
  for `num_test_clips` distinct test clips)."""
  return clip_frames + max(clip_frames // 2, num_test_clips - 1)


def default_video_size(crop_size: int) -> int:
  """Generated side: a few pixels more than the crop, for random spatial crops."""
  return crop_size + max(2, crop_size // 8)


def split_sizes(dataset_config) -> dict[str, int]:
  """{split: examples over all processes}: num_train_examples, and num_eval_examples
  for validation and test each."""
  d = dataset_config
  return {'train': int(d.get('num_train_examples', 4096)),
          'validation': int(d.get('num_eval_examples', 512)),
          'test': int(d.get('num_eval_examples', 512))}


def video_shape(dataset_config) -> tuple[int, int, int]:
  """(generated frames L, generated side S, clip span) of config.dataset: video_frames
  (default `default_video_frames`), video_size (default `default_video_size`) and the
  frames a clip covers (`sampling.clip_span` of num_frames and stride)."""
  d = dataset_config
  span = sampling.clip_span(int(d.num_frames), int(d.get('stride', 1)))
  frames = int(d.get('video_frames', None)
               or default_video_frames(span, int(d.get('num_test_clips', 1))))
  size = int(d.get('video_size', None) or default_video_size(int(d.crop_size)))
  return frames, size, span


def label_kind(dataset_config) -> str:
  """config.dataset.synthetic_labels (default 'class'); a ConfigError if not one of
  LABEL_KINDS."""
  kind = dataset_config.get('synthetic_labels', None) or 'class'
  if kind not in LABEL_KINDS:
    raise errors.config_error('dataset.synthetic_labels', kind, f'one of {LABEL_KINDS}')
  return kind


def label_spec(kind: str) -> labels_lib.LabelSpec:
  """The LabelSpec (with names) of a label kind: 'class' 10 motions; 'verb_noun'
  groups verb (the 10 motions) and noun (NOUN_NAMES); 'multi_label' the 10 motions as
  a class set."""
  if kind == 'verb_noun':
    spec = labels_lib.LabelSpec((('verb', NUM_CLASSES), ('noun', len(NOUN_NAMES))))
    return spec.with_names({'verb': LABEL_NAMES, 'noun': NOUN_NAMES})
  spec = labels_lib.LabelSpec((('label', NUM_CLASSES),), multi_label=kind == 'multi_label')
  return spec.with_names({'label': LABEL_NAMES})


def check_labels(dataset_config) -> labels_lib.LabelSpec:
  """The LabelSpec of config.dataset's synthetic_labels, after checking that the label
  fields (label_groups, multi_label, num_classes) describe it; ConfigError naming the
  first field that does not."""
  d = dataset_config
  kind = label_kind(d)
  want, got = label_spec(kind), labels_lib.label_spec(d)
  if want.grouped != got.grouped or (want.grouped and want.groups != got.groups):
    raise errors.config_error('dataset.label_groups', d.get('label_groups', None),
                              f'{want.groups if want.grouped else None} for '
                              f'dataset.synthetic_labels={kind!r}')
  if want.multi_label != got.multi_label:
    raise errors.config_error('dataset.multi_label', got.multi_label,
                              f'{want.multi_label} for dataset.synthetic_labels={kind!r}')
  if want.num_classes != got.num_classes:
    raise errors.config_error('dataset.num_classes', d.num_classes,
                              f'{want.num_classes}, the classes of the synthetic dataset')
  return want


def parse_row(spec: labels_lib.LabelSpec, row, where: str = ''):
  """One example's label as `spec.parse` makes it from its row of `generate`'s
  labels (an int, (verb, noun) or the two motions of a multi-label clip)."""
  row = np.asarray(row).tolist()
  return spec.parse([row] if spec.multi_label else np.atleast_1d(row).tolist(), where)


@functools.lru_cache(maxsize=6)
def _generate_cached(num_examples, num_frames, size, seed, clip_frames, offset, kind):
  videos, labels = generate(num_examples, num_frames=num_frames, size=size, seed=seed,
                            clip_frames=clip_frames, offset=offset, labels=kind)
  videos.flags.writeable = False      # shared between datasets built in one process.
  labels.flags.writeable = False
  return videos, labels


class SyntheticReader:
  """`pipeline.Reader` over examples [start, stop) of a synthetic split, generated in
  memory: videos uint8[n, L, S, S, 3], labels as `generate` returns them for `kind`
  (read as `label_spec(kind).parse` makes them). A read indexes the chosen frames (no
  decoding). Pickled (for worker processes) as its generation arguments: a worker
  generates the arrays again instead of receiving them."""

  def __init__(self, split: str, total: int, start: int, stop: int, *, video_frames: int,
               video_size: int, seed: int, clip_frames: int, kind: str = 'class'):
    self.total = total
    self.keys = [f'synthetic/{split}/{i}' for i in range(start, stop)]
    self.spec = label_spec(kind)
    self._args = (stop - start, video_frames, video_size, split_seed(seed, split),
                  clip_frames, start, kind)
    self.videos, self.labels = _generate_cached(*self._args)

  def __getstate__(self):
    return {k: v for k, v in self.__dict__.items() if k not in ('videos', 'labels')}

  def __setstate__(self, state):
    self.__dict__.update(state)
    self.videos, self.labels = _generate_cached(*self._args)

  def read(self, index: int, choose: pipeline.Chooser):
    video = self.videos[index]
    label = parse_row(self.spec, self.labels[index], self.keys[index])
    return video[np.asarray(choose(video.shape[0]))], label


def build_dataset(config, *, process_index: int, process_count: int):
  """The synthetic `VideoDataset` of `config`: a `pipeline.ClipDataset` over one
  `SyntheticReader` per split, so sampling and augmentation are those of every source
  (config.dataset fields: see pipeline.clip_options).

  Reads config.dataset: seed (generation), synthetic_labels (the label kind, with
  label_groups / multi_label / num_classes to match: `check_labels`),
  num_train_examples, num_eval_examples (validation and test each), video_frames /
  video_size (generated length and side, see `video_shape`), random_flip (must stay
  False), and the ClipOptions fields; and
  config.trainer.seed (order of examples and augmentation draws). Each process
  generates the training split and its shard of the evaluation splits; arrays are
  cached per process.
  """
  d = config.dataset
  options = pipeline.clip_options(config)
  video_frames, video_size, span = video_shape(d)
  if video_size < options.crop_size:
    raise errors.config_error('dataset.video_size', video_size,
                              f'at least config.dataset.crop_size={options.crop_size}')
  if options.random_flip:
    raise errors.config_error('dataset.random_flip', True, 'False for the synthetic '
                              'dataset (a flip turns move_left into move_right)')
  spec = check_labels(d)
  seed = int(d.get('seed', 0))
  readers = {}
  for split, total in split_sizes(d).items():
    start, stop = dataset_lib.reader_range(split, total, process_index, process_count)
    readers[split] = SyntheticReader(split, total, start, stop, video_frames=video_frames,
                                     video_size=video_size, seed=seed, clip_frames=span,
                                     kind=label_kind(d))
  return pipeline.ClipDataset(readers, spec, options,
                              seed=pipeline.trainer_seed(config),
                              process_index=process_index, process_count=process_count)
