"""pix2pix_jax entry point: flags in, one driver per mode.

  python main.py --config=configs/maps.py --workdir=/tmp/run                      # train / resume
  python main.py --config=configs/maps.py --workdir=/tmp/run --mode=evaluate      # metrics + report
  python main.py --config=configs/maps.py --workdir=/tmp/run --mode=evaluate --step=best  # by FID
  python main.py --config=configs/maps.py --workdir=/tmp/run --mode=predict --input=DIR \
      --output=OUT [--resolution=native]   # native: at each image's own size
  python main.py --config=configs/maps.py --workdir=/tmp/run --mode=score --input=GENERATED_DIR \
      [--targets=DIR]                  # metrics of images generated elsewhere, as evaluate's
  python main.py --config=configs/maps.py --workdir=/tmp/run --mode=export
  python main.py --config=configs/maps.py --workdir=/tmp/run --mode=export \
      --config.export.format=pytorch   # latest_net_G.pth / _D.pth for the PyTorch reference
  python main.py --config=configs/maps.py --workdir=/tmp/ref --mode=import \
      --input=latest_net_G.pth [--input_d=latest_net_D.pth]   # the PyTorch reference's weights
  python main.py --config=configs/maps.py --workdir=/tmp/ablation --mode=ablation # patch sizes
  python main.py --config=configs/maps.py --workdir=/tmp/sweep --mode=sweep \
      --sweep=model.patch_size=16,70,286 --sweep=batch_size=1,4,10 [--zip]  # any keys' grid
  python main.py --config=configs/maps.py --workdir=/tmp/run --mode=serve [--port=7860]  # browser
      # demo (the `demo` extra) on localhost; --workdir=/tmp/run/export serves an export

Several processes (hosts, or processes on one machine) run the same command with the same
workdir (every mode but score, which reads files in one process); each adds where to meet:

  python main.py ... --coordinator_address=HOST0:1234 --num_processes=2 --process_id=0  # on HOST0
  python main.py ... --coordinator_address=HOST0:1234 --num_processes=2 --process_id=1  # elsewhere
  srun python main.py ... --distributed     # SLURM, Open MPI, Cloud TPU pods: JAX detects them
"""

import logging as std_logging
import os
import sys

from absl import app
from absl import flags
from absl import logging
import jax
from ml_collections import config_flags

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file(
    'config', None, 'Config file (e.g. configs/maps.py).', lock_config=True
)
flags.DEFINE_string('workdir', None, 'Directory for checkpoints, logs and outputs.')
flags.DEFINE_enum(
    'mode',
    'train',
    ['train', 'evaluate', 'score', 'predict', 'export', 'ablation', 'sweep', 'import', 'serve'],
    'train (resumes if WORKDIR has a checkpoint), evaluate (metrics over the eval '
    'split + WORKDIR/report), score (the same metrics and report for images '
    'generated elsewhere: --input, against --targets), predict (translate --input), '
    'export (the generator for serving, or for the PyTorch reference), ablation (train + '
    'evaluate each of --patch_sizes), sweep (train + evaluate each run of the --sweep grid), '
    "import (the PyTorch reference's latest_net_G.pth, --input, and latest_net_D.pth, "
    '--input_d, as checkpoint 0 of WORKDIR), serve (a browser demo of the generator, or of the '
    'export WORKDIR is).',
)
flags.DEFINE_string(
    'step',
    None,
    'evaluate/predict/export/serve: a checkpoint step of '
    "WORKDIR/checkpoints, or 'best': the best by config.eval.best_metric, which "
    'training keeps in WORKDIR/checkpoints_best (default: the latest checkpoint).',
)
flags.DEFINE_string(
    'input',
    None,
    'predict: an image file or a folder of images. serve: a folder of example inputs (default: '
    "the first of the eval split). import: the PyTorch reference's generator file "
    '(latest_net_G.pth). score: the '
    "generated images (N.png or the PyTorch reference's N_fake_B.png matches "
    'target N.*; N_real_A/N_real_B files are ignored); those not '
    'image_size×image_size are resized to it (bicubic), with a warning.',
)
flags.DEFINE_string(
    'targets',
    None,
    'score: a folder of targets, default the eval split of the '
    'config. Read as side-by-side A|B pairs (target half by '
    'config.data.direction) if every image is exactly 2:1, else as plain target '
    "images; resized to image_size×image_size (bicubic) like evaluate's.",
)
flags.DEFINE_string(
    'input_d',
    None,
    "import: the PyTorch reference's discriminator file (latest_net_D.pth); without it the "
    'checkpoint gets a freshly initialised discriminator.',
)
flags.DEFINE_string('output', None, 'predict: output folder; export: default WORKDIR/export.')
flags.DEFINE_bool(
    'pairs',
    False,
    'predict: inputs are side-by-side A|B pairs; the input half follows config.data.direction.',
)
flags.DEFINE_bool('side_by_side', False, 'predict: write [input | output] images.')
flags.DEFINE_enum(
    'resolution',
    'model',
    ['model', 'native'],
    'predict: model (each image resized '
    'to image_size×image_size and the output back to its size) or native (the '
    "generator at the image's own size, reflect-padded to a multiple of image_size; "
    'over 1024×1024 pixels in blended overlapping tiles).',
)
flags.DEFINE_string(
    'host',
    '127.0.0.1',
    'serve: the address to bind. The default serves this machine only; 0.0.0.0 exposes the demo '
    'to the network (it has no authentication).',
)
flags.DEFINE_integer('port', 7860, 'serve: the port.', lower_bound=0, upper_bound=65535)
flags.DEFINE_list('patch_sizes', ['1', '16', '70', '286'], 'ablation: PatchGAN sizes to compare.')
flags.DEFINE_multi_string(
    'sweep',
    [],
    'sweep: KEY=VALUE,VALUE,... (a config key, values typed like it); repeat for a grid. '
    'Default: config.sweep.axes.',
)
flags.DEFINE_bool('zip', False, 'sweep: pair the --sweep lists (of one length) instead of a grid.')
flags.DEFINE_bool(
    'distributed',
    False,
    'Join a multi-process run: jax.distributed.initialize() before anything else. '
    'On SLURM, Open MPI and Cloud TPU pods it finds the other processes itself; '
    'elsewhere give --coordinator_address, --num_processes and --process_id (or '
    'JAX_COORDINATOR_ADDRESS). Implied by any of those three flags.',
)
flags.DEFINE_string(
    'coordinator_address',
    None,
    'HOST:PORT of process 0, where it serves the coordinator (implies --distributed).',
)
flags.DEFINE_integer(
    'num_processes', None, 'Number of processes (implies --distributed).', lower_bound=1
)
flags.DEFINE_integer(
    'process_id',
    None,
    'This process: 0 .. num_processes - 1 (implies --distributed).',
    lower_bound=0,
)
flags.mark_flags_as_required(['config', 'workdir'])

_DISTRIBUTED_ARGS = ('coordinator_address', 'num_processes', 'process_id')
_STEP_MODES = ('evaluate', 'predict', 'export', 'serve')
_BEST_STEP = 'best'  # checkpointing.BEST_STEP, spelt out: flag errors come before JAX's set-up.


def checkpoint_step(value: str | None) -> int | str | None:
  """--step as the drivers take it: None (the latest), a step, or 'best'."""
  if value is None or value == _BEST_STEP:
    return value
  try:
    step = int(value)
  except ValueError:
    step = -1
  if step < 0:
    raise app.UsageError(
        f'--step={value}: expected a checkpoint step (an integer >= 0) or ' f"'{_BEST_STEP}'"
    )
  return step


class _QuietLibraries:
  """Drops INFO lines from Orbax's internals (dozens per save); warnings and errors pass."""

  def filter(self, record) -> bool:
    return record.levelno >= std_logging.WARNING or '/orbax/' not in record.pathname


def initialize_distributed() -> None:
  """Joins the other processes if asked to; a single-process run touches nothing.

  Must run before anything asks JAX for its devices: the backends are created once, and only
  a backend created after `jax.distributed.initialize` sees the other processes' devices.
  """
  given = {name: FLAGS[name].value for name in _DISTRIBUTED_ARGS if FLAGS[name].value is not None}
  if not (FLAGS.distributed or given):
    return
  if 'JAX_CPU_COLLECTIVES_IMPLEMENTATION' not in os.environ:
    # CPU processes need a cross-process implementation of the step's all-reduces; gloo (TCP)
    # needs no MPI. jax 0.10 defaults to it, older versions to none; GPUs and TPUs ignore it.
    jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  # Arguments left out are auto-detected (SLURM, Open MPI, TPU pods) or, for the address, read
  # from JAX_COORDINATOR_ADDRESS.
  try:
    jax.distributed.initialize(**given)
  except ValueError as error:  # jax names its own argument; say which flags give it.
    raise ValueError(
        f'{error} Outside SLURM, Open MPI and Cloud TPU pods, give --coordinator_'
        'address=HOST:PORT, --num_processes and --process_id.'
    ) from error


def exit_after_failed_save(error: Exception) -> None:
  """Ends the process with the save error's message as its last line.

  Orbax's failed async writes leave coroutines and tasks that Python would report, hundreds of
  tracebacks long, while it shuts down ("Event loop is closed", "sys.meta_path is None"), burying
  the message. The training has already waited for its saves and closed its writers (its
  `finally`), so nothing is lost by leaving without that shutdown.
  """
  logging.error('%s: %s', type(error).__name__, error)
  logging.flush()
  sys.stdout.flush()
  sys.stderr.flush()
  os._exit(1)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  step = checkpoint_step(FLAGS.step)
  if step is not None and FLAGS.mode not in _STEP_MODES:
    raise app.UsageError(f'--step is for --mode={"/".join(_STEP_MODES)}, not --mode={FLAGS.mode}')
  if FLAGS.input_d and FLAGS.mode != 'import':
    raise app.UsageError(f'--input_d is for --mode=import, not --mode={FLAGS.mode}')
  if (FLAGS.sweep or FLAGS.zip) and FLAGS.mode != 'sweep':
    raise app.UsageError(f'--sweep and --zip are for --mode=sweep, not --mode={FLAGS.mode}')
  initialize_distributed()
  logging.get_absl_handler().python_handler.addFilter(_QuietLibraries())
  logging.info(
      'JAX %s, process %d/%d, devices: %s',
      jax.__version__,
      jax.process_index(),
      jax.process_count(),
      jax.devices(),
  )
  # Drivers are imported here so that `--help` and flag errors come before JAX's set-up.
  # pylint: disable-next=g-import-not-at-top
  from pix2pix_jax import checkpointing, config_checks, evaluation, export, predict, report
  from pix2pix_jax import scoring, sweep, torch_import, train  # pylint: disable=g-import-not-at-top

  config, workdir = FLAGS.config, FLAGS.workdir
  # The one check of the config, for every mode, before anything is read or written. A sweep's
  # (an ablation's) runs are all checked before the first trains.
  runs = [sweep.Run('', {}, config)]
  if FLAGS.mode == 'ablation':
    runs = sweep.plan_ablation(config, FLAGS.patch_sizes)
  elif FLAGS.mode == 'sweep':
    runs = sweep.plan(config, FLAGS.sweep, zip_axes=FLAGS.zip)
  for run in runs:
    try:
      config_checks.validate_config(
          run.config, jax.device_count(), training=FLAGS.mode in ('train', 'ablation', 'sweep')
      )
    except ValueError as error:
      if not run.name:
        raise
      raise ValueError(f'{FLAGS.mode} run {run.name}: {error}') from None
  if FLAGS.mode == 'train':
    try:
      train.train_and_evaluate(config, workdir)
    except checkpointing.CheckpointSaveError as error:
      exit_after_failed_save(error)
  elif FLAGS.mode == 'evaluate':
    evaluation.evaluate(config, workdir, step)
    logging.info('Report: %s', report.write_report(workdir))
  elif FLAGS.mode == 'score':
    if not FLAGS.input:
      raise app.UsageError('--mode=score needs --input=GENERATED_DIR (--targets=DIR is optional)')
    scoring.score(config, workdir, FLAGS.input, FLAGS.targets)
    logging.info('Report: %s', report.write_report(workdir))
  elif FLAGS.mode == 'predict':
    if not FLAGS.input or not FLAGS.output:
      raise app.UsageError('--mode=predict needs --input=FILE_OR_DIR and --output=DIR')
    predict.predict(
        config,
        workdir,
        FLAGS.input,
        FLAGS.output,
        step=step,
        pairs=FLAGS.pairs,
        side_by_side=FLAGS.side_by_side,
        resolution=FLAGS.resolution,
    )
  elif FLAGS.mode == 'export':
    export.export_generator(config, workdir, FLAGS.output, step)
  elif FLAGS.mode == 'import':
    if not FLAGS.input:
      raise app.UsageError(
          '--mode=import needs --input=latest_net_G.pth (--input_d=latest_net_D.pth is optional)'
      )
    torch_import.import_checkpoint(config, workdir, FLAGS.input, FLAGS.input_d)
  elif FLAGS.mode in ('ablation', 'sweep'):
    modes = sweep.Modes(train=train.train_and_evaluate, evaluate=evaluation.evaluate)
    try:
      if FLAGS.mode == 'ablation':
        sweep.run_patch_size_ablation(runs, workdir, modes)
      else:
        sweep.run_sweep(runs, workdir, modes)
    except checkpointing.CheckpointSaveError as error:
      exit_after_failed_save(error)
  elif FLAGS.mode == 'serve':
    from pix2pix_jax import demo_app  # pylint: disable=g-import-not-at-top

    demo_app.serve(
        config, workdir, step=step, examples_dir=FLAGS.input, host=FLAGS.host, port=FLAGS.port
    )


if __name__ == '__main__':
  app.run(main)
