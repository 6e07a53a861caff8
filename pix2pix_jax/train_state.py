"""The training state: one pytree with both networks, their optimizer states, the step and the rng.

It holds arrays only (no modules or optimizers), so it is saved, restored, sharded and donated as
one unit and a restored state never triggers a recompilation.
"""

from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

SCHEDULES = ('constant', 'linear')


@flax.struct.dataclass
class NetworkState:
  params: Any
  batch_stats: Any  # Running BatchNorm statistics ({} with instance norm).
  opt_state: Any


def apply_train_mode(module: nn.Module, params, batch_stats, x, rng=None):
  """A network's train-mode forward pass; returns (output, updated batch_stats).

  Train mode: dropout with `rng` (if given) and BatchNorm with the batch's own statistics, as the
  train step runs both networks and the paper's test time runs the generator.
  """
  rngs = {'dropout': rng} if rng is not None else {}
  out, updates = module.apply({'params': params, 'batch_stats': batch_stats}, x, train=True,
                              rngs=rngs, mutable=['batch_stats'])
  return out, updates.get('batch_stats', batch_stats)


@flax.struct.dataclass
class TrainState:
  step: jax.Array  # int32 scalar: optimizer updates done so far.
  rng: jax.Array  # Base key; step keys are fold_in(rng, step), so a resumed run replays the noise.
  generator: NetworkState
  discriminator: NetworkState


def create_learning_rate_schedule(optim_config, steps_per_epoch: int,
                                  num_train_steps: int) -> optax.Schedule:
  """'constant' (paper) or 'linear': constant, then linearly to 0 over the last `decay_epochs`.

  The reference decays once per epoch; this decays per step along the same line.
  """
  lr = optim_config.learning_rate
  if optim_config.schedule == 'constant':
    return optax.constant_schedule(lr)
  if optim_config.schedule == 'linear':
    decay_steps = min(optim_config.decay_epochs * steps_per_epoch, num_train_steps)
    return optax.join_schedules(
        [optax.constant_schedule(lr), optax.linear_schedule(lr, 0.0, decay_steps)],
        boundaries=[num_train_steps - decay_steps])
  raise ValueError(f'config.optim.schedule={optim_config.schedule!r} is not one of {SCHEDULES}')


def create_optimizer(optim_config, schedule: optax.Schedule) -> optax.GradientTransformation:
  """Adam(lr, b1, b2) as in the paper; one instance each for G and D."""
  return optax.adam(schedule, b1=optim_config.b1, b2=optim_config.b2)


def _init_network(module: nn.Module, rng: jax.Array, example: jax.Array,
                  optimizer: optax.GradientTransformation) -> NetworkState:
  params_rng, dropout_rng = jax.random.split(rng)
  variables = module.init({'params': params_rng, 'dropout': dropout_rng}, example, train=True)
  params = variables['params']
  return NetworkState(params=params, batch_stats=variables.get('batch_stats', {}),
                      opt_state=optimizer.init(params))


def create_train_state(rng: jax.Array, generator: nn.Module, discriminator: nn.Module,
                       g_optimizer: optax.GradientTransformation,
                       d_optimizer: optax.GradientTransformation, *, image_size: int,
                       input_channels: int, output_channels: int) -> TrainState:
  """Initialises both networks (jit this: eager init is ~100× slower).

  Args:
    rng: the run's key (from `config.seed`).
    generator: the U-Net.
    discriminator: the PatchGAN.
    g_optimizer: G's optax optimizer.
    d_optimizer: D's optax optimizer.
    image_size: side of the (square) images.
    input_channels, output_channels: channels of input and target images.

  Returns:
    The state at step 0.
  """
  g_rng, d_rng, run_rng = jax.random.split(rng, 3)
  image = jnp.zeros((1, image_size, image_size, input_channels), jnp.float32)
  pair = jnp.zeros((1, image_size, image_size, input_channels + output_channels), jnp.float32)
  return TrainState(
      step=jnp.zeros((), jnp.int32),
      rng=run_rng,
      generator=_init_network(generator, g_rng, image, g_optimizer),
      discriminator=_init_network(discriminator, d_rng, pair, d_optimizer),
  )
