"""Orbax checkpoints in WORKDIR/checkpoints: the full TrainState plus the config that made it.

Resume is the normal path: `restore` continues from the latest checkpoint if there is
one, after checking that it was made with the same architecture.

WORKDIR/checkpoints_best holds one more: the checkpoint of the best eval so far by
`config.eval.best_metric` (`BestCheckpoint`), outside the rotation of WORKDIR/checkpoints, with
its record {'metric', 'value', 'step', 'num_images'} saved in it and mirrored in
checkpoints_best/best.json.
"""

import dataclasses
import json
import logging
import os
import pathlib

import jax
from jax.experimental import multihost_utils
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from pix2pix_jax import metrics

# Config keys that change the networks (parameter shapes or the function they compute). Other
# keys (learning rate, loss weights, data, logging, model.compute_dtype, model.upsample_impl,
# model.matmul_max_pixels, model.conv_impl, model.winograd_min_channels, model.batch_norm_stats,
# the value of a nonzero model.ema_decay) may change between runs of the same checkpoint.
GENERATOR_KEYS = (
    'data.image_size',
    'data.input_channels',
    'data.output_channels',
    'model.generator',
    'model.ngf',
    'model.norm',
    'model.bottleneck_norm',
    'model.leaky_relu_slope',
    'model.dropout_rate',
    'model.num_dropout_layers',
    'model.dropout_skip_innermost',
)
ARCHITECTURE_KEYS = GENERATOR_KEYS + (
    'model.ndf',
    'model.patch_size',
    'model.num_discriminators',
    'model.d_spectral_norm',
    'model.ema_decay',
    'loss.gan_mode',
)
# Keys added after checkpoints were first written: the value every older checkpoint has.
_ADDED_KEYS = {
    'model.generator': 'unet',
    'model.num_discriminators': 1,
    'model.d_spectral_norm': False,
    'model.ema_decay': 0.0,
}


CHECKPOINT_DIR = 'checkpoints'  # WORKDIR/checkpoints: the latest `config.keep_checkpoints`.
BEST_DIR = 'checkpoints_best'  # WORKDIR/checkpoints_best: the best one, never rotated out.
BEST_FILE = 'best.json'  # In BEST_DIR: its record, for people and tools.
BEST_STEP = 'best'  # --step=best.
# WORKDIR/imported.json: what --mode=import read (files, SHA-256, architectures, the counters).
IMPORT_RECORD = 'imported.json'


class CheckpointMismatchError(ValueError):
  """A checkpoint does not fit the current config."""


class CheckpointSaveError(OSError):
  """Writing a checkpoint failed (full disk, lost permissions, ...); older ones are intact."""


def create_checkpoint_manager(
    checkpoint_dir: pathlib.Path,
    max_to_keep: int,
    *,
    item_names: tuple[str, ...] = ('state', 'config'),
) -> ocp.CheckpointManager:
  """A manager saving asynchronously and keeping the newest `max_to_keep` checkpoints.

  Orbax writes each checkpoint into a temporary folder and renames it when complete, so a run
  killed mid-save leaves only that temporary folder, which `latest_step` never returns and which
  is deleted when the next manager starts.
  """
  options = ocp.CheckpointManagerOptions(
      max_to_keep=max_to_keep,
      enable_async_checkpointing=True,
      create=True,
      cleanup_tmp_directories=True,
  )
  return ocp.CheckpointManager(checkpoint_dir.absolute(), options=options, item_names=item_names)


def open_checkpoints(checkpoint_dir: pathlib.Path) -> ocp.CheckpointManager:
  """A manager that only reads `checkpoint_dir` (evaluate, predict, export).

  It creates, rotates and cleans up nothing, so it can read the workdir of a run still training:
  that run's unfinished write (a temporary folder) is left alone.
  """
  options = ocp.CheckpointManagerOptions(
      max_to_keep=None,
      enable_async_checkpointing=False,
      create=False,
      cleanup_tmp_directories=False,
  )
  return ocp.CheckpointManager(checkpoint_dir.absolute(), options=options)


def _save_failed(manager: ocp.CheckpointManager, error: Exception) -> CheckpointSaveError:
  return CheckpointSaveError(
      f'writing a checkpoint in {manager.directory} failed ({type(error).__name__}: {error}). '
      f'The complete checkpoints are intact (steps {list(manager.all_steps())}); unfinished '
      'writes are ignored. Free disk space or fix the folder, then run again to resume.'
  )


def save(
    manager: ocp.CheckpointManager, step: int, state, config: ml_collections.ConfigDict
) -> None:
  """Starts an asynchronous save of `state` (and `config`) as checkpoint `step`.

  Raises:
    CheckpointSaveError: this save, or the previous asynchronous one, failed.
  """
  try:
    manager.save(
        step,
        args=ocp.args.Composite(
            state=ocp.args.StandardSave(state), config=ocp.args.JsonSave(config.to_dict())
        ),
    )
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


def check_architecture(
    saved_config: dict,
    config: ml_collections.ConfigDict,
    where: str,
    keys: tuple[str, ...] = ARCHITECTURE_KEYS,
) -> None:
  """Raises CheckpointMismatchError naming every architecture key that differs.

  Args:
    saved_config: the config stored with the checkpoint.
    config: the current config.
    where: the checkpoint's path, for the message.
    keys: the keys to compare (GENERATOR_KEYS when only the generator is restored).
  """
  current = config.to_dict()
  values = [
      (key, _architecture_value(saved_config, key), _architecture_value(current, key))
      for key in keys
  ]
  diffs = [
      f'  {key}: checkpoint {saved!r}, config {now!r}' for key, saved, now in values if saved != now
  ]
  if diffs:
    raise CheckpointMismatchError(
        f'checkpoint {where} was made with a different architecture:\n'
        + '\n'.join(diffs)
        + '\nUse another --workdir, or override these keys to match the checkpoint.'
    )


def _checked_step(
    manager: ocp.CheckpointManager,
    config: ml_collections.ConfigDict,
    step: int | None,
    keys: tuple[str, ...],
) -> tuple[int | None, str, dict]:
  """(step to restore (None: no checkpoint), its path, its config) after checking `keys`."""
  step = manager.latest_step() if step is None else step
  if step is None:
    return None, '', {}
  where = str(manager.directory / str(step))
  if step not in manager.all_steps():
    raise FileNotFoundError(f'no checkpoint {where}; available steps: {list(manager.all_steps())}')
  saved_config = manager.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))[
      'config'
  ]
  check_architecture(saved_config, config, where, keys)
  return step, where, saved_config


def _fields_in_checkpoint(target, manager: ocp.CheckpointManager, step: int) -> dict:
  """The TrainState fields of `target` that checkpoint `step` holds, by name.

  Orbax stores an empty field (`ema` with the EMA off) as an entry of its own, and a checkpoint
  made before the field existed has no such entry; its target must not have it either. A field
  with leaves is always kept: if it is missing, the restore names it.
  """
  saved = ocp.StandardCheckpointHandler().metadata(manager.directory / str(step) / 'state').tree
  return {
      field.name: getattr(target, field.name)
      for field in dataclasses.fields(target)
      if field.name in saved or jax.tree.leaves(getattr(target, field.name))
  }


def restore(
    manager: ocp.CheckpointManager,
    target,
    config: ml_collections.ConfigDict,
    step: int | None = None,
):
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
        f'checkpoint {where} cannot be restored into this model on these devices: {error}'
    ) from error
  return target.replace(**restored['state']), step


def generator_weights(config: ml_collections.ConfigDict) -> str:
  """The generator that evaluation, prediction and export use: 'ema' (its EMA) or 'raw'."""
  return 'ema' if config.model.ema_decay > 0 and config.eval.use_ema else 'raw'


def restore_generator(
    manager: ocp.CheckpointManager,
    target: dict,
    config: ml_collections.ConfigDict,
    step: int | None = None,
):
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
        'eval.use_ema=True). Set eval.use_ema=False or model.ema_decay=0 to use its raw generator.'
    )
  return _restore_subtree(manager, step, where, subtree, target, 'the generator'), step


def _restore_subtree(
    manager: ocp.CheckpointManager, step: int, where: str, subtree: str, target, what: str
):
  """The TrainState field `subtree` of checkpoint `step` alone, onto `target`'s structure."""
  target = {subtree: target}
  # Explicit restore args carry the target's shardings, so a checkpoint written on other devices
  # (8 GPUs, say) restores onto these.
  args = ocp.args.PyTreeRestore(
      item=target,
      partial_restore=True,
      restore_args=ocp.checkpoint_utils.construct_restore_args(target),
  )
  try:
    restored = manager.restore(step, args=ocp.args.Composite(state=args))
  except ValueError as error:
    raise CheckpointMismatchError(f'checkpoint {where}: cannot restore {what}: {error}') from error
  return restored['state'][subtree]


def restore_discriminator(
    manager: ocp.CheckpointManager,
    target: dict,
    config: ml_collections.ConfigDict,
    step: int,
) -> dict:
  """Reads only the discriminator's params and batch_stats of checkpoint `step` (export).

  Args:
    manager: the workdir's checkpoint manager.
    target: {'params': ..., 'batch_stats': ...} of ShapeDtypeStructs with shardings.
    config: the current config; every architecture key must match the checkpoint's.
    step: the checkpoint step.

  Returns:
    {'params', 'batch_stats'}.
  """
  step, where, _ = _checked_step(manager, config, step, ARCHITECTURE_KEYS)
  return _restore_subtree(manager, step, where, 'discriminator', target, 'the discriminator')


def best_metric(config: ml_collections.ConfigDict) -> str | None:
  """`config.eval.best_metric`, or None when off (None, or 'none' from the command line)."""
  metric = config.eval.best_metric
  return None if metric is None or metric.lower() in ('', 'none') else metric


def read_best(workdir: pathlib.Path) -> dict | None:
  """The record {'metric', 'value', 'step', 'num_images'} of WORKDIR/checkpoints_best, or None.

  Read from the checkpoint itself (saved with it, in one atomic write), not from best.json.
  """
  directory = pathlib.Path(workdir) / BEST_DIR
  if not directory.is_dir():
    return None
  manager = open_checkpoints(directory)
  step = manager.latest_step()
  if step is None:
    return None
  return dict(manager.restore(step, args=ocp.args.Composite(best=ocp.args.JsonRestore()))['best'])


def describe_best(record: dict) -> str:
  """'step 1500, the best by fid (83.2)', for logs and errors."""
  return f"step {record['step']}, the best by {record['metric']} ({record['value']:.6g})"


def _write_best_file(directory: pathlib.Path, record: dict) -> None:
  """best.json, replaced in one rename: a reader never sees it half-written (process 0 only)."""
  if jax.process_index() != 0:
    return
  temporary = directory / f'{BEST_FILE}.tmp'
  temporary.write_text(json.dumps(record, indent=2) + '\n')
  os.replace(temporary, directory / BEST_FILE)


class BestCheckpoint:
  """The checkpoint of the best eval so far by one metric, in WORKDIR/checkpoints_best.

  A manager of its own keeps one checkpoint (the full TrainState and config, like those of
  WORKDIR/checkpoints, so it also resumes or fine-tunes), which the rotation of
  WORKDIR/checkpoints never deletes. Its record {'metric', 'value', 'step', 'num_images'} is
  saved in it, so it cannot disagree with the weights, and mirrored in best.json once the save is
  complete.
  A resumed run reads the record and keeps comparing against it; evals up to the record's step
  (replayed after a resume from an earlier checkpoint) are not compared: that step's weights are
  already the ones kept.

  Args:
    workdir: the training workdir.
    metric: a `metrics.METRICS` name.
    num_images: the eval images each value is computed on (FID and KID depend on it).

  Raises:
    ValueError: WORKDIR/checkpoints_best keeps the best by another metric, or on another number
      of images (comparing the two would mix them); the message says how to keep it or start
      afresh.
  """

  def __init__(self, workdir: pathlib.Path, metric: str, num_images: int):
    self.metric, self.num_images = metric, num_images
    self.directory = pathlib.Path(workdir) / BEST_DIR
    self.record = read_best(workdir)
    self._check_comparable()
    # Made at the first save if the folder is new; an existing one's manager starts now and
    # deletes what a kill mid-save left.
    self._manager = self._create_manager() if self.directory.exists() else None
    if self.record is not None:
      _write_best_file(self.directory, self.record)  # In case a kill came between save and file.
      logging.info(
          'Best checkpoint so far: %s, in %s',
          describe_best(self.record),
          self.directory / str(self.record['step']),
      )

  def _check_comparable(self) -> None:
    if self.record is None:
      return
    saved = self.record['metric'], self.record.get('num_images', self.num_images)
    if saved == (self.metric, self.num_images):
      return
    move = f'mv {self.directory} {self.directory}_{saved[0]}_{saved[1]}'
    if saved[0] != self.metric:
      raise ValueError(
          f'{self.directory} holds {describe_best(self.record)}, but config.eval.best_metric='
          f'{self.metric!r}: comparing them would mix two metrics. Keep --config.eval.best_metric='
          f'{saved[0]}, or move that folder away to keep the best by {self.metric} from now on: '
          f'{move}'
      )
    raise ValueError(
        f'{self.directory} holds {describe_best(self.record)} on {saved[1]} eval images, but this '
        f'run scores {self.num_images} (config.eval.num_examples, the eval split): {self.metric} '
        'values on other numbers of images do not compare. Keep the number, or move that folder '
        f'away to start a new best: {move}'
    )

  def _create_manager(self) -> ocp.CheckpointManager:
    return create_checkpoint_manager(self.directory, 1, item_names=('state', 'config', 'best'))

  def update(self, step: int, value: float, state, config: ml_collections.ConfigDict) -> bool:
    """Saves `state` as the new best if `value` beats the record (`metrics.improves`).

    Every process calls it; process 0's comparison decides for all. The save is complete
    (and best.json written) when it returns.

    Returns:
      Whether `state` is the new best.
    """
    if self.record is not None and step <= self.record['step']:
      return False
    best = None if self.record is None else self.record['value']
    improved = metrics.improves(self.metric, value, best)
    if jax.process_count() > 1:  # Round-off may differ between hosts; the decision may not.
      improved = bool(multihost_utils.broadcast_one_to_all(np.int32(improved)))
    if not improved:
      return False
    record = {
        'metric': self.metric,
        'value': float(value),
        'step': int(step),
        'num_images': int(self.num_images),
    }
    self._manager = self._manager or self._create_manager()
    try:
      # Waited for: best.json names a step only once its checkpoint is complete.
      self._manager.save(
          step,
          args=ocp.args.Composite(
              state=ocp.args.StandardSave(state),
              config=ocp.args.JsonSave(config.to_dict()),
              best=ocp.args.JsonSave(record),
          ),
      )
      self._manager.wait_until_finished()
    except Exception as error:  # pylint: disable=broad-except
      raise _save_failed(self._manager, error) from error
    _write_best_file(self.directory, record)
    self.record = record
    return True

  def close(self) -> None:
    if self._manager is not None:
      self._manager.close()


def describe_import(workdir) -> str | None:
  """One line on the import WORKDIR/imported.json records, for training's log; None if none."""
  path = pathlib.Path(workdir) / IMPORT_RECORD
  if not path.is_file():
    return None
  record = json.loads(path.read_text())
  d = record.get('discriminator')
  return (
      f"weights imported from the PyTorch reference: G from {record['generator']['file']}"
      + (f", D from {d['file']}" if d else ', D freshly initialised (no --input_d)')
      + ' with their BatchNorm running statistics; fresh Adam states (the reference saves none)'
  )
