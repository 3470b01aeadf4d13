"""Masked video autoencoding on the ViViT Model 1 tubelet encoder: pretraining without
labels (VideoMAE, Tong et al. 2022; MAE-ST, Feichtenhofer et al. 2022).

video: float32[B, T, H, W, C] -> a grid of n_t x n_h x n_w tubelets (t x ph x pw pixels),
N = n_t*n_h*n_w tokens in time-major order (as everywhere in vivit_jax); a tubelet's
P = t*ph*pw*C pixels are flattened in the (t, ph, pw, C) order of the tubelet kernel.

  masking   M of the N tokens are masked and V = N - M stay visible, exact counts per
            clip, drawn from the 'masking' rng stream (`mask_tokens`):
              'tube' (VideoMAE): one spatial mask of round(ratio * S) of the S = n_h*n_w
                  positions per clip, the same at every temporal index: M = n_t*that;
              'random' (MAE-ST): round(ratio * N) tokens anywhere in space-time.
  encoder   ViViT Model 1's: all N tubelets embedded (`embedding`), its learned position
            embedding added (`Transformer/posembed_input`; `posemb_init` 'sinusoid' starts
            it as VideoMAE's fixed table, which the paper configs keep fixed with an lr
            multiplier of 0), then only the V visible tokens
            (gathered by index; no attention mask over the full set, no CLS) through the
            blocks and `encoder_norm` (`Transformer/...`). At ratio 0.9 this costs about a
            tenth of the full encoder (tests/models/test_videomae.py).
  decoder   `decoder_embed` (Dense D -> D_dec without bias, VideoMAE's
            encoder_to_decoder); the V encoded tokens followed by M copies of `mask_token`
            [1, 1, D_dec], each plus the FIXED sinusoid position table of its token index
            (VideoMAE's 1D `get_sinusoid_encoding_table` over the N token indices: not a
            parameter); `decoder_num_layers` pre-norm blocks of width `decoder_hidden_size`
            (`Decoder/encoderblock_i`, `Decoder/decoder_norm`); `decoder_pred` (Dense
            D_dec -> P) on the M mask tokens.
  target    the masked tubelets' pixels; with `norm_pix_loss` (default True) each tubelet
            normalised per channel over its t*ph*pw pixels, (x - mean) / (std + 1e-6) with
            the unbiased std (VideoMAE, HF VideoMAEForPreTraining). A per-channel affine
            input normalisation (dataset mean/std) cancels out of it.
  loss      `reconstruction_loss`: mean squared error over the masked tubelets only.

Output of `VideoMAE(video, train=...)` (the `config.task='masked_pretraining'` contract):
  {'pred':        float32[B, M, P]  decoder predictions of the masked tubelets,
   'target':      float32[B, M, P]  their targets (normalised with norm_pix_loss),
   'mask':        bool[B, N]        True where a token is masked,
   'visible_ids': int32[B, V], 'masked_ids': int32[B, M]  token indices, ascending}.
With `encoder_only=True` it returns the encoded visible tokens float32[B, V, D] (no
decoder; for costs and features).

Parameters: `embedding` and `Transformer/*` are exactly ViViT Model 1's with no class token
(classifier 'gap'), so `init_from` a pretraining workdir loads the encoder into a ViViT
(convert/initialise.py; a 'token' classifier gets a fresh CLS and its position); the
decoder parameters (`decoder_embed`, `mask_token`, `Decoder`, `decoder_pred`) are dropped.

Which families can pretrain this way: only an encoder over an unordered set of tokens with
joint attention, i.e. ViViT Model 1 (and TimeSformer's joint space-time variant or the
image ViT, which have the same blocks). Models 2-4, TimeSformer's divided attention,
Video Swin's (shifted) windows and MViT's pooling attention need the full n_t x n_h x n_w
grid (attention within a frame / along a position, windows, strided pooling of the grid),
which a random subset of tokens is not: masking them needs mask tokens or attention masks
inside the encoder (MaskFeat / SimMIM style), which forgoes the encoder's 10x saving.
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

import einops
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from vivit_jax.errors import config_error
from vivit_jax.models import checks, embeddings
from vivit_jax.models.layers import Encoder, EncoderBlock, TransformerConfig, layer_norm
from vivit_jax.ops import dense as dense_ops

MASKINGS = ('tube', 'random')
# config.model fields of this family beyond ViViT Model 1's, with their defaults
# (VideoMAE ViT-B: decoder width 384, 4 layers, 6 heads).
DEFAULTS = {
    'mask_ratio': 0.9,
    'masking': 'tube',
    'norm_pix_loss': True,
    'decoder_hidden_size': 384,
    'decoder_num_layers': 4,
    'decoder_num_heads': 6,
    'decoder_mlp_dim': 1536,
    # The encoder's position embedding starts as ViViT's ('learned': N(0, 0.02^2)) or as
    # VideoMAE's fixed sinusoid table ('sinusoid'; keep it fixed with the optimizer's
    # lr_multipliers ((r'posembed_input', 0.0),), as the paper configs do).
    'posemb_init': 'learned',
}
POSEMB_INITS = ('learned', 'sinusoid')


def sinusoid_init(key, shape, dtype=jnp.float32):
  """Initialiser of a [1, N, D] position embedding: `sinusoid_table(N, D)`."""
  del key
  return jnp.asarray(sinusoid_table(shape[-2], shape[-1]).reshape(shape), dtype)


def num_masked(n: int, ratio: float) -> int:
  """round(ratio * n) of n tokens, kept within [1, n - 1] (something to see and something
  to predict; n >= 2)."""
  return min(max(int(round(ratio * n)), 1), n - 1)


def mask_tokens(rng, batch: int, grid: Sequence[int], ratio: float, masking: str = 'tube',
                example_ids=None):
  """Random masks, a different one per clip, deterministic in `rng`.

  grid: (n_t, n_h, n_w). Returns (visible_ids int32[B, V], masked_ids int32[B, M]), each
  row ascending, together a permutation of range(N). 'tube': M = n_t * num_masked(S,
  ratio), the same S positions masked at every temporal index; 'random': M =
  num_masked(N, ratio) anywhere. Row b's mask is a function of (rng, example_ids[b])
  only (default example_ids: arange(B)), so a clip keeps its mask whichever device or
  micro-batch it lands in.
  """
  n_t, n_h, n_w = grid
  s = n_h * n_w
  if masking == 'tube':
    n, m, repeats = s, num_masked(s, ratio), n_t
  elif masking == 'random':
    n, m, repeats = n_t * s, num_masked(n_t * s, ratio), 1
  else:
    raise ValueError(f'masking {masking!r} is invalid: expected one of {MASKINGS}.')
  if example_ids is None:
    example_ids = jnp.arange(batch)
  noise = jax.vmap(lambda i: jax.random.uniform(jax.random.fold_in(rng, i), (n,)))(
      example_ids)
  order = jnp.argsort(noise, axis=-1).astype(jnp.int32)
  masked, visible = jnp.sort(order[:, :m], -1), jnp.sort(order[:, m:], -1)
  if repeats > 1:   # the spatial ids at every temporal index: t * S + s.
    offsets = jnp.arange(repeats, dtype=jnp.int32)[None, :, None] * s
    masked = (offsets + masked[:, None]).reshape(batch, -1)
    visible = (offsets + visible[:, None]).reshape(batch, -1)
  return visible, masked


def take_tokens(x, ids):
  """x: [B, N, ...], ids: int[B, K] -> x's rows at ids: [B, K, ...]."""
  return jnp.take_along_axis(x, ids.reshape(ids.shape + (1,) * (x.ndim - 2)), axis=1)


def merge_tokens(visible, masked, visible_ids, masked_ids):
  """The inverse of taking: visible [B, V, ...] at visible_ids and masked [B, M, ...] at
  masked_ids scattered back into one grid [B, V + M, ...]."""
  tokens = jnp.concatenate([visible, masked], axis=1)
  ids = jnp.concatenate([visible_ids, masked_ids], axis=1)
  rows = jnp.arange(tokens.shape[0])[:, None]
  return jnp.zeros_like(tokens).at[rows, ids].set(tokens)


def token_mask(masked_ids, num_tokens: int):
  """bool[B, N]: True at masked_ids [B, M]."""
  rows = jnp.arange(masked_ids.shape[0])[:, None]
  return jnp.zeros((masked_ids.shape[0], num_tokens), bool).at[rows, masked_ids].set(True)


def tubelet_pixels(video, tubelet: Sequence[int]):
  """video: [B, T, H, W, C] -> [B, N, t*ph*pw*C] pixels of each (t, ph, pw) tubelet,
  tokens time-major, pixels in (t, ph, pw, C) order (the tubelet kernel's flattening)."""
  size = tuple(tubelet)
  patches = embeddings.extract_patches(video, size, size, [(0, 0)] * 3)
  return patches.reshape(patches.shape[0], -1, patches.shape[-1])


def tubelet_video(pixels, grid: Sequence[int], tubelet: Sequence[int], channels: int = 3):
  """The inverse of `tubelet_pixels`: [B, N, P] -> video [B, T, H, W, C]."""
  (n_t, n_h, n_w), (t, ph, pw) = grid, tubelet
  return einops.rearrange(
      pixels, 'b (nt nh nw) (t ph pw c) -> b (nt t) (nh ph) (nw pw) c',
      nt=n_t, nh=n_h, nw=n_w, t=t, ph=ph, pw=pw, c=channels)


def normalise_tubelets(pixels, channels: int = 3, eps: float = 1e-6):
  """VideoMAE's norm_pix target: [..., P] with P = pixels x channels, each channel
  normalised over the tubelet's pixels: (x - mean) / (unbiased std + eps)."""
  x = pixels.reshape(pixels.shape[:-1] + (-1, channels)).astype(jnp.float32)
  mean = x.mean(-2, keepdims=True)
  std = jnp.sqrt(x.var(-2, ddof=1, keepdims=True))
  return ((x - mean) / (std + eps)).reshape(pixels.shape)


def sinusoid_table(num_positions: int, dim: int) -> np.ndarray:
  """float32[num_positions, dim]: position p, feature j -> sin (even j) / cos (odd j) of
  p / 10000^(2 * (j // 2) / dim) (Vaswani et al.; VideoMAE's get_sinusoid_encoding_table)."""
  pos = np.arange(num_positions, dtype=np.float64)[:, None]
  j = np.arange(dim)[None, :]
  angle = pos / np.power(10000, 2 * (j // 2) / dim)
  return np.where(j % 2 == 0, np.sin(angle), np.cos(angle)).astype(np.float32)


def reconstruct(video, out, tubelet: Sequence[int], norm_pix_loss: bool = True):
  """(masked video, reconstruction), both [B, T, H, W, C], from the model's input `video`
  and its outputs `out`: the masked tubelets zeroed, or replaced by the predictions (with
  `norm_pix_loss` un-normalised by each tubelet's own per-channel mean and std, as
  VideoMAE's visualisation does); the visible tubelets are the input's."""
  c = video.shape[-1]
  grid = tuple(s // t for s, t in zip(video.shape[1:4], tubelet))
  pixels = tubelet_pixels(video.astype(jnp.float32), tubelet)
  visible = take_tokens(pixels, out['visible_ids'])
  pred = out['pred']
  if norm_pix_loss:
    x = take_tokens(pixels, out['masked_ids']).reshape(pred.shape[:-1] + (-1, c))
    std = jnp.sqrt(x.var(-2, ddof=1, keepdims=True)) + 1e-6
    pred = (pred.reshape(x.shape) * std + x.mean(-2, keepdims=True)).reshape(pixels.shape[:1]
                                                                            + pred.shape[1:])
  ids = (out['visible_ids'], out['masked_ids'])
  masked = merge_tokens(visible, jnp.zeros_like(pred), *ids)
  recon = merge_tokens(visible, pred, *ids)
  return (tubelet_video(masked, grid, tubelet, c), tubelet_video(recon, grid, tubelet, c))


def per_example_loss(out):
  """float32[B]: each clip's mean squared error over its masked tubelets' pixels."""
  err = jnp.square(out['pred'].astype(jnp.float32) - out['target'].astype(jnp.float32))
  return err.mean(axis=(1, 2))


def reconstruction_loss(out):
  """float32[]: the MSE over the masked tubelets of the batch (every clip has the same M,
  so this is also the mean of `per_example_loss`)."""
  return per_example_loss(out).mean()


class Decoder(nn.Module):
  """`num_layers` pre-norm blocks (`encoderblock_i`), then `decoder_norm`: x [B, L, D]
  -> [B, L, D]. Position information is the caller's (added to x)."""
  cfg: TransformerConfig

  @nn.compact
  def __call__(self, x, *, train: bool):
    block = self.cfg.maybe_remat(EncoderBlock)
    for i in range(self.cfg.num_layers):
      x = block(self.cfg, name=f'encoderblock_{i}')(x, not train)
    return layer_norm(self.cfg, 'decoder_norm')(x)


class VideoMAE(nn.Module):
  """Masked autoencoder on ViViT Model 1 tubelets; see the module docstring."""
  cfg: TransformerConfig
  decoder_cfg: TransformerConfig
  patch_size: Sequence[int] = (16, 16)
  temporal_patch_size: int = 2
  mask_ratio: float = 0.9
  masking: str = 'tube'
  norm_pix_loss: bool = True
  encoder_only: bool = False
  posemb_init: str = 'learned'

  @nn.compact
  def __call__(self, video, *, train: bool = False, example_ids=None):
    """video: float32[B, T, H, W, C] -> the outputs of the module docstring.
    example_ids: int[B] that key each clip's mask (`mask_tokens`; default arange(B))."""
    cfg, dcfg = self.cfg, self.decoder_cfg
    tubelet = (self.temporal_patch_size, *self.patch_size)
    tokens = embeddings.embed_tokens(video, 'tubelet', cfg.hidden_size, self.patch_size,
                                     self.temporal_patch_size, cfg.dtype, cfg.param_dtype)
    batch, grid = tokens.shape[0], tokens.shape[1:4]
    x = einops.rearrange(tokens, 'b t h w d -> b (t h w) d')
    num_tokens = x.shape[1]
    # Without a 'masking' rng (init, a plain apply) the masks of key 0.
    rng = self.make_rng('masking') if self.has_rng('masking') else jax.random.key(0)
    visible_ids, masked_ids = mask_tokens(rng, batch, grid, self.mask_ratio, self.masking,
                                          example_ids)
    posemb_init = sinusoid_init if self.posemb_init == 'sinusoid' else None
    x = Encoder(cfg, posemb_init=posemb_init, name='Transformer')(x, train=train,
                                                                   keep=visible_ids)
    if self.encoder_only:
      return x
    dense = lambda features, name, **kw: nn.Dense(
        features, dtype=dcfg.dtype, param_dtype=dcfg.param_dtype,
        dot_general=dense_ops.dot_general, kernel_init=nn.initializers.xavier_uniform(),
        name=name, **kw)
    x = dense(dcfg.hidden_size, 'decoder_embed', use_bias=False)(x)
    mask_token = self.param('mask_token', nn.initializers.normal(stddev=0.02),
                            (1, 1, dcfg.hidden_size), dcfg.param_dtype)
    pos = jnp.asarray(sinusoid_table(num_tokens, dcfg.hidden_size), x.dtype)[None]
    pos = jnp.broadcast_to(pos, (batch,) + pos.shape[1:])
    masked = mask_token.astype(x.dtype) + take_tokens(pos, masked_ids)
    y = jnp.concatenate([x + take_tokens(pos, visible_ids), masked], axis=1)
    y = Decoder(dcfg, name='Decoder')(y, train=train)[:, visible_ids.shape[1]:]
    pred = dense(int(np.prod(tubelet)) * video.shape[-1], 'decoder_pred')(y)
    target = take_tokens(tubelet_pixels(video.astype(jnp.float32), tubelet), masked_ids)
    if self.norm_pix_loss:
      target = normalise_tubelets(target, video.shape[-1])
    return {'pred': pred.astype(jnp.float32), 'target': target,
            'mask': token_mask(masked_ids, num_tokens), 'visible_ids': visible_ids,
            'masked_ids': masked_ids}


def token_grid(m, *, num_frames: int, crop_size: int) -> tuple[int, int, int]:
  """(n_t, n_h, n_w) of `config.model` on [num_frames, crop_size^2] clips."""
  ph, pw = m.patch_size
  return num_frames // m.temporal_patch_size, crop_size // ph, crop_size // pw


def validate(m, *, num_frames: int, crop_size: int) -> None:
  """Raises ConfigError for VideoMAE fields of `config.model` that cannot work."""
  checks.transformer(m)
  if m.get('embedding', 'tubelet') != 'tubelet':
    raise config_error('model.embedding', m.embedding, "'tubelet' for model.name='videomae'")
  checks.positive_int('model.temporal_patch_size', m.get('temporal_patch_size'))
  checks.patches(m, crop_size=crop_size, num_frames=num_frames,
                 temporal_size=m.temporal_patch_size)
  get = lambda f: m.get(f, DEFAULTS[f])
  checks.choice('model.masking', get('masking'), MASKINGS)
  ratio = get('mask_ratio')
  if not isinstance(ratio, (int, float)) or isinstance(ratio, bool) or not 0 < ratio < 1:
    raise config_error('model.mask_ratio', ratio, 'a fraction in (0, 1), e.g. 0.9')
  n_t, n_h, n_w = token_grid(m, num_frames=num_frames, crop_size=crop_size)
  if n_h * n_w * (n_t if get('masking') == 'random' else 1) < 2:
    raise config_error('model.patch_size', tuple(m.patch_size),
                       'patches that give at least 2 maskable tokens (one to see, one to '
                       'predict)')
  checks.choice('model.posemb_init', get('posemb_init'), POSEMB_INITS)
  if not isinstance(get('norm_pix_loss'), bool):
    raise config_error('model.norm_pix_loss', get('norm_pix_loss'), 'True or False')
  for field in ('decoder_hidden_size', 'decoder_num_layers', 'decoder_num_heads',
                'decoder_mlp_dim'):
    checks.positive_int(f'model.{field}', get(field))
  if get('decoder_hidden_size') % get('decoder_num_heads'):
    raise config_error('model.decoder_num_heads', get('decoder_num_heads'),
                       f'a divisor of model.decoder_hidden_size={get("decoder_hidden_size")}')


def decoder_config(m, cfg: TransformerConfig) -> TransformerConfig:
  """The decoder's TransformerConfig: `cfg`'s options at the decoder's own sizes, no
  stochastic depth or dropout (VideoMAE's decoder has none)."""
  get = lambda f: m.get(f, DEFAULTS[f])
  return dataclasses.replace(
      cfg, hidden_size=get('decoder_hidden_size'), num_layers=get('decoder_num_layers'),
      num_heads=get('decoder_num_heads'), mlp_dim=get('decoder_mlp_dim'),
      stochastic_depth=0.0, dropout_rate=0.0, attention_dropout_rate=0.0)


def build(m, num_classes: int = 0, *, encoder_only: bool = False):
  """The VideoMAE of `config.model` (`num_classes` is unused: no labels)."""
  del num_classes
  cfg = TransformerConfig.from_model_config(m)
  get = lambda f: m.get(f, DEFAULTS[f])
  return VideoMAE(cfg=cfg, decoder_cfg=decoder_config(m, cfg),
                  patch_size=tuple(m.patch_size),
                  temporal_patch_size=m.temporal_patch_size,
                  mask_ratio=float(get('mask_ratio')), masking=get('masking'),
                  norm_pix_loss=get('norm_pix_loss'), encoder_only=encoder_only,
                  posemb_init=get('posemb_init'))


def pretraining_model_config(model, **overrides):
  """Turns the ViViT model ConfigDict `model` into a VideoMAE one: name 'videomae',
  tubelet embedding, the DEFAULTS (then `overrides`); returns it."""
  model.name, model.embedding, model.attention_type = 'videomae', 'tubelet', 'spatio_temporal'
  model.classifier = 'gap'   # what a fine-tuned ViViT reads (no CLS in pretraining).
  model.update({**DEFAULTS, **overrides})
  return model
