"""Measurements of vivit_jax: benchmarks, model tables, profiles, sweeps, result notes.

Run the scripts as modules from the repository root (`python -m experiments.benchmark
...`, `python -m experiments.model_table`); experiments/README.md has their current
results, each with the command and date that produced it.
"""
