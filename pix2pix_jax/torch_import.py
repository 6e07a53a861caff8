"""`--mode=import`: the PyTorch reference's saved generator (and discriminator) as checkpoint 0.

The imported checkpoint is step 0 of WORKDIR/checkpoints: the file's parameters and BatchNorm
running statistics, fresh Adam states (the reference saves none) and, without a discriminator
file, a freshly initialised D. Every mode reads it as a checkpoint of its own: evaluate, score,
predict, export, and train, which resumes from step 0 (fine-tuning) and logs that it does.
WORKDIR/imported.json records where it came from. The files are read and checked by
torch_weights.py (the key layout) before anything is written.
"""

import functools
import hashlib
import json
import logging
import pathlib

import jax

from pix2pix_jax import checkpointing, models, plumbing, torch_weights, train_state
from pix2pix_jax.data import pipeline


def _sha256(path: pathlib.Path) -> str:
  digest = hashlib.sha256()
  with open(path, 'rb') as f:
    for chunk in iter(lambda: f.read(1 << 20), b''):
      digest.update(chunk)
  return digest.hexdigest()


def _replace_checked(target, variables: dict, what: str):
  """`variables` (numpy) in place of `target`'s leaves, which must have the same tree and shapes."""
  ours = torch_weights.flatten_variables(target)
  theirs = torch_weights.flatten_variables(variables)
  if set(ours) != set(theirs) or any(ours[k].shape != theirs[k].shape for k in ours):
    differ = sorted(set(ours) ^ set(theirs)) or [
        k for k in ours if ours[k].shape != theirs[k].shape
    ]
    raise ValueError(f'the imported {what} does not fit the model: {differ[:4]}')  # A bug here.
  return jax.tree.map(lambda t, v: jax.numpy.asarray(v, t.dtype), target, _unflatten(theirs))


def _with_weights(
    network: train_state.NetworkState, variables: dict, name: str
) -> train_state.NetworkState:
  """`network` with a file's {'params', 'batch_stats'} (numpy) in place of its own."""
  return network.replace(
      params=_replace_checked(network.params, variables['params'], f'{name} parameters'),
      batch_stats=_replace_checked(
          network.batch_stats, variables['batch_stats'], f'{name} statistics'
      ),
  )


def _unflatten(flat: dict) -> dict:
  tree = {}
  for path, value in flat.items():
    torch_weights.nested_set(tree, path, value)
  return tree


def _new_run_init(config):
  """init_fn(rng) -> TrainState of a new run of `config`, as `train.create_train_functions`
  builds it: the checkpoint's structure, its fresh Adam states, and D without a D file."""
  input_channels, output_channels = pipeline.channels(config.data)
  optimizer = train_state.create_optimizer(
      config.optim, train_state.create_learning_rate_schedule(config.optim, 1, 1)
  )
  return functools.partial(
      train_state.create_train_state,
      generator=models.create_generator(config.model, config.data.image_size, output_channels),
      discriminator=models.create_discriminator(config.model),
      g_optimizer=optimizer,
      d_optimizer=optimizer,
      image_size=config.data.image_size,
      input_channels=input_channels,
      output_channels=output_channels,
      with_ema=config.model.ema_decay > 0,
  )


def import_checkpoint(config, workdir, generator_file, discriminator_file=None) -> pathlib.Path:
  """`--mode=import`: writes the reference's weights as checkpoint 0 of WORKDIR/checkpoints.

  Both files are read and checked before anything is written. The checkpoint is a full
  TrainState, as training's: the files' parameters and running statistics, fresh Adam states,
  step 0, the config's seed for the rng (and, without `discriminator_file`, for a new D); the
  EMA of G (model.ema_decay > 0) starts as the imported G. WORKDIR/imported.json records the
  files, their SHA-256, architectures and BatchNorm counters; config.json the config.

  Args:
    config: the run's config, which must describe the files' networks.
    workdir: a workdir without checkpoints.
    generator_file: the reference's latest_net_G.pth (or any NAME_net_G.pth).
    discriminator_file: its latest_net_D.pth, or None.

  Returns:
    The checkpoint's folder.

  Raises:
    torch_weights.ReferenceWeightsError: a file is wrong or does not fit the config.
    FileExistsError: the workdir already has checkpoints.
  """
  g_arch, g_variables, g_counters = torch_weights.read_file(generator_file, config, 'generator')
  d = None
  if discriminator_file is not None:
    d = torch_weights.read_file(discriminator_file, config, 'discriminator')
  workdir = pathlib.Path(workdir).expanduser()
  checkpoint_dir = workdir / checkpointing.CHECKPOINT_DIR
  if checkpoint_dir.is_dir() and checkpointing.open_checkpoints(checkpoint_dir).all_steps():
    steps = list(checkpointing.open_checkpoints(checkpoint_dir).all_steps())
    raise FileExistsError(
        f'{checkpoint_dir} already holds checkpoints (steps {steps}): import into a new --workdir'
    )
  plumbing.check_writable(workdir)
  with plumbing.WorkdirLock(workdir):
    # A new run's state, whose networks' weights and statistics the files replace. Its Adam
    # states stay: they are zeros, whatever the parameters.
    state = jax.jit(_new_run_init(config))(jax.random.PRNGKey(config.seed))
    generator = _with_weights(state.generator, g_variables, 'G')
    state = state.replace(generator=generator)
    if d is not None:
      state = state.replace(discriminator=_with_weights(state.discriminator, d[1], 'D'))
    if config.model.ema_decay > 0:
      state = state.replace(ema={'params': generator.params, 'batch_stats': generator.batch_stats})
    files = [(generator_file, g_arch, g_counters)] + (
        [(discriminator_file, d[0], d[2])] if d else []
    )
    record = {'step': 0}
    for role, (path, arch, counters) in zip(('generator', 'discriminator'), files):
      path = pathlib.Path(path).expanduser().absolute()
      record[role] = {
          'file': str(path),
          'sha256': _sha256(path),
          'architecture': arch.describe(),
          'reference_name': arch.reference_name,
          'num_batches_tracked': counters,
      }
    record.setdefault('discriminator', None)
    manager = checkpointing.create_checkpoint_manager(checkpoint_dir, config.keep_checkpoints)
    checkpointing.save(manager, 0, state, config)
    checkpointing.wait(manager)
    manager.close()
    if jax.process_index() == 0:
      (workdir / checkpointing.IMPORT_RECORD).write_text(json.dumps(record, indent=2) + '\n')
      (workdir / 'config.json').write_text(json.dumps(config.to_dict(), indent=2, sort_keys=True))
  _log_dropout_placement(g_arch, config)
  logging.info(
      'Imported %s (%s)%s into %s as step 0. Every mode reads it: evaluate, score, predict, '
      'export, and train, which fine-tunes it with fresh Adam states (the reference saves none)%s.',
      generator_file,
      g_arch.describe(),
      f' and {discriminator_file} ({d[0].describe()})' if d else '',
      checkpoint_dir / '0',
      '' if d else ' and a freshly initialised discriminator (no --input_d)',
  )
  return checkpoint_dir / '0'


def _log_dropout_placement(arch: torch_weights.Architecture, config) -> None:
  """The U-Net's dropout has no tensors: says where the reference had it and the config has it."""
  if arch.network != 'unet':
    return
  model = config.model
  reference = (True, arch.depth - 5, torch_weights.REFERENCE_DROPOUT_RATE)
  ours = (model.dropout_skip_innermost, model.num_dropout_layers, model.dropout_rate)
  if ours != reference:
    logging.warning(
        "The reference's %s has Dropout(0.5) on the %d levels next to the bottleneck "
        '(model.dropout_skip_innermost=True, model.num_dropout_layers=%d, or none if trained '
        'with --no_dropout); the config has dropout_skip_innermost=%s, num_dropout_layers=%d, '
        "dropout_rate=%s. The weights are the same; only the paper's test mode "
        '(eval.train_mode=True) and training, which apply dropout, differ.',
        arch.reference_name,
        reference[1],
        reference[1],
        *ours,
    )
