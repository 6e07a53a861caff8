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


def apply_train_mode(module: nn.Module, params, batch_stats, x, rng=None, **kwargs):
  """A network's train-mode forward pass; returns (output, updated batch_stats).

  Train mode: dropout with `rng` (if given) and BatchNorm with the batch's own statistics, as the
  train step runs both networks and the paper's test time runs the generator. `kwargs` go to the
  module's call (the discriminator's `return_features`).
  """
  rngs = {'dropout': rng} if rng is not None else {}
  out, updates = module.apply(
      {'params': params, 'batch_stats': batch_stats},
      x,
      train=True,
      rngs=rngs,
      mutable=['batch_stats'],
      **kwargs,
  )
  return out, updates.get('batch_stats', batch_stats)


@flax.struct.dataclass
class TrainState:
  step: jax.Array  # int32 scalar: optimizer updates done so far.
  rng: jax.Array  # Base key; step keys are fold_in(rng, step), so a resumed run replays the noise.
  generator: NetworkState
  discriminator: NetworkState
  # With config.model.ema_decay > 0: {'params', 'batch_stats'}, an exponential moving average of
  # G's (`update_ema`). Off: {}, which has no leaves, so the state (and its checkpoints) is the
  # one from before the EMA existed.
  ema: Any = flax.struct.field(default_factory=dict)


def create_learning_rate_schedule(
    optim_config, steps_per_epoch: int, num_train_steps: int
) -> optax.Schedule:
  """'constant' (paper) or 'linear': constant, then linearly to 0 over the last `decay_epochs`.

  The reference decays once per epoch; this decays per step along the same line.
  """
  lr = optim_config.learning_rate
  if optim_config.schedule == 'constant':
    return optax.constant_schedule(lr)
  decay_steps = min(optim_config.decay_epochs * steps_per_epoch, num_train_steps)  # 'linear'.
  return optax.join_schedules(
      [optax.constant_schedule(lr), optax.linear_schedule(lr, 0.0, decay_steps)],
      boundaries=[num_train_steps - decay_steps],
  )


def train_length(
    num_train_examples: int, *, batch_size: int, num_train_steps: int, num_epochs: int
) -> tuple[int, int]:
  """(steps the run trains, steps per epoch) on `num_train_examples` train examples.

  `num_train_steps` when positive, else `num_epochs` epochs: the steps follow the batch size. A
  preprocess='patches' source counts each of its 4 crops as an example.
  """
  steps_per_epoch = num_train_examples // batch_size
  if steps_per_epoch < 1:
    raise ValueError(
        f'config.batch_size={batch_size} exceeds the {num_train_examples} train examples'
    )
  if num_train_steps > 0:
    return num_train_steps, steps_per_epoch
  return num_epochs * steps_per_epoch, steps_per_epoch


def create_optimizer(optim_config, schedule: optax.Schedule) -> optax.GradientTransformation:
  """Adam(lr, b1, b2) as in the paper; one instance each for G and D."""
  return optax.adam(schedule, b1=optim_config.b1, b2=optim_config.b2)


def _init_network(
    module: nn.Module, rng: jax.Array, example: jax.Array, optimizer: optax.GradientTransformation
) -> NetworkState:
  params_rng, dropout_rng = jax.random.split(rng)
  variables = module.init({'params': params_rng, 'dropout': dropout_rng}, example, train=True)
  params = variables['params']
  return NetworkState(
      params=params, batch_stats=variables.get('batch_stats', {}), opt_state=optimizer.init(params)
  )


def create_train_state(
    rng: jax.Array,
    generator: nn.Module,
    discriminator: nn.Module,
    g_optimizer: optax.GradientTransformation,
    d_optimizer: optax.GradientTransformation,
    *,
    image_size: int,
    input_channels: int,
    output_channels: int,
    with_ema: bool = False,
) -> TrainState:
  """Initialises both networks (jit this: eager init is ~100× slower).

  Args:
    rng: the run's key (from `config.seed`).
    generator: the generator (U-Net or ResNet).
    discriminator: the PatchGAN (or its multi-scale form).
    g_optimizer: G's optax optimizer.
    d_optimizer: D's optax optimizer.
    image_size: side of the (square) images.
    input_channels, output_channels: channels of input and target images.
    with_ema: keep an EMA of G (config.model.ema_decay > 0), starting as a copy of G's initial
      params and batch stats.

  Returns:
    The state at step 0.
  """
  g_rng, d_rng, run_rng = jax.random.split(rng, 3)
  image = jnp.zeros((1, image_size, image_size, input_channels), jnp.float32)
  pair = jnp.zeros((1, image_size, image_size, input_channels + output_channels), jnp.float32)
  g = _init_network(generator, g_rng, image, g_optimizer)
  return TrainState(
      step=jnp.zeros((), jnp.int32),
      rng=run_rng,
      generator=g,
      discriminator=_init_network(discriminator, d_rng, pair, d_optimizer),
      ema=generator_variables(g) if with_ema else {},
  )


def generator_variables(network: NetworkState) -> dict:
  """{'params', 'batch_stats'} of a network: what the EMA averages and inference applies."""
  return {'params': network.params, 'batch_stats': network.batch_stats}


def update_ema(ema: dict, network: NetworkState, decay: float) -> dict:
  """ema ← decay·ema + (1 − decay)·new, leaf by leaf, for G's params and batch stats.

  The plain EMA of StyleGAN and big_vision: no warm-up or bias correction, so after n steps the
  initial weights the EMA started from still weigh decay**n (0.999: 37% at 1000 steps, <1% at
  5000); score the EMA of runs many times 1/(1 − decay) steps long. BatchNorm running statistics
  are averaged like the params.
  """
  return jax.tree.map(
      lambda average, new: decay * average + (1.0 - decay) * new, ema, generator_variables(network)
  )


def with_ema_update(step_fn, decay: float):
  """`step_fn(state, batch) -> (state, metrics)` followed by `update_ema`; `step_fn` if decay is 0.

  Every step updates the EMA, one whose updates were skipped for a non-finite loss
  (`config.on_nonfinite='skip'`) too: G is unchanged then, so the EMA moves toward the same G.
  """
  if not decay:
    return step_fn

  def step_with_ema(state: TrainState, batch):
    state, metrics = step_fn(state, batch)
    return state.replace(ema=update_ema(state.ema, state.generator, decay)), metrics

  return step_with_ema
