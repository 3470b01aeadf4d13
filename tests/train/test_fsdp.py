"""Sharded parameters (`trainer.mesh` {'data': d, 'fsdp': f}) on 8 forced CPU devices:
the sharding rule, the same loss trajectory as replicated training, per-device state
bytes divided by the fsdp size, and checkpoints restored onto another mesh."""
import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from train_helpers import synthetic_config
from vivit_jax.errors import ConfigError
from vivit_jax.train import checkpoint as ckpt_lib
from vivit_jax.train import parallel
from vivit_jax.train import setup as setup_lib

NUM_STEPS = 5


def test_sharding_rule_splits_the_largest_divisible_dimension():
  assert parallel.fsdp_spec((768, 3072), 8) == P(None, 'fsdp')
  assert parallel.fsdp_spec((3072, 768), 8) == P('fsdp', None)
  assert parallel.fsdp_spec((16, 2, 8), 4) == P('fsdp', None, None)   # first of ties: 16.
  assert parallel.fsdp_spec((10,), 4) == P()           # no divisible dimension.
  assert parallel.fsdp_spec((), 4) == P()
  assert parallel.fsdp_spec((768, 3072), 1) == P()


def test_mesh_config_errors():
  c = synthetic_config()
  assert parallel.mesh_shape(c, 8) == (8, 1)
  c.trainer.mesh.fsdp = 4
  assert parallel.mesh_shape(c, 8) == (2, 4)
  c.trainer.mesh.fsdp = 3
  with pytest.raises(ConfigError, match=r'data x fsdp = the 8 devices'):
    parallel.mesh_shape(c, 8)
  c.trainer.mesh.fsdp = 0
  with pytest.raises(ConfigError, match=r'config.trainer.mesh.fsdp=0 is invalid'):
    parallel.mesh_shape(c, 8)
  c.trainer.mesh.fsdp, c.trainer.parallelism = 2, 'pmap'
  with pytest.raises(ConfigError, match=r"mesh.fsdp=2 is invalid: expected 1 with "
                     "trainer.parallelism='pmap'"):
    setup_lib.check_trainer_config(c)


def _train(fsdp, tmp_path):
  """NUM_STEPS updates of the tiny ViViT on fixed batches; returns (losses, final
  params, the state, setup, compiled memory analysis)."""
  config = synthetic_config(batch_size=16)
  config.trainer.mesh.fsdp = fsdp
  config.model.hidden_size, config.model.mlp_dim = 32, 64     # dims split over 4.
  s = setup_lib.setup(config, str(tmp_path))
  par = s.par
  init = jax.jit(s.init_state, out_shardings=par.shardings(s.abstract_state))
  state = par.put_state(init(jax.random.PRNGKey(0)))
  rng = jax.random.PRNGKey(1)
  batches = [s.dataset.train_batch(step, 16) for step in range(NUM_STEPS)]
  memory = par.train_step.lower(state, par.put_batch(batches[0]), rng).compile()
  memory = memory.memory_analysis()
  losses = []
  for batch in batches:
    state, metrics = par.train_step(state, par.put_batch(batch), rng)
    losses.append(float(metrics['loss']))
  return losses, jax.device_get(state.params), state, s, memory


def _state_bytes_per_device(state):
  return sum(x.addressable_shards[0].data.nbytes for x in jax.tree.leaves(state))


def test_fsdp_matches_replicated_and_divides_state_memory(tmp_path):
  assert jax.device_count() == 8
  losses, params, state, _, mem = _train(1, tmp_path / 'replicated')
  losses4, params4, state4, s4, mem4 = _train(4, tmp_path / 'fsdp')
  print('losses', losses, losses4)
  np.testing.assert_allclose(losses4, losses, atol=1e-5)
  assert losses[-1] < losses[0]                    # it trained: not a vacuous match.
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5), params4, params)
  # Most state is split 4 ways: only arrays without a dimension divisible by 4 (the
  # 10-class head bias, step counters) stay whole.
  mlp = state4.params['Transformer']['encoderblock_0']['MlpBlock_0']
  kernel = mlp['Dense_0']['kernel']                          # [32, 64]
  assert kernel.sharding.spec == P(None, 'fsdp')
  assert kernel.addressable_shards[0].data.shape == (32, 16)
  whole, split = _state_bytes_per_device(state), _state_bytes_per_device(state4)
  unsplit = sum(x.nbytes for x in jax.tree.leaves(state4)
                if x.sharding.spec == P() or x.ndim == 0)
  assert split == pytest.approx(unsplit + (whole - unsplit) / 4)
  assert split < 0.3 * whole
  # The compiled step's inputs shrink by the same bytes (batch and rng are equal).
  print('argument bytes', mem.argument_size_in_bytes, mem4.argument_size_in_bytes)
  assert mem.argument_size_in_bytes - mem4.argument_size_in_bytes == whole - split
  # A checkpoint of the sharded state restores onto the replicated mesh and back.
  ckpts = ckpt_lib.Checkpoints(str(tmp_path / 'ckpt'), async_save=False)
  ckpts.save(s4.par.get_state(state4))
  _, _, _, s1, _ = _train(1, tmp_path / 'again')
  for par in (s1.par, s4.par):
    back = ckpts.restore(NUM_STEPS, par.with_sharding(s4.abstract_state))
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(a, b),
                 jax.device_get(back.params), params4)
  # ... and as predict reads params: onto one device, with or without a target tree.
  step_dir = f'{ckpts.directory}/{NUM_STEPS}'
  for target in (None, s4.abstract_state.params):
    back = ckpt_lib.load_params(step_dir, target)
    assert jax.tree.leaves(back)[0].sharding.device_set == {jax.local_devices()[0]}
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(a, b),
                 jax.device_get(back), params4)
  ckpts.close()
