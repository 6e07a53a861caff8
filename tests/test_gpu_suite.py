"""tools/remote_gpu/gpu_suite.py: a short rehearsal of both GPU phases in this environment, on CPU."""

import importlib.util
import io
import json
import pathlib
import subprocess
import sys
import tarfile
import types

import numpy as np
from PIL import Image
import pytest

from pix2pix_jax import checkpointing
from tools.remote_gpu import gpu_suite

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope='module')
def rehearsal(tmp_path_factory):
  work = tmp_path_factory.mktemp('rehearsal')
  wheels = work / 'wheels'  # Nothing is installed with this interpreter: a placeholder travels.
  wheels.mkdir()
  (wheels / 'placeholder-1.0-py3-none-any.whl').write_bytes(b'')
  return work, gpu_suite.rehearse(sys.executable, work, train_minutes=0.25, wheel_dir=wheels)


def test_train_phase_measures_trains_stops_with_a_checkpoint_and_evaluates(rehearsal):
  work, results = rehearsal
  train = results['train']
  assert train['environment']['backend'] == 'cpu' and train['environment']['jax']
  paper = [l for l in train['speed'] if l.get('setting') == 'paper' and l.get('impl') == 'jax']
  assert paper and paper[0]['steps_per_s'] > 0 and paper[0]['compile_s'] > 0
  assert paper[0]['upsample_impl'] == 'adjoint'  # 'auto' on CPU.
  run = train['training']
  assert run['forms_from'] == 'paper'
  assert '--config.model.upsample_impl=adjoint' in run['args']
  # Stopped by SIGTERM once its minutes were up (or finished first): a checkpoint of the last step.
  checkpoints = work / 'device' / '.gpu' / 'work' / 'checkpoints'
  assert run['final_step'] in checkpointing.open_checkpoints(checkpoints).all_steps()  # Complete.
  assert run['train_pairs'] == 8 and run['epochs'] == pytest.approx(run['final_step'] / 8, abs=0.01)
  assert train['evaluation']['num_images'] == 4 and train['evaluation']['step'] == run['final_step']
  assert 0 < train['evaluation']['l1'] < 1
  table = (work / 'out_train' / 'results.md').read_text()
  assert '| paper |' in table and '| L1 | PSNR | SSIM | HP-L1 |' in table
  assert (work / 'train.log').read_text().rstrip().endswith(table.rstrip())  # Printed last.


def test_generate_phase_packs_every_output_and_scoring_here_matches_them(rehearsal):
  work, results = rehearsal
  generate = results['generate']
  assert generate['images'] == 4 and generate['packed']['format'] == 'lossless WebP'
  names = []
  for shard in generate['packed']['shards']:
    with tarfile.open(work / 'out_generate' / shard['file']) as tar:
      names += tar.getnames()
  assert sorted(names) == ['1.webp', '2.webp', '3.webp', '4.webp']
  with tarfile.open(work / 'out_generate' / 'logs.tar.gz') as tar:
    assert 'logs_generate/predict.log' in tar.getnames()
  score = results['score']
  assert score['num_images'] == 4 and score['targets_layout'] == 'side_by_side'
  # Lossless: what is scored here is what the GPU machine generated, pixel for pixel.
  generated = work / 'device' / '.gpu' / 'work' / 'generated'
  for name in ('1', '4'):
    np.testing.assert_array_equal(
        np.asarray(Image.open(work / 'generated' / f'{name}.webp')),
        np.asarray(Image.open(generated / f'{name}.png')),
    )
  # Outputs of the checkpoint the train phase evaluated (other dropout noise): close to its L1.
  assert score['metrics']['l1']['mean'] == pytest.approx(
      results['train']['evaluation']['l1'], abs=0.05
  )


def noise_pngs(folder, count, size=64):
  folder.mkdir()
  rng = np.random.default_rng(0)
  for i in range(count):
    Image.fromarray(rng.integers(0, 256, (size, size, 3), np.uint8)).save(folder / f'{i}.png')


def test_shards_respect_the_size_limits_lossless_first(tmp_path):
  noise_pngs(tmp_path / 'generated', 12)  # Noise: ~12 KB each, losslessly.
  out = tmp_path / 'out'
  out.mkdir()
  packed = gpu_suite.pack_outputs(
      tmp_path / 'generated', out, shard_bytes=40_000, total_bytes=10**6
  )
  assert packed['format'] == 'lossless WebP'
  shards = packed['shards']
  assert len(shards) > 1 and sum(s['images'] for s in shards) == 12
  for shard in shards:
    assert (out / shard['file']).stat().st_size <= 40_000


def test_outputs_that_do_not_fit_losslessly_go_as_the_best_format_that_fits(tmp_path):
  noise_pngs(tmp_path / 'generated', 12)
  out = tmp_path / 'out'
  out.mkdir()
  pngs = sorted((tmp_path / 'generated').glob('*.png'))
  one_shard = {
      name: gpu_suite._tar_bytes([len(d) for d in gpu_suite._encode_all(pngs, options)])  # pylint: disable=protected-access
      for name, options in gpu_suite.OUTPUT_FORMATS
  }
  limit = one_shard['lossless WebP'] - 1
  expected = next(name for name, size in one_shard.items() if size <= limit)
  packed = gpu_suite.pack_outputs(tmp_path / 'generated', out, shard_bytes=10**6, total_bytes=limit)
  assert packed['format'] == expected and expected.startswith('JPEG')
  assert (out / 'outputs_00.tar').stat().st_size == one_shard[expected] <= limit
  with tarfile.open(out / 'outputs_00.tar') as tar:
    assert sorted(tar.getnames())[:2] == ['0.jpg', '1.jpg']
  with pytest.raises(ValueError, match='do not fit'):
    gpu_suite.pack_outputs(tmp_path / 'generated', out, shard_bytes=10**6, total_bytes=1000)


def test_lossless_shards_that_do_not_fit_wait_for_fetch(tmp_path):
  noise_pngs(tmp_path / 'generated', 12)
  out, pending = tmp_path / 'out', tmp_path / 'work' / 'pending'
  out.mkdir()
  pngs = sorted((tmp_path / 'generated').glob('*.png'))
  lossless = sum(len(d) for d in gpu_suite._encode_all(pngs, gpu_suite.OUTPUT_FORMATS[0][1]))  # pylint: disable=protected-access
  packed = gpu_suite.pack_outputs(
      tmp_path / 'generated',
      out,
      shard_bytes=lossless // 3,
      total_bytes=lossless - 20_000,
      pending=pending,
  )
  assert packed['format'].startswith('JPEG') and len(packed['pending']) > 1
  assert sum(s['images'] for s in packed['pending']) == 12
  # --phase=fetch sends what fits a call (one shard at the least) and leaves the rest.
  fetched = tmp_path / 'fetched'
  fetched.mkdir()
  done = subprocess.run(
      [
          sys.executable,
          'tools/remote_gpu/gpu_suite.py',
          '--phase=fetch',
          f'--workdir={tmp_path / "work"}',
          f'--out={fetched}',
          f'--return_mib={lossless / 2 / 2**20}',
      ],
      cwd=ROOT,
      capture_output=True,
      text=True,
      timeout=120,
      check=False,
  )
  assert done.returncode == 0, done.stdout + done.stderr
  results = json.loads((fetched / 'results.json').read_text())
  assert results['sent'] and results['left']
  again = tmp_path / 'again'
  again.mkdir()
  subprocess.run(
      [
          sys.executable,
          'tools/remote_gpu/gpu_suite.py',
          '--phase=fetch',
          f'--workdir={tmp_path / "work"}',
          f'--out={again}',
      ],
      cwd=ROOT,
      check=True,
      capture_output=True,
      timeout=120,
  )
  names = []
  for folder in (fetched, again):
    for shard in folder.glob('lossless_*.tar'):
      with tarfile.open(shard) as tar:
        for member in tar.getmembers():
          names.append(member.name)
          image = Image.open(io.BytesIO(tar.extractfile(member).read()))
          np.testing.assert_array_equal(  # Lossless: the generated pixels themselves.
              np.asarray(image),
              np.asarray(Image.open(tmp_path / 'generated' / member.name.replace('.webp', '.png'))),
          )
  assert sorted(names) == sorted(f'{i}.webp' for i in range(12))


def test_generate_without_a_trained_run_names_the_workdir(tmp_path):
  done = subprocess.run(
      [
          sys.executable,
          'tools/remote_gpu/gpu_suite.py',
          '--phase=generate',
          f'--workdir={tmp_path / "work"}',
          f'--out={tmp_path / "out"}',
      ],
      cwd=ROOT,
      capture_output=True,
      text=True,
      timeout=120,
      check=False,
  )
  assert done.returncode != 0
  message = f'no trained run in {tmp_path / "work"}'
  assert message in done.stdout  # The table, printed last, says why.
  assert message in json.loads((tmp_path / 'out' / 'results.json').read_text())['error']


@pytest.mark.parametrize('recipe', sorted(gpu_suite.RECIPES))
def test_every_recipe_is_a_valid_config(recipe):
  from pix2pix_jax import config_checks  # pylint: disable=g-import-not-at-top

  config_file, overrides = gpu_suite.RECIPES[recipe]
  spec = importlib.util.spec_from_file_location('recipe_config', ROOT / config_file)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config()
  for override in overrides:  # As the command line parses them: to the field's type.
    key, value = override.split('=')
    section, name = key.split('.')
    kind = type(config[section][name])
    config[section][name] = value == 'True' if kind is bool else kind(value)
  config_checks.validate_config(config, 1)


def test_generate_uses_the_recipe_training_used(tmp_path, monkeypatch):
  work = tmp_path / 'work'
  work.mkdir()
  trained = ['--config=configs/maps_resnet.py', '--config.model.ngf=8']
  (work / 'gpu_suite.json').write_text(
      json.dumps({'recipe': 'resnet', 'config': trained, 'args': ['--config.data.name=folder']})
  )
  commands = []

  def run(command, log_path=None):
    commands.append(command)
    raise RuntimeError('stop here')

  monkeypatch.setattr(gpu_suite, '_run', run)
  # The generate command's flags: no --recipe (default 'paper').
  monkeypatch.setattr(
      gpu_suite,
      'FLAGS',
      types.SimpleNamespace(workdir=str(work), eval_dir='inputs', recipe='paper', override=[]),
  )
  with pytest.raises(RuntimeError, match='stop here'):
    gpu_suite.phase_generate({}, tmp_path, tmp_path)
  assert commands[0][2:4] == ['--mode=predict', f'--workdir={work}']
  assert commands[0][4:6] == trained and '--config.data.name=folder' in commands[0]


def test_commands_carry_each_phase_payload():
  done = subprocess.run(
      [sys.executable, 'tools/remote_gpu/gpu_suite.py', '--commands'],
      cwd=ROOT,
      capture_output=True,
      text=True,
      timeout=120,
      check=True,
  )
  for phase in ('train', 'generate'):
    assert f'carry [".gpu/{phase}"]' in done.stdout
    assert f'.gpu/{phase}/wheels/*.whl' in done.stdout
    assert f'tools/remote_gpu/gpu_suite.py --phase={phase} --out=$OUT' in done.stdout
  done = subprocess.run(
      [sys.executable, 'tools/remote_gpu/gpu_suite.py', '--commands', '--recipe=spade'],
      cwd=ROOT,
      capture_output=True,
      text=True,
      timeout=120,
      check=True,
  )
  assert 'gpu_suite.py --phase=train --out=$OUT --recipe=spade' in done.stdout
  assert 'gpu_suite.py --phase=generate --out=$OUT &&' not in done.stdout  # Generate: as trained.


def test_fastest_paper_forms_picks_by_speed_among_paper_faithful_settings():
  line = {
      'impl': 'jax',
      'batch_size': 1,
      'norm': 'batch',
      'compute_dtype': 'float32',
      'matmul_max_pixels': 0,
      'winograd_min_channels': None,
      'upsample_impl': 'conv_transpose',
  }
  lines = [
      line | {'setting': 'paper_device_loop', 'steps_per_s': 300.0},
      line
      | {
          'setting': 'paper_device_loop_cpu_forms',
          'steps_per_s': 250.0,
          'upsample_impl': 'adjoint',
          'matmul_max_pixels': 64,
          'winograd_min_channels': 64,
      },
      line
      | {
          'setting': 'paper_device_loop_bf16',
          'steps_per_s': 900.0,
          'compute_dtype': 'bfloat16',
      },  # Faster, but not the paper's numerics.
      {'setting': 'b64_instance_bf16', 'error': 'out of memory'},
  ]
  name, forms = gpu_suite.fastest_paper_forms(lines)
  assert name == 'paper_device_loop'
  assert forms == [
      '--config.model.upsample_impl=conv_transpose',
      '--config.model.matmul_max_pixels=0',
      '--config.model.conv_impl=xla',
  ]
  lines[1]['steps_per_s'] = 400.0
  assert gpu_suite.fastest_paper_forms(lines)[1][2] == '--config.model.conv_impl=winograd'
