"""One self-attention layer over a config's full token sequence with every kernel:
`jax.nn.dot_product_attention`, our explicit, chunked and (on CPU) C++ flash kernels,
and torch's `scaled_dot_product_attention`, timed interleaved."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from experiments.benchmark import pytorch, report, timing
from vivit_jax.ops import attention
from vivit_jax.ops.cpu import flash_attention as cpu_flash_attention


def attention_kernels(config, batch: int, runs: int, warmup: int) -> list[dict]:
  """Times every kernel on q, k, v [batch, L, heads, head_dim], float32, where L is all
  tokens of `config`'s video (the Model 1 sequence: n_t * n_h * n_w + 1); prints one
  table row per kernel and returns the rows (FLOPs: the two products, 4 * B * L^2 * H *
  head_dim)."""
  m, d = config.model, config.dataset
  tokens = (d.num_frames // m.get('temporal_patch_size', 1)) * (
      d.crop_size // m.patch_size[0]) * (d.crop_size // m.patch_size[1]) + 1
  heads, head_dim = m.num_heads, m.hidden_size // m.num_heads
  rng = np.random.default_rng(0)
  q, k, v = (jnp.asarray(rng.standard_normal((batch, tokens, heads, head_dim)),
                         jnp.float32) for _ in range(3))
  kernels = {'jax.nn.dot_product_attention': jax.nn.dot_product_attention}
  impls = ('explicit', 'chunked') + (('cpu_flash',) if cpu_flash_attention.available()
                                     and jax.default_backend() == 'cpu' else ())
  for impl in impls:
    kernels[impl] = lambda q, k, v, impl=impl: attention.dot_product_attention(
        q, k, v, impl=impl)
  fns = {}
  for name, kernel in kernels.items():
    fn = jax.jit(kernel)
    fns[name] = lambda fn=fn: jax.block_until_ready(fn(q, k, v))
  if pytorch.torch_available():
    import torch  # pylint: disable=import-outside-toplevel
    tq, tk, tv = (torch.from_numpy(np.array(a)).transpose(1, 2).contiguous()
                  for a in (q, k, v))

    def sdpa():
      with torch.inference_mode():
        torch.nn.functional.scaled_dot_product_attention(tq, tk, tv)
    fns['torch sdpa'] = sdpa
  timings = timing.interleaved(fns, runs, warmup)
  flops = 4 * batch * tokens * tokens * heads * head_dim
  rows = []
  for name, t in timings.items():
    rows.append({'kernel': name, 'tokens': tokens, 'heads': heads, 'head_dim': head_dim,
                 'batch': batch, **t.as_dict(),
                 'achieved_tflops': flops / t.median / 1e12})
    print(report.kernels_row(rows[-1]), flush=True)
  return rows
