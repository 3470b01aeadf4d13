"""Model-agnostic numerics: the kernels behind the models' layers, per backend.

Modules:
  attention     `dot_product_attention` and its kernel choice ('auto', 'cudnn',
                'chunked', 'cpu_flash', 'explicit'), `DecomposedBias`.
  dense         `dot_general`, the dense-product hook of every dense layer.
  layer_norm    `layer_norm_rows`, LayerNorm with its own backward pass.
  gelu          `gelu`, GELU with its own backward pass.
  pooling       `strided_windows`, `depthwise_conv3d`, `max_pool`.
  switches      every environment variable and context that changes the numerics
                (VIVIT_JAX_CPU_KERNEL, VIVIT_JAX_BLAS, VIVIT_JAX_CACHE_DIR,
                VIVIT_JAX_OWN_BACKWARD, `flop_counting()`), documented in one place.
  cpu/          the C++ kernels for XLA:CPU (one `<kernel>.cc` + `<kernel>.py` each) and
                their build.

Nothing here knows about video or model families; `vivit_jax.models` builds on it.
"""
from vivit_jax.ops.switches import flop_counting

__all__ = ['flop_counting']
