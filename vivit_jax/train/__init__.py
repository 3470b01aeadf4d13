"""Training and evaluation: `train_and_evaluate(config, workdir)`, `evaluate(...)`.

Modules: optim (optax), steps (pure train/eval steps), parallel (jit mesh / pmap
wrappers), checkpoint (orbax), setup (validation and what training and evaluation both
build), evaluate (multi-view metrics), trainer (the loop).
"""
# `evaluate` stays a module name here (evaluate.evaluate is the function).
from vivit_jax.train.setup import validate
from vivit_jax.train.trainer import train_and_evaluate

__all__ = ['train_and_evaluate', 'validate']
