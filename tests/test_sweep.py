"""--mode=sweep (and the ablation preset): the plan, resume, the table, end to end."""

import csv
import io
import json
import logging
import pathlib
import types

import pytest

from configs import test as test_config
from configs.sweeps import maps_study
from pix2pix_jax import evaluation, sweep, train, train_state
from tests.test_main import run_main


def locked_test_config():
  config = test_config.get_config()
  config.lock()  # As main.py's --config flag gives it.
  return config


def test_plan_is_the_grid_of_typed_values():
  config = locked_test_config()
  runs = sweep.plan(config, ['model.patch_size=1,16,70', 'loss.lambda_l1=10,100'])
  assert [run.name for run in runs] == [
      f'patch_size={p},lambda_l1={l}' for p in (1, 16, 70) for l in (10.0, 100.0)
  ]
  for run in runs:
    patch_size, lambda_l1 = run.overrides.values()
    assert run.config.model.patch_size == patch_size and type(patch_size) is int
    assert run.config.loss.lambda_l1 == lambda_l1 and type(lambda_l1) is float
    assert run.config.batch_size == config.batch_size  # The rest is the base's.
  assert config.model.patch_size == 70 and config.loss.lambda_l1 == 100  # The base is untouched.
  # bools, 'auto' speed keys (an untyped field: a literal or the string) and strings.
  runs = sweep.plan(
      config, ['eval.perceptual=true,false', 'steps_per_call=auto,2', 'data.preprocess=resize']
  )
  assert [run.overrides for run in runs][:2] == [
      {'eval.perceptual': True, 'steps_per_call': 'auto', 'data.preprocess': 'resize'},
      {'eval.perceptual': True, 'steps_per_call': 2, 'data.preprocess': 'resize'},
  ]
  assert runs[1].config.steps_per_call == 2


def test_zip_pairs_the_lists_and_the_config_can_hold_the_grid(caplog):
  config = locked_test_config()
  with caplog.at_level(logging.WARNING):
    runs = sweep.plan(config, ['batch_size=2,4', 'eval.batch_size=4,8'], zip_axes=True)
  # configs/test.py fixes the steps: the batch sizes train for different numbers of epochs.
  assert 'config.num_train_steps=4 fixes every run' in caplog.text
  assert [(r.config.batch_size, r.config.eval.batch_size) for r in runs] == [(2, 4), (4, 8)]
  assert [r.name for r in runs] == [
      'batch_size=2,eval.batch_size=4',  # Two keys ending alike are named in full.
      'batch_size=4,eval.batch_size=8',
  ]
  study = maps_study.get_config()
  runs = sweep.plan(study, [])  # No --sweep flag: config.sweep.axes.
  assert len(runs) == 18 and runs[-1].name == 'batch_size=10,patch_size=286,preprocess=patches'
  assert sweep.plan(study, ['seed=0,1'])[1].config.seed == 1  # The flag replaces the config's.


@pytest.mark.parametrize(
    'specs, zip_axes, message',
    [
        (
            ['model.patch_sise=1,16'],
            False,
            "--sweep='model.patch_sise=1,16': the config has no key",
        ),
        (['model.patch_size=1,x'], False, "'x' is not a value of config.model.patch_size (int)"),
        (['eval.perceptual=maybe'], False, "'maybe' is not a value of config.eval.perceptual"),
        (['model.patch_size'], False, 'expected KEY=VALUE,VALUE,...'),
        (['model=1'], False, 'config.model is a group of keys'),
        (['batch_size=2,2'], False, 'a value is given twice'),
        (['batch_size=2', 'batch_size=4'], False, 'config.batch_size is swept twice'),
        (['batch_size=2,4', 'seed=1'], True, "got {'batch_size': 2, 'seed': 1}"),
        ([], False, '--mode=sweep needs what to vary'),
    ],
)
def test_bad_sweeps_are_named(specs, zip_axes, message):
  with pytest.raises(ValueError) as error:
    sweep.plan(locked_test_config(), specs, zip_axes=zip_axes)
  assert message in str(error.value)


def test_ablation_preset_runs_and_table():
  runs = sweep.plan_ablation(locked_test_config(), ['1', '16'])
  assert [(r.name, r.config.model.patch_size) for r in runs] == [('patch_1', 1), ('patch_16', 16)]
  with pytest.raises(ValueError, match="--patch_sizes='model.patch_size=1,big'"):
    sweep.plan_ablation(locked_test_config(), ['1', 'big'])
  # The table of --mode=ablation, as it was before the sweep existed.
  result = {
      'num_images': 4,
      'metrics': {
          'l1': {'mean': 0.1, 'std': 0.01},
          'psnr': {'mean': 20.0, 'std': 1.0},
          'fid': 123.456,
          'kid': {'mean': 0.05, 'std': 0.001},
      },
  }
  assert sweep.comparison_table([(16, result)]) == (
      '| patch size | images | L1 (mean ± std) | PSNR (dB) (mean ± std) | FID | KID |\n'
      '|---|---|---|---|---|---|\n'
      '| 16×16 | 4 | 0.1000 ± 0.0100 | 20.0000 ± 1.0000 | 123.46 | 0.0500 |'
  )


class FakeTraining:
  """train_and_evaluate and evaluate without JAX: the sweep's bookkeeping alone."""

  def __init__(self, num_train_examples):
    self.trained, self.stop_in, self.num_train_examples = [], None, num_train_examples
    self.modes = sweep.Modes(train=self.train, evaluate=self.evaluate)

  def train(self, config, workdir):
    name = pathlib.Path(workdir).name
    self.trained.append(name)
    pathlib.Path(workdir).mkdir(parents=True, exist_ok=True)
    steps, _ = train_state.train_length(
        self.num_train_examples,
        batch_size=config.batch_size,
        num_train_steps=config.num_train_steps,
        num_epochs=config.num_epochs,
    )
    return types.SimpleNamespace(step=steps // 2 if name == self.stop_in else steps)

  def evaluate(self, config, workdir):
    # Values that differ per run, so a row cannot show another run's.
    value = config.model.patch_size + config.batch_size / 10
    result = {
        'step': None,
        'num_images': 4,
        'metrics': {
            'l1': {'mean': value, 'std': value / 100},
            'ssim': {'mean': value / 1000, 'std': 0.0},
        },
    }
    (pathlib.Path(workdir) / 'eval').mkdir(exist_ok=True)
    (pathlib.Path(workdir) / 'eval' / 'metrics.json').write_text(json.dumps(result))
    return result


def test_a_stopped_sweep_resumes_where_it_stopped(tmp_path):
  config = locked_test_config()
  config.unlock().num_train_steps = -1  # 1 epoch: the steps follow the batch size.
  config.num_epochs = 1
  runs = sweep.plan(config, ['batch_size=2,4', 'model.patch_size=16,70'])
  fake = FakeTraining(num_train_examples=config.data.synthetic_train_examples)
  fake.stop_in = 'batch_size=4,patch_size=16'  # A signal stops its training half-way.
  assert sweep.run_sweep(runs, str(tmp_path), fake.modes) is None
  assert fake.trained == [r.name for r in runs[:3]]
  assert not (tmp_path / 'sweep.md').exists()
  record = json.loads((tmp_path / 'batch_size=4,patch_size=16' / sweep.RUN_RECORD).read_text())
  assert (record['status'], record['steps']) == ('trained', 2)

  fake.trained, fake.stop_in = [], None
  table = sweep.run_sweep(runs, str(tmp_path), fake.modes)
  assert fake.trained == [r.name for r in runs[2:]]  # The scored runs are skipped.
  assert (tmp_path / 'sweep.md').read_text().endswith(table + '\n')
  lines = table.splitlines()
  assert lines[0] == (
      '| batch_size | patch_size | steps | epochs | train wall | images | L1 (mean ± std) '
      '| SSIM (mean ± std) |'
  )
  assert lines[2:] == [
      '| 2 | 16 | 8 | 1 | 00:00:00 | 4 | 16.2000 ± 0.1620 | 0.0162 ± 0.0000 |',
      '| 2 | 70 | 8 | 1 | 00:00:00 | 4 | 70.2000 ± 0.7020 | 0.0702 ± 0.0000 |',
      '| 4 | 16 | 4 | 1 | 00:00:00 | 4 | 16.4000 ± 0.1640 | 0.0164 ± 0.0000 |',
      '| 4 | 70 | 4 | 1 | 00:00:00 | 4 | 70.4000 ± 0.7040 | 0.0704 ± 0.0000 |',
  ]
  fake.trained = []
  sweep.run_sweep(runs, str(tmp_path), fake.modes)
  assert fake.trained == []  # All scored: nothing trains again.
  # A changed base config (more epochs) trains the runs on, all of them.
  more = sweep.plan(config, ['batch_size=2,4', 'model.patch_size=16,70'])
  for run in more:
    run.config.num_epochs = 2
  sweep.run_sweep(more, str(tmp_path), fake.modes)
  assert fake.trained == [r.name for r in runs]


def test_a_batch_larger_than_the_train_set_is_named_before_training(tmp_path):
  fake = FakeTraining(num_train_examples=16)
  runs = sweep.plan(locked_test_config(), ['batch_size=2,32'])
  with pytest.raises(
      ValueError, match='sweep run batch_size=32: config.batch_size=32 exceeds the 16'
  ):
    sweep.run_sweep(runs, str(tmp_path), fake.modes)
  assert fake.trained == [] and not list(tmp_path.iterdir())


def test_impossible_run_is_named_before_anything_trains(tmp_path):
  result = run_main(
      tmp_path / 'sweep', '--mode=sweep', '--sweep=model.patch_size=16,286', '--sweep=seed=0,1'
  )
  assert result.returncode != 0
  assert (
      'sweep run patch_size=286,seed=0: config.model.patch_size=286 needs '
      'config.data.image_size >= 96'
      in result.stderr
  )
  assert not (tmp_path / 'sweep').exists()


def test_maps_study_at_test_size_end_to_end(tmp_path, caplog):
  """The study's 2×2×2 version, killed half-way through a run, then resumed to its table."""
  config = maps_study.get_config('test')
  config.lock()
  runs = sweep.plan(config, [])
  killed = 'batch_size=2,patch_size=16,preprocess=patches'
  modes = sweep.Modes(train=train.train_and_evaluate, evaluate=evaluation.evaluate)  # main.py's.

  def killed_half_way(run_config, workdir):
    if pathlib.Path(workdir).name == killed:
      run_config = run_config.copy_and_resolve_references()
      run_config.num_train_steps = 4  # Of 8: a checkpoint at step 4, then the process dies.
      train.train_and_evaluate(run_config, workdir)
      raise KeyboardInterrupt
    return train.train_and_evaluate(run_config, workdir)

  with pytest.raises(KeyboardInterrupt):
    sweep.run_sweep(runs, str(tmp_path), modes._replace(train=killed_half_way))
  first = tmp_path / runs[0].name
  events = sorted(first.glob('events.out.tfevents.*'))
  with caplog.at_level(logging.INFO):
    table = sweep.run_sweep(runs, str(tmp_path), modes)
  assert sorted(first.glob('events.out.tfevents.*')) == events  # Scored: not run again.
  assert f'Resuming from checkpoint at step 4 of 8 ({tmp_path / killed}' in caplog.text

  rows = list(csv.DictReader(io.StringIO((tmp_path / 'sweep.csv').read_text())))
  lines = table.splitlines()
  assert len(rows) == len(lines) - 2 == 8
  assert lines[0].startswith('| batch_size | patch_size | preprocess | steps | epochs |')
  for run, row, line in zip(runs, rows, lines[2:]):
    result = json.loads((tmp_path / run.name / 'eval' / 'metrics.json').read_text())
    batch_size = run.config.batch_size
    patches = run.config.data.preprocess == 'patches'
    steps = (4 * 4 if patches else 4) // batch_size  # 1 epoch of 4 pairs (4 crops each).
    assert row['run'] == run.name and int(row['batch_size']) == batch_size
    assert (int(row['steps']), float(row['epochs'])) == (steps, 1.0)
    assert result['step'] == steps and int(row['num_images']) == result['num_images']
    for name in ('l1', 'psnr', 'ssim', 'hp_l1'):
      assert float(row[f'{name}_mean']) == result['metrics'][name]['mean']
    cells = [cell.strip() for cell in line.strip('|').split('|')]
    assert cells[:5] == [
        str(batch_size),
        str(run.config.model.patch_size),
        run.config.data.preprocess,
        str(steps),
        '1',
    ]
    assert cells[6] == str(result['num_images'])
    assert cells[7] == '{mean:.4f} ± {std:.4f}'.format(**result['metrics']['l1'])
  page = (tmp_path / 'report' / 'index.html').read_text()
  assert (
      '<h2>Sweep</h2>' in page and (tmp_path / 'report' / 'charts' / 'section_Sweep.png').is_file()
  )
