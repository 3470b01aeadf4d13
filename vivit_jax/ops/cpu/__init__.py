"""C++ kernels for XLA:CPU, one `<kernel>.cc` (an XLA FFI handler) and `<kernel>.py` (its
build, registration and differentiable wrapper) each: flash_attention, matmul (MKL or
OpenBLAS sgemm), depthwise_conv (the kernel gradient of a depthwise 3D convolution).
`build.py` compiles them with the machine's C++ compiler on first use and caches them.
Each falls back to XLA's own ops when it cannot be built (logged once) or when
`VIVIT_JAX_CPU_KERNEL=0`.
"""
