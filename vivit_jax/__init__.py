"""vivit_jax: ViViT and its peer video transformers in JAX/Flax."""
__version__ = '0.1.0'
