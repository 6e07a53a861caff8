"""Using a trained generator: restoring it alone from a checkpoint, and test-time generation.

`generate` is shared by training's eval, evaluation, prediction and export, so all of them use the
same test-time behaviour (`config.eval.train_mode`).
"""

import logging
import pathlib
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from pix2pix_jax import checkpointing, models, train_state
from pix2pix_jax.data import pipeline
from pix2pix_jax.data import images as image_lib


def generate(
    generator: nn.Module, network, inputs: jax.Array, rng: jax.Array, train_mode: bool
) -> jax.Array:
  """Translates uint8 (or 16-bit uint16) inputs to float images in [-1, 1].

  Args:
    generator: the generator (U-Net or ResNet).
    network: its variables: a NetworkState or a dict with 'params' and 'batch_stats'.
    inputs: uint8 or uint16 (B, H, W, C_in).
    rng: dropout key (used in train mode).
    train_mode: the paper's test-time behaviour: dropout on and BatchNorm with each image's own
      statistics (the paper tests at batch 1; vmapping over single images keeps that whatever
      the batch size). At the model size that is the paper's; at a native size the statistics
      are the whole (padded) image's, or each tile's when `predict.translate_native` tiles it.
      False: running averages, no dropout (deterministic).

  Returns:
    Float (B, H, W, C) images in [-1, 1].
  """
  if isinstance(network, train_state.NetworkState):
    network = {'params': network.params, 'batch_stats': network.batch_stats}
  images = image_lib.to_float(inputs)
  if not train_mode:
    return generator.apply(network, images, train=False)

  def one(image, key):
    return train_state.apply_train_mode(
        generator, network['params'], network['batch_stats'], image[None], key
    )[0][0]

  return jax.vmap(one)(images, jax.random.split(rng, images.shape[0]))


def test_mode_description(train_mode: bool) -> str:
  return (
      "paper (dropout on, BatchNorm with each image's own statistics)"
      if train_mode
      else 'deterministic (running BatchNorm averages, no dropout)'
  )


def best_record(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """The record {'metric', 'value', 'step', 'num_images'} of `workdir`'s best checkpoint.

  Raises:
    FileNotFoundError: the workdir has no best checkpoint, naming it and config.eval.best_metric.
  """
  record = checkpointing.read_best(pathlib.Path(workdir))
  if record is None:
    raise FileNotFoundError(
        f'--step=best: no best checkpoint in {pathlib.Path(workdir) / checkpointing.BEST_DIR}. '
        'Training keeps one at each eval after step 0 when config.eval.best_metric names a '
        f'metric (here {config.eval.best_metric!r}) that it can compute; train with it, or pass '
        f'--step=N for a checkpoint of {pathlib.Path(workdir) / checkpointing.CHECKPOINT_DIR}'
    )
  return record


class TrainedGenerator(NamedTuple):
  generator: nn.Module
  network: dict  # {'params', 'batch_stats'}
  step: int
  best: dict | None  # With step 'best': its record {'metric', 'value', 'step', 'num_images'}.


def _restore_target(module: nn.Module, image_size: int, channels: int, sharding=None) -> dict:
  """{'params', 'batch_stats'} of `module` as ShapeDtypeStructs placed by `sharding` (default:
  the first device), for restoring that network alone from a checkpoint."""
  shape = (1, image_size, image_size, channels)
  rngs = {'params': jax.random.PRNGKey(0), 'dropout': jax.random.PRNGKey(0)}
  variables = jax.eval_shape(lambda: module.init(rngs, jnp.zeros(shape), train=True))
  sharding = sharding or jax.sharding.SingleDeviceSharding(jax.devices()[0])
  return {
      key: jax.tree.map(
          lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding),
          variables.get(key, {}),
      )
      for key in ('params', 'batch_stats')
  }


def restore_trained_generator(
    config: ml_collections.ConfigDict, workdir: str, step: int | str | None = None, sharding=None
) -> TrainedGenerator:
  """The generator of `workdir`'s checkpoint `step` (default: latest), without D or optimizers.

  Args:
    config: the run's config (only the generator's architecture keys must match the checkpoint).
    workdir: the training workdir.
    step: checkpoint step, 'best' (`checkpointing.BEST_STEP`: the best checkpoint by
      config.eval.best_metric that training kept), or None for the latest.
    sharding: where to put the variables (default: replicated on the first device).

  Returns:
    (generator module, {'params', 'batch_stats'}, step, the best record or None).
  """
  checkpoint_dir = pathlib.Path(workdir) / checkpointing.CHECKPOINT_DIR
  best = None
  if step == checkpointing.BEST_STEP:
    best = best_record(config, workdir)
    checkpoint_dir, step = pathlib.Path(workdir) / checkpointing.BEST_DIR, best['step']
  if not checkpoint_dir.is_dir():
    raise FileNotFoundError(
        f'no checkpoints in {checkpoint_dir}: train first (--mode=train), or check --workdir'
    )
  input_channels, output_channels = pipeline.channels(config.data)
  generator = models.create_generator(config.model, config.data.image_size, output_channels)
  target = _restore_target(generator, config.data.image_size, input_channels, sharding)
  manager = checkpointing.open_checkpoints(checkpoint_dir)
  network, step = checkpointing.restore_generator(manager, target, config, step)
  logging.info(
      'Restored the generator of %s (step %d, %s weights%s)',
      checkpoint_dir / str(step),
      step,
      checkpointing.generator_weights(config),
      f"; the best by {best['metric']} ({best['value']:.6g})" if best else '',
  )
  return TrainedGenerator(generator, network, step, best)


def restore_trained_discriminator(
    config: ml_collections.ConfigDict, workdir: str, step: int, best: dict | None
) -> dict:
  """The discriminator's {'params', 'batch_stats'} of checkpoint `step` (of WORKDIR/checkpoints,
  or of WORKDIR/checkpoints_best when `best`, the record `restore_trained_generator` returned)."""
  discriminator = models.create_discriminator(config.model)
  target = _restore_target(
      discriminator, config.data.image_size, sum(pipeline.channels(config.data))
  )
  folder = checkpointing.BEST_DIR if best else checkpointing.CHECKPOINT_DIR
  manager = checkpointing.open_checkpoints(pathlib.Path(workdir) / folder)
  return checkpointing.restore_discriminator(manager, target, config, step)
