r"""Numerical checks of the GPU fast paths, for a lent GPU (experiments/README.md, GPU).

  python -m experiments.gpu_checks

The unit tests cover these paths on CPU, where cuDNN does not exist; this script runs
them where it does. Each check prints ||x - ref|| / ||ref|| and its tolerance:
  attention  cuDNN flash attention in bf16
             (`vivit_jax.ops.attention.dot_product_attention(impl='cudnn')`) vs the
             explicit formulation in float32 on the same (upcast) inputs, at ViViT-B/16x2
             Model 1's sequence (3137 tokens, 12 heads x 64): output and the q/k/v
             gradients; and that the default impl ('auto') compiles to cuDNN
             fused-attention calls for bf16 inputs.
  model      ViViT-B/16x2 Model 1 cut to 2 layers, 2 clips of 32x224x224: bf16 logits vs
             float32 logits; remat on vs off parameter gradients (float32 and bf16).
Exit status 1 when a check misses its tolerance.
"""
from __future__ import annotations

import sys

import jax
import jax.numpy as jnp
import numpy as np

from vivit_jax import config as vc
from vivit_jax import models
from vivit_jax.ops import attention as attention_ops

CONFIG = 'configs/kinetics400/vivit_b16x2_spatio_temporal.py'
results = []


def rel(x, ref) -> float:
  x, ref = (np.asarray(jnp.asarray(a, jnp.float32), np.float64) for a in (x, ref))
  assert np.isfinite(x).all(), 'non-finite values'
  return float(np.linalg.norm(x - ref) / np.linalg.norm(ref))


def check(name: str, error: float, tolerance: float):
  results.append((name, error, tolerance))
  print(f'| {name} | {error:.2e} | {tolerance:.0e} | {"ok" if error <= tolerance else "FAIL"} |',
        flush=True)


def attention():
  b, l, h, d = 2, 3137, 12, 64
  keys = jax.random.split(jax.random.key(0), 4)
  q, k, v, cot = (jax.random.normal(key, (b, l, h, d), jnp.float32) for key in keys)

  def loss(impl, dtype):
    def f(q, k, v):
      out = attention_ops.dot_product_attention(q.astype(dtype), k.astype(dtype),
                                                v.astype(dtype), impl=impl)
      return jnp.sum(out.astype(jnp.float32) * cot), out
    return jax.jit(jax.value_and_grad(f, argnums=(0, 1, 2), has_aux=True))

  # The reference sees the same bf16-rounded inputs, in float32.
  q16, k16, v16 = (x.astype(jnp.bfloat16).astype(jnp.float32) for x in (q, k, v))
  (_, ref), ref_grads = loss('explicit', jnp.float32)(q16, k16, v16)
  (_, out), grads = loss('cudnn', jnp.bfloat16)(q16, k16, v16)
  check('attention cuDNN bf16 output vs f32', rel(out, ref), 1e-2)
  for name, g, r in zip('qkv', grads, ref_grads):
    check(f'attention cuDNN bf16 d{name} vs f32', rel(g, r), 2e-2)
  calls = loss('auto', jnp.bfloat16).lower(q, k, v).compile().as_text().count('__cudnn$fmha')
  print(f'default impl, bf16, forward+backward: {calls} cuDNN fused-attention calls')
  check('default impl is cuDNN for bf16 (1 = no)', float(calls == 0), 0)


def model_checks():
  config = vc.load_config(CONFIG)
  config.model.num_layers = 2
  d = config.dataset
  video = jax.random.uniform(jax.random.key(1), (2, d.num_frames, d.crop_size,
                                                  d.crop_size, 3))

  def build(**overrides):
    m = config.model.copy_and_resolve_references()
    m.update(overrides)
    return models.create_model(m, d.num_classes)

  shapes = jax.eval_shape(lambda: build().init(jax.random.key(0), video[:1]))['params']
  rng = np.random.default_rng(0)
  params = jax.tree.map(lambda s: jnp.asarray(0.05 * rng.standard_normal(s.shape), s.dtype),
                        shapes)
  logits = {dtype: jax.jit(build(dtype=dtype).apply)({'params': params}, video)
            for dtype in ('float32', 'bfloat16')}
  check('model bf16 logits vs f32', rel(logits['bfloat16'], logits['float32']), 5e-2)

  for dtype, tolerance in (('float32', 1e-4), ('bfloat16', 2e-2)):
    grads = {}
    for remat in (False, True):
      model = build(dtype=dtype, remat=remat)
      grads[remat] = jax.jit(jax.grad(lambda p, model=model: jnp.sum(
          model.apply({'params': p}, video).astype(jnp.float32) ** 2)))(params)
    flat = lambda g: jnp.concatenate([x.ravel() for x in jax.tree.leaves(g)])
    check(f'model {dtype} grads remat vs none', rel(flat(grads[True]), flat(grads[False])),
          tolerance)


def main():
  print(f'jax {jax.__version__} on {jax.local_devices()[0].device_kind}')
  print('| check | rel. error | tolerance | |\n|---|---|---|---|', flush=True)
  if jax.default_backend() == 'gpu':
    attention()
  else:
    print('(no GPU: the cuDNN checks are skipped)')
  model_checks()
  failed = [r for r in results if r[1] > r[2]]
  print(f'{len(results) - len(failed)}/{len(results)} checks within tolerance')
  return 1 if failed else 0


if __name__ == '__main__':
  sys.exit(main())
