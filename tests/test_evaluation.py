"""--mode=evaluate on configs/test.py after a short training."""

import csv
import json
import logging
import shutil

import numpy as np
import pytest

from configs import test as test_config
from pix2pix_jax import evaluation, metrics, checkpointing, report, train


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
  with pytest.raises(
      checkpointing.CheckpointMismatchError, match='model.ngf: checkpoint 8, config 16'
  ):
    evaluation.evaluate(config, str(workdir))


def test_fid_kid_lpips_with_the_metrics_extra(evaluated, caplog):
  perceptual = pytest.importorskip('pix2pix_jax.perceptual')
  if not perceptual.available()[0]:
    pytest.skip(perceptual.available()[1])
  workdir, config = evaluated[0], test_config.get_config()
  config.eval.perceptual = True
  caplog.set_level(logging.INFO)
  report = evaluation.evaluate(config, str(workdir))
  # The progress line says where the time went: generation, LPIPS, the FID network.
  (line,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith('Evaluating: ')]
  assert f"{report['num_images']}/{report['num_images']} images" in line and 'done in' in line
  assert all(f'{phase} ' in line for phase in ('generation', 'LPIPS', 'FID features')), line
  assert {'fid', 'kid', 'lpips'} <= set(report['metrics'])
  assert report['metrics']['fid'] > 0 and np.isfinite(report['metrics']['kid']['mean'])
  assert 0 < report['metrics']['lpips']['mean'] < 1
  table = evaluation.format_table(report['metrics'])
  assert 'FID' in table and f"KID (subsets of {report['metrics']['kid']['subset_size']})" in table


@pytest.mark.parametrize('perceptual', [False, True], ids=['pixel', 'fid_kid_lpips'])
def test_training_eval_scores_as_evaluate_does(tmp_path, perceptual):
  """Training's eval of its last step and --mode=evaluate of that checkpoint: the same numbers.

  Both generate with the keys fold_in(fold_in(PRNGKey(seed), 0x5eed), batch index), here with the
  paper's test-time dropout, and score through one ImageScores. Training's last eval reads the
  targets' Inception features from its cache (filled at step 0); evaluate computes them.
  """
  if perceptual:
    available, why = pytest.importorskip('pix2pix_jax.perceptual').available()
    if not available:
      pytest.skip(why)
  config = test_config.get_config()
  config.seed, config.num_train_steps, config.eval.every_steps = 3, 2, 2
  config.eval.perceptual = perceptual
  train.train_and_evaluate(config, str(tmp_path))
  logged = {tag: dict(points) for tag, points in report.read_scalars(tmp_path).items()}
  assert not (tmp_path / 'eval').exists()  # Training's eval leaves evaluate's files alone.
  assert logged['eval_seconds'][2] > 0
  expected = evaluation.eval_scalars(evaluation.evaluate(config, str(tmp_path))['metrics'])
  names = {'l1', 'psnr', 'ssim', 'hp_l1'} | ({'fid', 'kid', 'lpips'} if perceptual else set())
  assert set(expected) == {f'eval_{name}' for name in names}
  for name, value in expected.items():
    assert logged[name][2] == np.float32(value), name  # TensorBoard keeps float32.
  if not perceptual:  # The keys follow the seed: another seed, other dropout, another score.
    config.seed = 4
    other = evaluation.evaluate(config, str(tmp_path))['metrics']['l1']['mean']
    assert other != expected['eval_l1']


class CountingInception:
  """A stand-in for perceptual.InceptionFeatures: 8 features per image, each call's size noted."""

  batch_size = 4

  def __init__(self):
    self.calls = []

  def __call__(self, batch):
    self.calls.append(len(batch))
    pixels = np.asarray(batch, np.float32).reshape(len(batch), -1)
    return np.stack([pixels[:, i::8].mean(axis=1) for i in range(8)], axis=1)


def test_inception_runs_in_full_batches_and_each_target_once():
  config = eval_config()
  config.eval.batch_size = 3
  inception, cache = CountingInception(), {}
  scorers = evaluation.PerceptualScorers(inception=inception)
  rng = np.random.default_rng(0)
  generated, target = (rng.integers(0, 256, (9, 16, 16, 3), np.uint8) for _ in range(2))

  def score():  # Three eval batches of 3, as training's evals give them.
    scores = evaluation.ImageScores(config, scorers=scorers, target_features=cache)
    for start in range(0, 9, 3):
      batch = slice(start, start + 3)
      scores.add(
          [str(i) for i in range(9)][batch],
          generated[batch],
          target[batch],
          indices=range(9)[batch],
      )
    return scores.results()

  first = score()
  # Batches of 4 (JAX's Inception pads every call to its batch size): generated and targets
  # at 6 and 9 images, then the rest of each.
  assert inception.calls == [4, 4, 4, 4, 1, 1]
  assert score() == first  # The targets' features come from the cache: only G's outputs run.
  assert inception.calls[6:] == [4, 4, 1]
  assert sorted(cache) == list(range(9))
