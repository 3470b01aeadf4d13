"""What a model's classification head sees, for every family, without touching the models.

`representations(model, params, video)` runs the forward pass once under
`flax.linen.intercept_methods` and returns, next to the logits:

  pre_logits  float32[B, D]: the input of the final class projection, the Dense named
              `output_projection` that every family's head ends with
              (`embeddings.classifier_head`), so `logits = pre_logits @ kernel + bias`
              with `params['output_projection']`. D is the head's input width: the
              pooled/CLS representation, after ViT's `pre_logits` Dense + tanh when
              `representation_size` is set, after VTN's `head_hidden` MLP.
  tokens      float32[B, N, D']: the output of the last LayerNorm named `encoder_norm`
              that runs, i.e. the final encoder's normalised token sequence, flattened
              to one sequence per clip (CLS first where the family has one):
                ViViT Models 1/3/4, TimeSformer, MViT: all tokens (+ CLS);
                ViViT Model 2, VTN: the temporal encoder's tokens (+ CLS);
                ViViT Model 2 without a temporal encoder: every frame's spatial tokens;
                Video Swin: the last stage's t x h x w tokens (t-major).

Both are read at inference (`train=False`: no dropout).
"""
from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

HEAD = 'output_projection'
FINAL_NORM = 'encoder_norm'


def representations(model: nn.Module, params, video):
  """(logits float32[B, K], pre_logits float32[B, D], tokens float32[B, N, D']) of
  `video: float32[B, T, H, W, C]` (see the module docstring). Traceable (jit it)."""
  seen = {}

  def capture(next_fun, args, kwargs, context):
    out = next_fun(*args, **kwargs)
    if context.method_name == '__call__':
      if context.module.name == HEAD:
        seen['pre_logits'] = args[0]
      elif context.module.name == FINAL_NORM:
        seen['tokens'] = out
    return out

  with nn.intercept_methods(capture):
    logits = model.apply({'params': params}, video, train=False)
  missing = {'pre_logits', 'tokens'} - set(seen)
  if missing:
    raise ValueError(f'{type(model).__name__} has no {HEAD!r} head or {FINAL_NORM!r} '
                     f'norm (missing: {sorted(missing)}).')
  batch = video.shape[0]
  tokens = seen['tokens']
  tokens = tokens.reshape((batch, -1, tokens.shape[-1]))
  return (logits, seen['pre_logits'].astype(jnp.float32), tokens.astype(jnp.float32))
