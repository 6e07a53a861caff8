"""Orbax checkpoints in WORKDIR/checkpoints: the full TrainState plus the config that made it.

Resume is the normal path: `restore` continues from the latest checkpoint if there is
one, after checking that it was made with the same architecture.
"""

import pathlib

import ml_collections
import orbax.checkpoint as ocp

# Config keys that change the networks (parameter shapes or the function they compute). Other
# keys (learning rate, data, logging, model.compute_dtype, model.upsample_impl) may change between
# runs of the same checkpoint.
ARCHITECTURE_KEYS = (
    'data.image_size', 'data.channels', 'model.ngf', 'model.ndf', 'model.patch_size',
    'model.norm', 'model.bottleneck_norm', 'model.leaky_relu_slope', 'model.dropout_rate',
    'model.num_dropout_layers', 'model.dropout_skip_innermost', 'loss.gan_mode')


class CheckpointMismatchError(ValueError):
  """A checkpoint does not fit the current config."""


def create_checkpoint_manager(checkpoint_dir: pathlib.Path, max_to_keep: int) -> ocp.CheckpointManager:
  """A manager saving asynchronously and keeping the newest `max_to_keep` checkpoints."""
  options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, enable_async_checkpointing=True,
                                         create=True)
  return ocp.CheckpointManager(checkpoint_dir.absolute(), options=options,
                               item_names=('state', 'config'))


def save(manager: ocp.CheckpointManager, step: int, state, config: ml_collections.ConfigDict) -> None:
  """Starts an asynchronous save of `state` (and `config`) as checkpoint `step`."""
  manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                             config=ocp.args.JsonSave(config.to_dict())))


def _lookup(tree: dict, dotted: str):
  for part in dotted.split('.'):
    if not isinstance(tree, dict) or part not in tree:
      return '<missing>'
    tree = tree[part]
  return tree


def check_architecture(saved_config: dict, config: ml_collections.ConfigDict, where: str) -> None:
  """Raises CheckpointMismatchError naming every architecture key that differs.

  Args:
    saved_config: the config stored with the checkpoint.
    config: the current config.
    where: the checkpoint's path, for the message.
  """
  current = config.to_dict()
  diffs = [f'  {key}: checkpoint {_lookup(saved_config, key)!r}, config {_lookup(current, key)!r}'
           for key in ARCHITECTURE_KEYS if _lookup(saved_config, key) != _lookup(current, key)]
  if diffs:
    raise CheckpointMismatchError(
        f'checkpoint {where} was made with a different architecture:\n' + '\n'.join(diffs) +
        '\nUse another --workdir, or override these keys to match the checkpoint.')


def restore(manager: ocp.CheckpointManager, target, config: ml_collections.ConfigDict,
            step: int | None = None):
  """Restores checkpoint `step` (default: the latest), after checking its architecture.

  Args:
    manager: the workdir's checkpoint manager.
    target: the TrainState's structure: arrays or jax.ShapeDtypeStructs with shardings.
    config: the current config, checked against the checkpoint's.
    step: a specific checkpoint step, or None for the latest.

  Returns:
    (state, step), or (None, 0) when there is no checkpoint and `step` is None.
  """
  step = manager.latest_step() if step is None else step
  if step is None:
    return None, 0
  where = str(manager.directory / str(step))
  if step not in manager.all_steps():
    raise FileNotFoundError(f'no checkpoint {where}; available steps: {list(manager.all_steps())}')
  saved_config = manager.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))['config']
  check_architecture(saved_config, config, where)
  try:
    restored = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(target)))
  except ValueError as error:
    raise CheckpointMismatchError(f'checkpoint {where} cannot be restored into this model on these devices: {error}') from error
  return restored['state'], step
