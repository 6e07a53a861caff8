"""--mode=score: images generated elsewhere, scored as --mode=evaluate scores the generator."""

import csv
import json
import logging
import math
import pathlib
import subprocess
import sys

import numpy as np
from PIL import Image
import pytest

from configs import test as test_config
from pix2pix_jax import evaluation, report, scoring
from pix2pix_jax.data import pipeline

ROOT = pathlib.Path(__file__).resolve().parents[1]
SIZE = 32  # configs/test.py's image_size.
# metrics.json of --mode=evaluate; score adds what it scored.
EVALUATE_KEYS = {
    'step',
    'num_images',
    'split',
    'direction',
    'dataset',
    'test_mode',
    'metrics',
    'panels',
}
SCORE_KEYS = EVALUATE_KEYS | {'generated_dir', 'targets', 'targets_layout'}


def score_config(direction='BtoA'):
  config = test_config.get_config()
  config.eval.perceptual = False  # FID/KID/LPIPS go through the same ImageScores: test_evaluation.
  config.data.direction = direction
  return config


def save(folder: pathlib.Path, name: str, image: np.ndarray) -> pathlib.Path:
  folder.mkdir(parents=True, exist_ok=True)
  Image.fromarray(image).save(folder / name)
  return folder / name


def random_image(seed: int, size=(SIZE, SIZE)) -> np.ndarray:
  # Values up to 200 leave room for the +10 perturbation without clipping.
  return np.random.default_rng(seed).integers(0, 201, (*size, 3), dtype=np.uint8)


def constant(value: int, height=SIZE, width=SIZE) -> np.ndarray:
  return np.full((height, width, 3), value, np.uint8)


def read_rows(workdir: pathlib.Path) -> list[dict]:
  with open(workdir / 'eval' / 'per_image.csv') as f:
    return list(csv.DictReader(f))


def test_plain_targets_exact_and_perturbed(tmp_path, caplog):
  caplog.set_level(logging.INFO)
  generated, targets = tmp_path / 'generated', tmp_path / 'targets'
  for i in range(3):  # Three images in eval batches of 2: the last batch is padded.
    target = random_image(i)
    save(targets, f'{i}.png', target)
    save(generated, f'{i}.png', target + 10 if i == 2 else target)
  result = scoring.score(score_config(), str(tmp_path / 'work'), str(generated), str(targets))
  by_name = {row['file_name']: row for row in read_rows(tmp_path / 'work')}
  assert list(by_name) == ['0.png', '1.png', '2.png'] and result['num_images'] == 3
  # The progress line of long work: here only its last (done within the first interval).
  assert 'Scoring: 3/3 images, ' in caplog.text and '(reading and matching ' in caplog.text
  for name in ('0.png', '1.png'):
    assert float(by_name[name]['l1']) == 0
    assert float(by_name[name]['ssim']) == pytest.approx(1, abs=1e-6)
    assert float(by_name[name]['psnr']) == math.inf
  assert float(by_name['2.png']['l1']) == pytest.approx(10 / 255, rel=1e-6)
  assert float(by_name['2.png']['psnr']) == pytest.approx(20 * math.log10(255 / 10), rel=1e-5)
  assert float(by_name['2.png']['hp_l1']) == pytest.approx(0, abs=1e-6)  # A constant shift.
  assert result['targets_layout'] == 'plain' and result['step'] is None
  panel = np.asarray(Image.open(tmp_path / 'work' / 'eval' / result['panels']['worst'][0]['file']))
  assert panel.shape == (SIZE, 2 * SIZE, 3)  # [generated | target]: plain targets have no input.
  assert result['panels']['worst'][0]['name'] == '2.png'


@pytest.mark.parametrize('direction, expected_l1', [('AtoB', 0.0), ('BtoA', 100 / 255)])
def test_pair_targets_take_the_half_of_the_direction(tmp_path, caplog, direction, expected_l1):
  pair = np.concatenate([constant(50), constant(150)], axis=1)  # A = 50 | B = 150, 2:1.
  save(tmp_path / 'pairs', '1.png', pair)
  save(tmp_path / 'generated', '1.png', constant(150))
  with caplog.at_level(logging.INFO):
    result = scoring.score(
        score_config(direction),
        str(tmp_path / 'work'),
        str(tmp_path / 'generated'),
        str(tmp_path / 'pairs'),
    )
  assert result['metrics']['l1']['mean'] == pytest.approx(expected_l1, abs=1e-7)
  assert result['targets_layout'] == 'side_by_side'
  assert 'read as side-by-side A|B pairs' in caplog.text
  panel = np.asarray(Image.open(tmp_path / 'work' / 'eval' / 'panels' / 'fixed_0.png'))
  assert panel.shape == (SIZE, 3 * SIZE, 3)  # [input | generated | target].
  input_value = 50 if direction == 'AtoB' else 150
  assert (panel[:, :SIZE] == input_value).all()


def test_targets_not_all_two_to_one_are_plain_with_a_warning(tmp_path, caplog):
  save(tmp_path / 'targets', '1.png', np.concatenate([constant(50), constant(150)], axis=1))
  save(tmp_path / 'targets', '2.png', constant(80))
  for name in ('1.png', '2.png'):
    save(tmp_path / 'generated', name, constant(80))
  with caplog.at_level(logging.INFO):
    result = scoring.score(
        score_config(),
        str(tmp_path / 'work'),
        str(tmp_path / 'generated'),
        str(tmp_path / 'targets'),
    )
  assert result['targets_layout'] == 'plain'
  assert 'read as plain target images (1 of 2 are 2:1' in caplog.text
  assert any(r.levelno == logging.WARNING and '1.png' in r.getMessage() for r in caplog.records)


def test_generated_of_another_size_is_resized_with_one_warning(tmp_path, caplog):
  save(tmp_path / 'targets', '1.png', constant(90))
  save(tmp_path / 'targets', '2.png', constant(30))
  save(tmp_path / 'generated', '1.png', constant(90, 64, 64))
  save(tmp_path / 'generated', '2.png', constant(30, 48, 40))
  with caplog.at_level(logging.WARNING):
    result = scoring.score(
        score_config(),
        str(tmp_path / 'work'),
        str(tmp_path / 'generated'),
        str(tmp_path / 'targets'),
    )
  resized = [r.getMessage() for r in caplog.records if 'Resized' in r.getMessage()]
  assert len(resized) == 1
  assert 'Resized 2 generated image(s) to the evaluation size 32×32' in resized[0]
  assert '40×48 (1)' in resized[0] and '64×64 (1)' in resized[0]
  assert result['num_images'] == 2
  assert result['metrics']['l1']['max'] == 0  # Bicubic keeps a constant image constant.


def test_reference_results_naming(tmp_path, caplog):
  results = tmp_path / 'results' / 'maps' / 'test_latest' / 'images'
  target = random_image(5)
  save(tmp_path / 'targets', '5.png', target)
  save(results, '5_fake_B.png', target)
  save(results, '5_real_A.png', random_image(6))
  save(results, '5_real_B.png', random_image(7))
  with caplog.at_level(logging.INFO):
    result = scoring.score(
        score_config(), str(tmp_path / 'work'), str(results), str(tmp_path / 'targets')
    )
  assert result['num_images'] == 1 and result['metrics']['l1']['mean'] == 0
  assert read_rows(tmp_path / 'work')[0]['file_name'] == '5.png'
  assert 'Ignoring 2 *_real_A / *_real_B file(s)' in caplog.text
  assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_unmatched_and_corrupt_files_are_named(tmp_path, caplog):
  generated, targets = tmp_path / 'generated', tmp_path / 'targets'
  for name in ('1.png', '2.png', '3.png', '4.png'):
    save(targets, name, constant(70))
  for name in ('1.png', '2.png', '4.png', 'extra.png'):
    save(generated, name, constant(70))
  (generated / '2.png').write_bytes(b'not a png')
  (targets / '4.png').write_bytes(b'\x89PNG\r\n\x1a\n truncated')
  with caplog.at_level(logging.WARNING):
    result = scoring.score(score_config(), str(tmp_path / 'work'), str(generated), str(targets))
  assert [row['file_name'] for row in read_rows(tmp_path / 'work')] == ['1.png']
  assert result['num_images'] == 1
  warnings = [r.getMessage() for r in caplog.records]
  assert any('1 generated image(s)' in w and 'extra.png' in w for w in warnings)
  assert any('1 target(s)' in w and '3.png' in w for w in warnings)
  unreadable = [w for w in warnings if 'unreadable' in w]
  assert len(unreadable) == 1
  assert str(generated / '2.png') in unreadable[0] and str(targets / '4.png') in unreadable[0]


def test_nothing_matched_names_both_folders(tmp_path):
  save(tmp_path / 'generated', 'a.png', constant(1))
  save(tmp_path / 'targets', 'b.png', constant(1))
  with pytest.raises(ValueError, match='no generated image') as error:
    scoring.score(
        score_config(),
        str(tmp_path / 'work'),
        str(tmp_path / 'generated'),
        str(tmp_path / 'targets'),
    )
  assert str(tmp_path / 'generated') in str(error.value)
  assert str(tmp_path / 'targets') in str(error.value)
  assert 'a.png' in str(error.value) and 'b.png' in str(error.value)
  with pytest.raises(FileNotFoundError, match='--targets'):
    scoring.score(
        score_config(),
        str(tmp_path / 'work'),
        str(tmp_path / 'generated'),
        str(tmp_path / 'missing'),
    )


def test_two_generated_images_of_one_name_are_an_error(tmp_path):
  save(tmp_path / 'targets', '1.png', constant(1))
  save(tmp_path / 'generated', '1.png', constant(1))
  save(tmp_path / 'generated', '1_fake_B.png', constant(1))
  with pytest.raises(ValueError, match=r"1.png and .*1_fake_B.png both match target '1'"):
    scoring.score(
        score_config(),
        str(tmp_path / 'work'),
        str(tmp_path / 'generated'),
        str(tmp_path / 'targets'),
    )


def write_eval_targets(config, folder: pathlib.Path) -> list[str]:
  """The eval split's targets, as evaluate reads them, saved as 'perfect' generated images."""
  source = pipeline.create_source(config.data, 'eval', config.seed)
  names = []
  for batch in pipeline.eval_batches(source, config.data, batch_size=config.eval.batch_size):
    for row in np.flatnonzero(batch['mask']):
      names.append(str(batch['file_name'][row]))
      save(folder, pathlib.Path(names[-1]).name, batch['target'][row])
  return names


def test_perfect_images_against_the_eval_split(tmp_path):
  config = score_config()
  names = write_eval_targets(config, tmp_path / 'generated')
  assert names == [f'synthetic/eval/{i}.png' for i in range(4)]
  workdir = tmp_path / 'work'
  result = scoring.score(config, str(workdir), str(tmp_path / 'generated'))
  assert result['num_images'] == 4 and result['metrics']['l1']['max'] == 0
  assert result['metrics']['ssim']['min'] == pytest.approx(1, abs=1e-6)
  saved = json.loads((workdir / 'eval' / 'metrics.json').read_text())
  assert set(saved) == SCORE_KEYS and saved['step'] is None
  assert saved['test_mode'] == scoring.SCORE_TEST_MODE
  assert saved['split'] == 'val' and saved['targets_layout'] == 'eval_split'
  assert set(saved['metrics']) == set(evaluation.PIXEL_METRICS)
  rows = read_rows(workdir)
  assert [r['file_name'] for r in rows] == names  # evaluate's per_image.csv names.
  assert list(rows[0]) == ['file_name', 'index'] + list(evaluation.PIXEL_METRICS)
  for group in ('fixed', 'best', 'worst'):
    for panel in saved['panels'][group]:
      image = np.asarray(Image.open(workdir / 'eval' / panel['file']))
      assert image.shape == (SIZE, 3 * SIZE, 3)  # The split gives inputs: [in | out | target].
  assert not list(workdir.glob('events.out.tfevents.*'))  # No step, no TensorBoard scalars.
  page = report.write_report(workdir).read_text()
  assert '<b>images</b> 4' in page and '<b>step</b>' not in page


def test_main_score_end_to_end(tmp_path):
  save(tmp_path / 'targets', '1.png', constant(60))
  save(tmp_path / 'generated', '1_fake_B.png', constant(70))
  command = [
      sys.executable,
      'main.py',
      '--config=configs/test.py',
      f'--workdir={tmp_path / "w"}',
      '--mode=score',
      '--config.eval.perceptual=False',
  ]
  result = subprocess.run(
      command + [f'--input={tmp_path / "generated"}', f'--targets={tmp_path / "targets"}'],
      cwd=ROOT,
      capture_output=True,
      text=True,
      timeout=300,
  )
  assert result.returncode == 0, result.stderr[-3000:]
  saved = json.loads((tmp_path / 'w' / 'eval' / 'metrics.json').read_text())
  assert saved['metrics']['l1']['mean'] == pytest.approx(10 / 255, rel=1e-6)
  assert (tmp_path / 'w' / 'report' / 'index.html').exists()
  assert '| L1 |' in result.stderr
  missing = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert missing.returncode != 0 and '--mode=score needs --input' in missing.stderr
