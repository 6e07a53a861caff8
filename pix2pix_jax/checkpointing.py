"""Orbax checkpoints in WORKDIR/checkpoints: the full TrainState plus the config that made it.

Resume is the normal path: `restore` continues from the latest checkpoint if there is
one, after checking that it was made with the same architecture.
"""

import dataclasses
import pathlib

import jax
import ml_collections
import orbax.checkpoint as ocp

# Config keys that change the networks (parameter shapes or the function they compute). Other
# keys (learning rate, loss weights, data, logging, model.compute_dtype, model.upsample_impl,
# model.matmul_max_pixels, model.conv_impl, model.winograd_min_channels, model.batch_norm_stats,
# the value of a nonzero model.ema_decay) may change between runs of the same checkpoint.
GENERATOR_KEYS = (
    'data.image_size', 'data.input_channels', 'data.output_channels', 'model.generator',
    'model.ngf', 'model.norm', 'model.bottleneck_norm', 'model.leaky_relu_slope',
    'model.dropout_rate', 'model.num_dropout_layers', 'model.dropout_skip_innermost')
ARCHITECTURE_KEYS = GENERATOR_KEYS + (
    'model.ndf', 'model.patch_size', 'model.num_discriminators', 'model.d_spectral_norm',
    'model.ema_decay', 'loss.gan_mode')
# Keys added after checkpoints were first written: the value every older checkpoint has.
_ADDED_KEYS = {'model.generator': 'unet', 'model.num_discriminators': 1,
               'model.d_spectral_norm': False, 'model.ema_decay': 0.0}


class CheckpointMismatchError(ValueError):
  """A checkpoint does not fit the current config."""


class CheckpointSaveError(OSError):
  """Writing a checkpoint failed (full disk, lost permissions, ...); older ones are intact."""


def create_checkpoint_manager(checkpoint_dir: pathlib.Path, max_to_keep: int) -> ocp.CheckpointManager:
  """A manager saving asynchronously and keeping the newest `max_to_keep` checkpoints.

  Orbax writes each checkpoint into a temporary folder and renames it when complete, so a run
  killed mid-save leaves only that temporary folder, which `latest_step` never returns and which
  is deleted when the next manager starts.
  """
  options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, enable_async_checkpointing=True,
                                         create=True, cleanup_tmp_directories=True)
  return ocp.CheckpointManager(checkpoint_dir.absolute(), options=options,
                               item_names=('state', 'config'))


def _save_failed(manager: ocp.CheckpointManager, error: Exception) -> CheckpointSaveError:
  return CheckpointSaveError(
      f'writing a checkpoint in {manager.directory} failed ({type(error).__name__}: {error}). '
      f'The complete checkpoints are intact (steps {list(manager.all_steps())}); unfinished '
      'writes are ignored. Free disk space or fix the folder, then run again to resume.')


def save(manager: ocp.CheckpointManager, step: int, state, config: ml_collections.ConfigDict) -> None:
  """Starts an asynchronous save of `state` (and `config`) as checkpoint `step`.

  Raises:
    CheckpointSaveError: this save, or the previous asynchronous one, failed.
  """
  try:
    manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                               config=ocp.args.JsonSave(config.to_dict())))
  except Exception as error:  # pylint: disable=broad-except
    raise _save_failed(manager, error) from error


def wait(manager: ocp.CheckpointManager) -> None:
  """Waits for the pending asynchronous save; raises CheckpointSaveError if it failed."""
  try:
    manager.wait_until_finished()
  except Exception as error:  # pylint: disable=broad-except
    raise _save_failed(manager, error) from error


def _lookup(tree: dict, dotted: str):
  for part in dotted.split('.'):
    if not isinstance(tree, dict) or part not in tree:
      return _ADDED_KEYS.get(dotted, '<missing>')
    tree = tree[part]
  return tree


def _architecture_value(config: dict, key: str):
  """`key`'s value in a config dict as the architecture sees it: derived keys resolved."""
  if key in ('data.input_channels', 'data.output_channels'):
    value = _lookup(config, key)  # None (or absent, before these keys existed): data.channels.
    return _lookup(config, 'data.channels') if value in (None, '<missing>') else value
  if key == 'model.ema_decay':  # Whether the state holds an EMA of G (not its decay).
    return 'on' if _lookup(config, 'model.ema_decay') else 'off'
  return _lookup(config, key)


def check_architecture(saved_config: dict, config: ml_collections.ConfigDict, where: str,
                       keys: tuple[str, ...] = ARCHITECTURE_KEYS) -> None:
  """Raises CheckpointMismatchError naming every architecture key that differs.

  Args:
    saved_config: the config stored with the checkpoint.
    config: the current config.
    where: the checkpoint's path, for the message.
    keys: the keys to compare (GENERATOR_KEYS when only the generator is restored).
  """
  current = config.to_dict()
  values = [(key, _architecture_value(saved_config, key), _architecture_value(current, key))
            for key in keys]
  diffs = [f'  {key}: checkpoint {saved!r}, config {now!r}' for key, saved, now in values
           if saved != now]
  if diffs:
    raise CheckpointMismatchError(
        f'checkpoint {where} was made with a different architecture:\n' + '\n'.join(diffs) +
        '\nUse another --workdir, or override these keys to match the checkpoint.')


def _checked_step(manager: ocp.CheckpointManager, config: ml_collections.ConfigDict,
                  step: int | None, keys: tuple[str, ...]) -> tuple[int | None, str, dict]:
  """(step to restore (None: no checkpoint), its path, its config) after checking `keys`."""
  step = manager.latest_step() if step is None else step
  if step is None:
    return None, '', {}
  where = str(manager.directory / str(step))
  if step not in manager.all_steps():
    raise FileNotFoundError(f'no checkpoint {where}; available steps: {list(manager.all_steps())}')
  saved_config = manager.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))['config']
  check_architecture(saved_config, config, where, keys)
  return step, where, saved_config


def _fields_in_checkpoint(target, manager: ocp.CheckpointManager, step: int) -> dict:
  """The TrainState fields of `target` that checkpoint `step` holds, by name.

  Orbax stores an empty field (`ema` with the EMA off) as an entry of its own, and a checkpoint
  made before the field existed has no such entry; its target must not have it either. A field
  with leaves is always kept: if it is missing, the restore names it.
  """
  saved = ocp.StandardCheckpointHandler().metadata(manager.directory / str(step) / 'state').tree
  return {field.name: getattr(target, field.name) for field in dataclasses.fields(target)
          if field.name in saved or jax.tree.leaves(getattr(target, field.name))}


def restore(manager: ocp.CheckpointManager, target, config: ml_collections.ConfigDict,
            step: int | None = None):
  """Restores the full TrainState of checkpoint `step` (default: the latest).

  Args:
    manager: the workdir's checkpoint manager.
    target: the TrainState's structure: arrays or jax.ShapeDtypeStructs with shardings.
    config: the current config, checked against the checkpoint's.
    step: a specific checkpoint step, or None for the latest.

  Returns:
    (state, step), or (None, 0) when there is no checkpoint and `step` is None.
  """
  step, where, _ = _checked_step(manager, config, step, ARCHITECTURE_KEYS)
  if step is None:
    return None, 0
  fields = ocp.args.StandardRestore(_fields_in_checkpoint(target, manager, step))
  try:
    restored = manager.restore(step, args=ocp.args.Composite(state=fields))
  except ValueError as error:
    raise CheckpointMismatchError(
        f'checkpoint {where} cannot be restored into this model on these devices: {error}') from error
  return target.replace(**restored['state']), step


def generator_weights(config: ml_collections.ConfigDict) -> str:
  """The generator that evaluation, prediction and export use: 'ema' (its EMA) or 'raw'."""
  return 'ema' if config.model.ema_decay > 0 and config.eval.use_ema else 'raw'


def restore_generator(manager: ocp.CheckpointManager, target: dict,
                      config: ml_collections.ConfigDict, step: int | None = None):
  """Reads only the generator's params and batch_stats (no discriminator, no optimizer state).

  The weights are `generator_weights(config)`'s: the state's 'ema' subtree or its 'generator'.

  Args:
    manager: the workdir's checkpoint manager.
    target: {'params': ..., 'batch_stats': ...} of ShapeDtypeStructs with shardings.
    config: the current config; only the generator's keys must match the checkpoint's.
    step: a specific checkpoint step, or None for the latest.

  Returns:
    ({'params', 'batch_stats'}, step).

  Raises:
    FileNotFoundError: there is no checkpoint (or none at `step`).
    CheckpointMismatchError: the generator differs, or the config asks for the EMA of a
      checkpoint trained without one.
  """
  step, where, saved_config = _checked_step(manager, config, step, GENERATOR_KEYS)
  if step is None:
    raise FileNotFoundError(f'no checkpoint in {manager.directory}: train first (--mode=train)')
  subtree = 'ema' if generator_weights(config) == 'ema' else 'generator'
  if subtree == 'ema' and _architecture_value(saved_config, 'model.ema_decay') == 'off':
    raise CheckpointMismatchError(
        f'checkpoint {where} was trained without an EMA of the generator (model.ema_decay=0), '
        f'but the config asks for its EMA weights (model.ema_decay={config.model.ema_decay}, '
        'eval.use_ema=True). Set eval.use_ema=False or model.ema_decay=0 to use its raw generator.')
  target = {subtree: target}
  # Explicit restore args carry the target's shardings, so a checkpoint written on other devices
  # (8 GPUs, say) restores onto these.
  args = ocp.args.PyTreeRestore(item=target, partial_restore=True,
                                restore_args=ocp.checkpoint_utils.construct_restore_args(target))
  try:
    restored = manager.restore(step, args=ocp.args.Composite(state=args))
  except ValueError as error:
    raise CheckpointMismatchError(f'checkpoint {where}: cannot restore the generator: {error}') from error
  return restored['state'][subtree], step
