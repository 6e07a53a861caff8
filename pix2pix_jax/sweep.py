"""`--mode=sweep` and `--mode=ablation`: a grid of config overrides, each trained and scored.

  --sweep=model.patch_size=16,70,286 --sweep=batch_size=1,4,10   # the grid: 9 runs
  --sweep=... --sweep=... --zip                                  # the paired lists

Each value is parsed with the type of its config key (as `--config.KEY=VALUE` is) and every run's
config is checked (main.py) before the first run trains. Run R trains in WORKDIR/<R's name>/ (e.g.
`batch_size=4,patch_size=16`), resumable like any run, and is scored by `--mode=evaluate`'s scorer
on the whole eval split. `WORKDIR/<R>/sweep_run.json` records a scored run, so the same command
again skips the scored runs and resumes the others. The sweep writes WORKDIR/sweep.md,
WORKDIR/sweep.csv and a section with a chart in WORKDIR/report/index.html.

`--mode=ablation` is the paper's Table 3 (PatchGAN receptive field) as a preset: runs
WORKDIR/patch_<N>/, its table in WORKDIR/ablation.md and the report.
"""

import ast
import csv
import io
import itertools
import json
import logging
import math
import pathlib
import time
from typing import Any, Callable, NamedTuple

from absl import flags
import jax
import ml_collections
from ml_collections.config_flags import config_path

from pix2pix_jax import metrics, progress, report, train_state
from pix2pix_jax.data import pipeline

RUN_RECORD = 'sweep_run.json'
# Per-image metrics, shown as mean ± std; FID and KID are single values.
_PER_IMAGE = tuple(name for name in metrics.METRICS if name not in metrics.SET_METRICS)


def _literal(text: str) -> Any:
  """An untyped key's value ('auto' speed keys): a Python literal, else the string itself."""
  try:
    return ast.literal_eval({'true': 'True', 'false': 'False'}.get(text, text))
  except (SyntaxError, ValueError):
    return text


# How `--config.KEY=VALUE` parses a value of each type (ml_collections.config_flags).
_PARSERS = {
    int: flags.IntegerParser().parse,
    float: flags.FloatParser().parse,
    bool: flags.BooleanParser().parse,
    str: str,
    object: _literal,
}


class Axis(NamedTuple):
  key: str  # A config key, e.g. 'model.patch_size'.
  values: tuple  # Parsed with the key's type.


class Modes(NamedTuple):
  """How a sweep trains and scores a run. main.py passes `train.train_and_evaluate` and
  `evaluation.evaluate`, so a sweep sits beside those modes rather than above them."""

  train: Callable[[ml_collections.ConfigDict, str], Any]  # -> the final state (its .step).
  evaluate: Callable[[ml_collections.ConfigDict, str], dict]  # -> eval/metrics.json's contents.


class Run(NamedTuple):
  name: str  # Its folder under the sweep's workdir.
  overrides: dict  # key -> value.
  config: ml_collections.ConfigDict


def parse_axis(config: ml_collections.ConfigDict, spec: str, origin: str = '--sweep') -> Axis:
  """'model.patch_size=1,16,70' -> Axis('model.patch_size', (1, 16, 70)), typed like the key.

  Raises:
    ValueError: naming `origin` and the spec: no '=', an unknown key, a value of the wrong type.
  """
  key, separator, text = spec.partition('=')
  key = key.strip().removeprefix('config.')
  if not separator or not key or not text.strip():
    raise ValueError(
        f'{origin}={spec!r}: expected KEY=VALUE,VALUE,... (e.g. --sweep=model.patch_size=16,70)'
    )
  try:
    field_type = config_path.get_type(key, config)
  except (AttributeError, KeyError, IndexError, ValueError):
    raise ValueError(f'{origin}={spec!r}: the config has no key {key!r}') from None
  if isinstance(config_path.get_value(key, config), ml_collections.ConfigDict):
    raise ValueError(f'{origin}={spec!r}: config.{key} is a group of keys; sweep one of them')
  parse = _PARSERS.get(field_type)
  if parse is None:
    raise ValueError(
        f'{origin}={spec!r}: config.{key} is a {field_type.__name__}, which a sweep cannot vary'
    )
  values = []
  for item in text.split(','):
    try:
      values.append(parse(item.strip()))
    except ValueError:
      raise ValueError(
          f'{origin}={spec!r}: {item.strip()!r} is not a value of config.{key} '
          f'({field_type.__name__})'
      ) from None
  if len(set(map(repr, values))) != len(values):
    raise ValueError(f'{origin}={spec!r}: a value is given twice')
  return Axis(key, tuple(values))


def _short_names(keys: list[str]) -> dict[str, str]:
  """Each key's last part ('patch_size'), or the whole key where two would read the same."""
  last = [key.rsplit('.', 1)[-1] for key in keys]
  return {key: short if last.count(short) == 1 else key for key, short in zip(keys, last)}


def run_name(overrides: dict, short: dict[str, str]) -> str:
  """The folder of a run: 'batch_size=4,patch_size=16' (its overrides, in the sweep's order)."""
  name = ','.join(f'{short[key]}={value}' for key, value in overrides.items())
  return ''.join(c if c.isalnum() or c in '=,._-' else '_' for c in name)


def _run_config(config: ml_collections.ConfigDict, overrides: dict) -> ml_collections.ConfigDict:
  run_config = config.copy_and_resolve_references()
  # The copy types the 'auto' speed keys as str; the values were parsed with the base's types.
  with run_config.ignore_type():
    for key, value in overrides.items():
      config_path.set_value(key, run_config, value)
  return run_config


def plan(
    config: ml_collections.ConfigDict, specs: list[str], *, zip_axes: bool = False
) -> list[Run]:
  """The runs of a sweep, not yet checked (main.py checks each with config_checks).

  Args:
    config: the base config.
    specs: 'KEY=VALUE,VALUE,...' per axis (the --sweep flags); none: config.sweep.axes.
    zip_axes: pair the axes' values (all of one length) instead of taking their grid.

  Raises:
    ValueError: naming the flag (or config.sweep.axes) and what is wrong with it.
  """
  origin = '--sweep'
  if not specs:
    specs, origin = list(config.sweep.axes), 'config.sweep.axes'
    zip_axes = zip_axes or config.sweep.zip
  if not specs:
    raise ValueError(
        '--mode=sweep needs what to vary: --sweep=KEY=VALUE,VALUE,... (repeated for a grid), '
        'or a config with config.sweep.axes (e.g. configs/sweeps/maps_study.py)'
    )
  axes = [parse_axis(config, spec, origin) for spec in specs]
  keys = [axis.key for axis in axes]
  for key in keys:
    if keys.count(key) > 1:
      raise ValueError(f'{origin}: config.{key} is swept twice; give all its values in one flag')
  if zip_axes:
    lengths = {axis.key: len(axis.values) for axis in axes}
    if len(set(lengths.values())) > 1:
      raise ValueError(f'--zip pairs the values of lists of one length; got {lengths}')
    combinations = list(zip(*(axis.values for axis in axes)))
  else:
    combinations = list(itertools.product(*(axis.values for axis in axes)))
  if 'batch_size' in keys and config.num_train_steps > 0:
    logging.warning(
        "config.num_train_steps=%d fixes every run's steps, so each batch size trains for "
        'another number of epochs; --config.num_train_steps=-1 keeps config.num_epochs=%d instead '
        '(the steps then follow the batch size)',
        config.num_train_steps,
        config.num_epochs,
    )
  short = _short_names(keys)
  runs = []
  for values in combinations:
    overrides = dict(zip(keys, values))
    runs.append(Run(run_name(overrides, short), overrides, _run_config(config, overrides)))
  return runs


def plan_ablation(config: ml_collections.ConfigDict, patch_sizes: list[str]) -> list[Run]:
  """`--mode=ablation`'s runs: one per patch size, in WORKDIR/patch_<N>."""
  axis = parse_axis(config, 'model.patch_size=' + ','.join(patch_sizes), '--patch_sizes')
  return [
      Run(f'patch_{size}', {axis.key: size}, _run_config(config, {axis.key: size}))
      for size in axis.values
  ]


def _fingerprint(config: ml_collections.ConfigDict) -> str:
  """The config a record belongs to (the sweep's own grid left out: adding a run changes none)."""
  values = config.to_dict()
  values.pop('sweep', None)
  return json.dumps(values, sort_keys=True, default=str)


def _read_json(path: pathlib.Path) -> dict | None:
  try:
    return json.loads(path.read_text())
  except (OSError, ValueError):
    return None


def _write_json(path: pathlib.Path, data: dict) -> None:
  if jax.process_index() == 0:
    path.write_text(json.dumps(data, indent=2))


def _train_lengths(runs: list[Run]) -> list[tuple[int, int]]:
  """(steps, steps per epoch) of each run; the train sets are counted once per data config."""
  counts = {}
  lengths = []
  for run in runs:
    data = json.dumps(run.config.data.to_dict(), sort_keys=True, default=str)
    if data not in counts:
      # As training reads them: with several processes, process 0 prepares the dataset first.
      counts[data] = len(pipeline.create_sources(run.config.data, run.config.seed)[0])
    try:
      lengths.append(
          train_state.train_length(
              counts[data],
              batch_size=run.config.batch_size,
              num_train_steps=run.config.num_train_steps,
              num_epochs=run.config.num_epochs,
          )
      )
    except ValueError as error:
      raise ValueError(f'sweep run {run.name}: {error}') from None
  return lengths


def _train_and_score(
    run: Run, run_dir: pathlib.Path, steps: int, steps_per_epoch: int, modes: Modes
):
  """The run's record once scored, or None if its training stopped early (a signal)."""
  fingerprint = _fingerprint(run.config)
  record = _read_json(run_dir / RUN_RECORD) or {}
  if (
      record.get('config') == fingerprint
      and record.get('status') == 'scored'
      and (run_dir / 'eval' / 'metrics.json').is_file()
  ):
    logging.info('Sweep: %s is scored already (%s); skipped', run.name, run_dir / RUN_RECORD)
    return record
  logging.info(
      'Sweep: %s in %s, %d steps (%d per epoch)', run.name, run_dir, steps, steps_per_epoch
  )
  start = time.perf_counter()
  state = modes.train(run.config, str(run_dir))
  record = {
      'name': run.name,
      'overrides': run.overrides,
      'status': 'trained',
      'steps': int(state.step),
      'steps_per_epoch': steps_per_epoch,
      'epochs': int(state.step) / steps_per_epoch,
      # Over every session of the sweep that trained this run (a killed one is not counted).
      'train_seconds': record.get('train_seconds', 0.0) + time.perf_counter() - start,
      'config': fingerprint,
  }
  _write_json(run_dir / RUN_RECORD, record)
  if record['steps'] < steps:
    return None
  start = time.perf_counter()
  result = modes.evaluate(run.config, str(run_dir))
  record |= {
      'status': 'scored',
      'eval_seconds': time.perf_counter() - start,
      'num_images': result['num_images'],
  }
  _write_json(run_dir / RUN_RECORD, record)
  return record


def train_and_score_all(
    runs: list[Run], workdir: str, modes: Modes
) -> list[tuple[Run, dict, dict]] | None:
  """Trains (or resumes, or skips if scored) and scores each run in WORKDIR/<run.name>.

  Returns:
    (run, its record, its eval/metrics.json) per run; None if a signal stopped a run's training
    (its checkpoint is saved; the same command resumes the sweep there).
  """
  lengths = _train_lengths(runs)  # Before anything trains: a batch larger than the set fails.
  rows = []
  for index, (run, (steps, steps_per_epoch)) in enumerate(zip(runs, lengths)):
    run_dir = pathlib.Path(workdir) / run.name
    logging.info('Sweep run %d of %d: %s', index + 1, len(runs), run.name)
    record = _train_and_score(run, run_dir, steps, steps_per_epoch, modes)
    if record is None:
      logging.warning(
          'Sweep stopped in run %s at step %d of %d; run the same command to resume it.',
          run.name,
          (_read_json(run_dir / RUN_RECORD) or {}).get('steps', -1),
          steps,
      )
      return None
    rows.append((run, record, json.loads((run_dir / 'eval' / 'metrics.json').read_text())))
  return rows


def _metric_cells(values: dict, present: list[str]) -> list[str]:
  """Table cells of metrics.json's 'metrics': per-image ones as mean ± std, FID, KID."""
  cells = []
  for name in present:
    value = values.get(name)
    if value is None:
      cells.append('')
    elif name == 'fid':
      cells.append(f'{value:.2f}')
    elif name in _PER_IMAGE:
      cells.append(f'{value["mean"]:.4f} ± {value["std"]:.4f}')
    else:
      cells.append(f'{value["mean"]:.4f}')
  return cells


def _metric_header(present: list[str]) -> list[str]:
  return [
      metrics.METRICS[name].title + (' (mean ± std)' if name in _PER_IMAGE else '')
      for name in present
  ]


def _present(results: list[dict]) -> list[str]:
  return [name for name in metrics.METRICS if any(name in r['metrics'] for r in results)]


def _markdown_table(header: list[str], rows: list[list[str]]) -> str:
  lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
  return '\n'.join(lines + ['| ' + ' | '.join(row) + ' |' for row in rows])


def comparison_table(rows: list[tuple[int, dict]]) -> str:
  """The ablation's table: one row per patch size, the mean ± std of each metric, FID and KID."""
  present = _present([result for _, result in rows])
  return _markdown_table(
      ['patch size', 'images'] + _metric_header(present),
      [
          [f'{size}×{size}', str(result['num_images'])] + _metric_cells(result['metrics'], present)
          for size, result in rows
      ],
  )


def sweep_table(rows: list[tuple[Run, dict, dict]]) -> str:
  """Markdown: one row per run, its overrides, steps, epochs, train wall time and metrics."""
  keys = list(rows[0][0].overrides)
  short = _short_names(keys)
  present = _present([result for _, _, result in rows])
  header = [short[key] for key in keys] + ['steps', 'epochs', 'train wall', 'images']
  body = [
      [str(run.overrides[key]) for key in keys]
      + [
          f'{record["steps"]:,}',
          f'{record["epochs"]:.3g}',
          progress.format_duration(record['train_seconds']),
          str(result['num_images']),
      ]
      + _metric_cells(result['metrics'], present)
      for run, record, result in rows
  ]
  return _markdown_table(header + _metric_header(present), body)


def sweep_csv(rows: list[tuple[Run, dict, dict]]) -> str:
  """CSV: one row per run, its overrides by full key, steps, times and every metric's figures."""
  keys = list(rows[0][0].overrides)
  present = _present([result for _, _, result in rows])
  columns = ['run'] + keys + ['steps', 'epochs', 'steps_per_epoch', 'train_seconds']
  columns += ['eval_seconds', 'num_images']
  for name in present:
    columns += [name] if name == 'fid' else [f'{name}_mean', f'{name}_std']
  out = io.StringIO()
  writer = csv.DictWriter(out, fieldnames=columns, lineterminator='\n')
  writer.writeheader()
  for run, record, result in rows:
    row = {'run': run.name} | run.overrides | {'num_images': result['num_images']}
    row |= {key: record[key] for key in columns if key in record}
    for name, value in result['metrics'].items():
      if name == 'fid':
        row['fid'] = value
      elif f'{name}_mean' in columns:
        row[f'{name}_mean'], row[f'{name}_std'] = value['mean'], value.get('std', math.nan)
    writer.writerow(row)
  return out.getvalue()


def run_sweep(runs: list[Run], workdir: str, modes: Modes) -> str | None:
  """Trains and scores each run; writes WORKDIR/sweep.md, sweep.csv and the report's section.

  Args:
    runs: from `plan`, checked by main.py.
    workdir: the sweep's root; run R trains in WORKDIR/R.name.
    modes: how a run trains and is scored (main.py: the train and evaluate modes).

  Returns:
    The markdown table, or None if a signal stopped the sweep (run it again to resume).
  """
  rows = train_and_score_all(runs, workdir, modes)
  if rows is None:
    return None
  table = sweep_table(rows)
  root = pathlib.Path(workdir)
  config = runs[0].config
  title = f'Sweep ({config.data.name}, {config.data.direction}), {len(rows)} runs'
  if jax.process_index() == 0:
    (root / 'sweep.md').write_text(f'# {title}\n\n{table}\n')
    (root / 'sweep.csv').write_text(sweep_csv(rows))
    present = _present([result for _, _, result in rows])
    values = {
        name: [_mean(result['metrics'].get(name)) for _, _, result in rows] for name in present
    }
    chart = report.comparison_chart([run.name for run, _, _ in rows], values)
    report.write_report(
        root,
        extra_sections={'Sweep': f'{title}:\n\n{table}'},
        section_charts={'Sweep': chart} if chart else None,
    )
  logging.info('Sweep results (%s, %s):\n%s', root / 'sweep.md', root / 'sweep.csv', table)
  return table


def _mean(value) -> float:
  if value is None:
    return math.nan
  return float(value['mean'] if isinstance(value, dict) else value)


def run_patch_size_ablation(runs: list[Run], workdir: str, modes: Modes) -> str | None:
  """`--mode=ablation`: trains and scores each patch size; writes WORKDIR/ablation.md.

  Args:
    runs: from `plan_ablation`, checked by main.py.
    workdir: root folder; run N goes to WORKDIR/patch_N.
    modes: how a run trains and is scored (main.py: the train and evaluate modes).

  Returns:
    The markdown table, or None if a signal stopped it (run it again to resume).
  """
  rows = train_and_score_all(runs, workdir, modes)
  if rows is None:
    return None
  table = comparison_table([(run.overrides['model.patch_size'], result) for run, _, result in rows])
  config = runs[0].config
  if jax.process_index() == 0:
    (pathlib.Path(workdir) / 'ablation.md').write_text(
        f'# PatchGAN receptive field ({config.data.name}, {config.data.direction})\n\n{table}\n'
    )
    report.write_report(workdir, extra_sections={'PatchGAN receptive field': table})
  logging.info('Ablation results (%s):\n%s', pathlib.Path(workdir) / 'ablation.md', table)
  return table
