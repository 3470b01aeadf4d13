"""Plain-numpy (float64) reference of ViT/ViViT, written independently of the models.

Works on one example (no batch axis) and on a params tree of numpy arrays. The factorised
models are expressed with attention *masks over the full token set*, a different method
from the reshapes the Flax models use, so agreement checks both.
"""
import numpy as np
from scipy.special import erf


def layer_norm(x, p, eps=1e-6):
  mean = x.mean(-1, keepdims=True)
  var = ((x - mean) ** 2).mean(-1, keepdims=True)
  return (x - mean) / np.sqrt(var + eps) * p['scale'] + p['bias']


def gelu(x, approximate=False):
  if approximate:   # tanh approximation (flax's nn.gelu default, as in Scenic).
    return 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x ** 3)))
  return 0.5 * x * (1.0 + erf(x / np.sqrt(2.0)))


def attention(x, p, head_masks=None):
  """x: [L, D]; head_masks: None or bool[H, L, L] (True = may attend)."""
  q = np.einsum('ld,dhk->hlk', x, p['query']['kernel']) + p['query']['bias'][:, None]
  k = np.einsum('ld,dhk->hlk', x, p['key']['kernel']) + p['key']['bias'][:, None]
  v = np.einsum('ld,dhk->hlk', x, p['value']['kernel']) + p['value']['bias'][:, None]
  logits = np.einsum('hqk,hlk->hql', q, k) / np.sqrt(q.shape[-1])
  if head_masks is not None:
    logits = np.where(head_masks, logits, -np.inf)
  logits = logits - logits.max(-1, keepdims=True)
  w = np.exp(logits)
  w = w / w.sum(-1, keepdims=True)
  out = np.einsum('hql,hlk->qhk', w, v)
  return np.einsum('qhk,hkd->qd', out, p['out']['kernel']) + p['out']['bias']


def mlp(x, p, gelu_approximate=False):
  h = gelu(x @ p['Dense_0']['kernel'] + p['Dense_0']['bias'], gelu_approximate)
  return h @ p['Dense_1']['kernel'] + p['Dense_1']['bias']


def block(x, p, head_masks=None):
  x = x + attention(layer_norm(x, p['LayerNorm_0']), p['MultiHeadDotProductAttention_0'],
                    head_masks)
  return x + mlp(layer_norm(x, p['LayerNorm_1']), p['MlpBlock_0'])


def encoder(x, p, num_layers, head_masks=None):
  x = x + p['posembed_input']['pos_embedding'][0]
  for i in range(num_layers):
    x = block(x, p[f'encoderblock_{i}'], head_masks)
  return layer_norm(x, p['encoder_norm'])


def embed_tubelets(video, kernel, bias):
  """video: [T, H, W, C]; kernel: [t, ph, pw, C, D] -> tokens [n_t * n_h * n_w, D]."""
  t, ph, pw, c, d = kernel.shape
  T, H, W, _ = video.shape
  tubes = video.reshape(T // t, t, H // ph, ph, W // pw, pw, c)
  tubes = tubes.transpose(0, 2, 4, 1, 3, 5, 6).reshape(-1, t * ph * pw * c)
  return tubes @ kernel.reshape(-1, d) + bias


def head(x, p):
  return x @ p['output_projection']['kernel'] + p['output_projection']['bias']


def grid_masks(num_frames, num_space):
  """bool[N, N] masks for time-major tokens: same temporal index / same spatial position."""
  t = np.repeat(np.arange(num_frames), num_space)
  s = np.tile(np.arange(num_space), num_frames)
  return t[:, None] == t[None, :], s[:, None] == s[None, :]


def model1(video, p, num_layers):
  x = embed_tubelets(video, p['embedding']['kernel'], p['embedding']['bias'])
  x = np.concatenate([p['cls'][0], x], 0)
  return head(encoder(x, p['Transformer'], num_layers)[0], p)


def model2(video, p, num_layers, temporal_num_layers, num_frames):
  x = embed_tubelets(video, p['embedding']['kernel'], p['embedding']['bias'])
  per_time = x.reshape(num_frames, -1, x.shape[-1])
  reps = []
  for tokens in per_time:
    tokens = np.concatenate([p['cls_SpatialTransformer'][0], tokens], 0)
    reps.append(encoder(tokens, p['SpatialTransformer'], num_layers)[0])
  reps = np.stack(reps)
  if temporal_num_layers == 0:
    return head(reps.mean(0), p)
  reps = np.concatenate([p['cls_TemporalTransformer'][0], reps], 0)
  return head(encoder(reps, p['TemporalTransformer'], temporal_num_layers)[0], p)


POOLS = {'gap': lambda x: x.mean(0), 'gmp': lambda x: x.max(0), 'gsp': lambda x: x.sum(0)}


def model3(video, p, num_layers, num_frames, attention_order='space_time',
           gelu_approximate=False, pool='gap'):
  """attention_order 'space_time': spatial sub-layer, then temporal; 'time_space' (Scenic's
  default): temporal first. A 4D embedding kernel is a one-frame tubelet."""
  kernel = p['embedding']['kernel']
  kernel = kernel[None] if kernel.ndim == 4 else kernel
  x = embed_tubelets(video, kernel, p['embedding']['bias'])
  same_t, same_s = grid_masks(num_frames, x.shape[0] // num_frames)
  sublayers = {'space_time': (('space', same_t), ('time', same_s)),
               'time_space': (('time', same_s), ('space', same_t))}[attention_order]
  tp = p['Transformer']
  x = x + tp['posembed_input']['pos_embedding'][0]
  for i in range(num_layers):
    b = tp[f'encoderblock_{i}']
    for axis, mask in sublayers:
      x = x + attention(layer_norm(x, b[f'LayerNorm_{axis}']),
                        b[f'MultiHeadDotProductAttention_{axis}'], mask[None])
    x = x + mlp(layer_norm(x, b['LayerNorm_mlp']), b['MlpBlock'], gelu_approximate)
  return head(POOLS[pool](layer_norm(x, tp['encoder_norm'])), p)


def model4(video, p, num_layers, num_frames, num_heads, pool='gap'):
  x = embed_tubelets(video, p['embedding']['kernel'], p['embedding']['bias'])
  same_t, same_s = grid_masks(num_frames, x.shape[0] // num_frames)
  half = num_heads // 2
  masks = np.stack([same_t] * half + [same_s] * (num_heads - half))
  return head(POOLS[pool](encoder(x, p['Transformer'], num_layers, masks)), p)
