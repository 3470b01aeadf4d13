"""vivit_jax: video transformers (ViViT and its peers) in JAX/Flax."""
import setuptools

MKL = "mkl>=2024; platform_machine=='x86_64' and sys_platform=='linux'"

setuptools.setup(
    name="vivit_jax",
    version="0.1.0",
    description="ViViT and peer video transformers in JAX/Flax, with a Scenic-style trainer.",
    packages=setuptools.find_packages(include=["vivit_jax", "vivit_jax.*"]),
    # The C++ CPU kernels' sources, compiled on first use (ops/cpu/build.py).
    package_data={"vivit_jax.ops.cpu": ["*.cc", "*.h"]},
    python_requires=">=3.10",
    install_requires=[
        "jax>=0.7",
        "flax>=0.10",
        "optax>=0.2.4",
        "ml_collections>=1.0",
        "clu>=0.0.12",
        "orbax-checkpoint>=0.11",
        "einops>=0.8",
        "absl-py>=2.0",
        "numpy>=1.26",
        "tensorflow-cpu>=2.16; platform_machine=='x86_64'",
        "tensorflow>=2.16; platform_machine!='x86_64'",
        "tensorboard>=2.16",
        "tensorflow-datasets>=4.9",
        "av>=12",
        "protobuf>=4.21",       # data/example_proto.py (tf.train.Example without TF).
        "pillow>=10",
        "matplotlib>=3.8",
        # OpenBLAS (the build NumPy/SciPy ship) for dense layers on CPU: ops/cpu/matmul.py.
        "scipy-openblas32>=0.3.27",
    ],
    extras_require={
        # torch is pinned to the CPU wheel these machines install offline; an
        # unpinned torch pulls a multi-GB CUDA build.
        # Intel MKL's sgemm for the CPU dense layers (ops/cpu/matmul.py): faster than
        # OpenBLAS on x86-64; the tests cover both.
        "mkl": [MKL],
        # import-linter: the layering contracts (.importlinter, tests/test_layering.py).
        "test": ["pytest>=8", "pytest-xdist>=3", "import-linter>=2.1", "torch==2.13.0",
                 "transformers>=4.40", "safetensors>=0.4", MKL],
    },
)
