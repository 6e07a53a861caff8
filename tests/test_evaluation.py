"""--mode=evaluate on configs/test.py after a short training."""

import csv
import json
import shutil

import numpy as np
import pytest

from configs import test as test_config
from pix2pix_jax import evaluation, metrics, checkpointing


def eval_config():
  config = test_config.get_config()
  config.eval.perceptual = False  # FID/KID/LPIPS: the last test and tests/test_perceptual.py.
  return config


@pytest.fixture(scope='module')
def evaluated(trained_workdir, tmp_path_factory):
  workdir = tmp_path_factory.mktemp('evaluated')
  shutil.copytree(trained_workdir, workdir, dirs_exist_ok=True)
  config = eval_config()
  return workdir, config, evaluation.evaluate(config, str(workdir))


def test_every_eval_example_is_scored(evaluated):
  workdir, config, report = evaluated
  assert report['num_images'] == config.data.synthetic_eval_examples == 4
  assert report['step'] == 2
  saved = json.loads((workdir / 'eval' / 'metrics.json').read_text())
  assert saved['metrics'] == report['metrics']
  assert set(saved['metrics']) == {'l1', 'psnr', 'ssim', 'hp_l1'}
  assert saved['test_mode'].startswith('paper')
  with open(workdir / 'eval' / 'per_image.csv') as f:
    rows = list(csv.DictReader(f))
  assert [r['file_name'] for r in rows] == [f'synthetic/eval/{i}.png' for i in range(4)]
  l1 = [float(r['l1']) for r in rows]
  assert saved['metrics']['l1'] == pytest.approx(metrics.summarize(l1))
  assert 0 < saved['metrics']['l1']['mean'] < 1 and saved['metrics']['ssim']['max'] <= 1


def test_panels_are_written_and_ordered(evaluated):
  workdir, config, report = evaluated
  panels = report['panels']
  assert [p['name'] for p in panels['fixed']] == ['synthetic/eval/0.png', 'synthetic/eval/1.png']
  best, worst = [p['l1'] for p in panels['best']], [p['l1'] for p in panels['worst']]
  assert best == sorted(best) and worst == sorted(worst, reverse=True)
  assert best[0] == report['metrics']['l1']['min'] and worst[0] == report['metrics']['l1']['max']
  for group in panels.values():
    for panel in group:
      assert (workdir / 'eval' / panel['file']).exists()


def test_table_has_every_metric(evaluated):
  table = evaluation.format_table(evaluated[2]['metrics'])
  for title in ('L1', 'PSNR (dB)', 'SSIM', 'HP-L1'):
    assert f'| {title} |' in table


def test_deterministic_test_mode_is_reproducible(evaluated):
  workdir, config = evaluated[0], eval_config()
  config.eval.train_mode = False
  first = evaluation.evaluate(config, str(workdir))
  assert first['test_mode'].startswith('deterministic')
  assert evaluation.evaluate(config, str(workdir))['metrics'] == first['metrics']


def test_missing_checkpoint_and_wrong_step_are_named(evaluated, tmp_path):
  workdir, config = evaluated[0], eval_config()
  with pytest.raises(FileNotFoundError, match=f'no checkpoints in {tmp_path}'):
    evaluation.evaluate(config, str(tmp_path))
  with pytest.raises(FileNotFoundError, match=r'checkpoints/7; available steps: \[2\]'):
    evaluation.evaluate(config, str(workdir), step=7)


def test_other_generator_architecture_is_named(evaluated):
  workdir, config = evaluated[0], eval_config()
  config.model.ngf = 16
  with pytest.raises(checkpointing.CheckpointMismatchError, match='model.ngf: checkpoint 8, config 16'):
    evaluation.evaluate(config, str(workdir))


def test_fid_kid_lpips_with_the_metrics_extra(evaluated):
  perceptual = pytest.importorskip('pix2pix_jax.perceptual')
  if not perceptual.available()[0]:
    pytest.skip(perceptual.available()[1])
  workdir, config = evaluated[0], test_config.get_config()
  report = evaluation.evaluate(config, str(workdir))
  assert {'fid', 'kid', 'lpips'} <= set(report['metrics'])
  assert report['metrics']['fid'] > 0 and np.isfinite(report['metrics']['kid']['mean'])
  assert 0 < report['metrics']['lpips']['mean'] < 1
  table = evaluation.format_table(report['metrics'])
  assert 'FID' in table and f"KID (subsets of {report['metrics']['kid']['subset_size']})" in table
