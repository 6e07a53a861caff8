"""tools/remote_gpu/gpu_payload.py: payload contents, sizes and the size limit, on tiny own images."""

import json
import pathlib

import numpy as np
from PIL import Image
import pytest

from pix2pix_jax.data import images as image_lib, pipeline
from tools.remote_gpu import gpu_payload

_ROOT = pathlib.Path(__file__).resolve().parents[1]


def _pairs(folder_path: pathlib.Path, count: int, seed: int, suffix: str = '.png') -> list:
  """Writes `count` random 48×24 A|B images (halves 24×24); returns their arrays."""
  folder_path.mkdir(parents=True)
  rng = np.random.default_rng(seed)
  images = []
  for i in range(count):
    image = rng.integers(0, 256, (24, 48, 3), np.uint8)
    Image.fromarray(image).save(folder_path / f'{i + 1}{suffix}')
    images.append(image)
  return images


@pytest.fixture
def wheel_dir(tmp_path):
  wheels = tmp_path / 'fake_wheels'
  wheels.mkdir()
  (wheels / 'alpha-1.0-py3-none-any.whl').write_bytes(b'a' * 100)
  (wheels / 'beta_pkg-2.0-cp312-cp312-manylinux_2_28_x86_64.whl').write_bytes(b'b' * 50)
  return wheels


@pytest.fixture
def maps_dir(tmp_path):
  root = tmp_path / 'maps'
  _pairs(root / 'train', 3, seed=0, suffix='.jpg')
  _pairs(root / 'val', 2, seed=1, suffix='.jpg')
  (root / 'train' / '.DS_Store').write_bytes(b'junk')  # Hidden: not copied.
  return root


def test_train_payload_copies_both_splits_and_the_wheels(tmp_path, maps_dir, wheel_dir):
  out = tmp_path / 'payload'
  sizes = gpu_payload.build('train', out, maps_dir=maps_dir, wheel_dir=wheel_dir)

  sources = sorted(maps_dir.glob('[tv]*/*.jpg'))
  for source in sources:
    copy = out / 'data' / source.relative_to(maps_dir)
    assert copy.is_file() and not copy.is_symlink()
    assert copy.read_bytes() == source.read_bytes()
  assert not (out / 'data' / 'train' / '.DS_Store').exists()
  assert sorted(p.name for p in (out / 'wheels').iterdir()) == sorted(
      p.name for p in wheel_dir.iterdir()
  )
  assert sizes['wheels'] == 150
  assert sizes['data'] == sum(p.stat().st_size for p in sources)
  assert sizes['code'] > 0
  assert sizes['total'] == sizes['code'] + sizes['wheels'] + sizes['data']
  manifest = json.loads((out / 'payload.json').read_text())
  assert manifest['phase'] == 'train'
  assert manifest['counts'] == {'wheels': 2, 'train': 3, 'val': 2}
  assert manifest['sizes'] == sizes


@pytest.mark.parametrize('direction, half', [('BtoA', 1), ('AtoB', 0)])
def test_generate_payload_is_the_lossless_resized_input_half(tmp_path, wheel_dir, direction, half):
  images = _pairs(tmp_path / 'val', 3, seed=2)
  out = tmp_path / 'payload'
  sizes = gpu_payload.build(
      'generate',
      out,
      eval_dir=tmp_path / 'val',
      direction=direction,
      image_size=16,
      wheel_dir=wheel_dir,
  )

  inputs = sorted((out / 'data' / 'inputs').iterdir())
  assert [p.name for p in inputs] == ['1.webp', '2.webp', '3.webp']
  for path, image in zip(inputs, images):
    expected = pipeline.resize(image_lib.split_side_by_side(image, 'x')[half], 16)
    with Image.open(path) as decoded:
      assert decoded.format == 'WEBP'
      np.testing.assert_array_equal(np.asarray(decoded.convert('RGB')), expected)
  assert sizes['data'] == sum(p.stat().st_size for p in inputs)
  manifest = json.loads((out / 'payload.json').read_text())
  assert manifest['counts'] == {'wheels': 2, 'inputs': 3}
  assert (manifest['direction'], manifest['image_size']) == (direction, 16)


def test_rebuild_replaces_the_previous_payload(tmp_path, maps_dir, wheel_dir):
  out = tmp_path / 'payload'
  gpu_payload.build('train', out, maps_dir=maps_dir, wheel_dir=wheel_dir)
  (out / 'data' / 'train' / 'stale.jpg').write_bytes(b'old')
  (maps_dir / 'val' / '2.jpg').unlink()
  gpu_payload.build('train', out, maps_dir=maps_dir, wheel_dir=wheel_dir)
  assert not (out / 'data' / 'train' / 'stale.jpg').exists()
  assert sorted(p.name for p in (out / 'data' / 'val').iterdir()) == ['1.jpg']


def test_a_folder_that_is_not_a_payload_is_not_replaced(tmp_path, maps_dir, wheel_dir):
  out = tmp_path / 'precious'
  out.mkdir()
  (out / 'notes.txt').write_text('keep')
  with pytest.raises(FileExistsError, match='precious'):
    gpu_payload.build('train', out, maps_dir=maps_dir, wheel_dir=wheel_dir)
  assert (out / 'notes.txt').read_text() == 'keep'


def test_an_oversize_payload_is_refused_and_nothing_is_left(
    tmp_path, monkeypatch, maps_dir, wheel_dir
):
  monkeypatch.setattr(gpu_payload, 'LIMIT_BYTES', 1000)
  out = tmp_path / 'payload'
  with pytest.raises(gpu_payload.PayloadTooLarge, match=r'code .*wheels .*data .*1,000 bytes'):
    gpu_payload.build('train', out, maps_dir=maps_dir, wheel_dir=wheel_dir)
  assert sorted(p.name for p in tmp_path.iterdir()) == ['fake_wheels', 'maps']

  exit_status = gpu_payload.main(
      ['--phase=train', f'--maps_dir={maps_dir}', f'--out={out}', f'--wheel_dir={wheel_dir}']
  )
  assert exit_status == 1 and not out.exists()


def test_an_oversize_rebuild_keeps_the_previous_payload(tmp_path, monkeypatch, maps_dir, wheel_dir):
  out = tmp_path / 'payload'
  sizes = gpu_payload.build('train', out, maps_dir=maps_dir, wheel_dir=wheel_dir)
  monkeypatch.setattr(gpu_payload, 'LIMIT_BYTES', sizes['total'] - 1)
  with pytest.raises(gpu_payload.PayloadTooLarge) as refused:
    gpu_payload.build('generate', out, eval_dir=maps_dir / 'val', wheel_dir=wheel_dir)
  assert refused.value.sizes['total'] > sizes['total'] - 1
  assert json.loads((out / 'payload.json').read_text())['phase'] == 'train'


def test_two_versions_of_one_wheel_are_refused(tmp_path, maps_dir, wheel_dir):
  (wheel_dir / 'alpha-1.1-py3-none-any.whl').write_bytes(b'a')
  with pytest.raises(ValueError, match='alpha'):
    gpu_payload.build('train', tmp_path / 'payload', maps_dir=maps_dir, wheel_dir=wheel_dir)


def test_a_missing_split_is_named(tmp_path, wheel_dir):
  _pairs(tmp_path / 'maps' / 'train', 1, seed=0)
  with pytest.raises(FileNotFoundError, match='val'):
    gpu_payload.build(
        'train', tmp_path / 'payload', maps_dir=tmp_path / 'maps', wheel_dir=wheel_dir
    )


def test_install_command_names_the_payload_wheels_folder():
  expected = (
      'python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir '
      '--upgrade --target /tmp/site .gpu/train/wheels/*.whl && export PYTHONPATH=/tmp/site'
  )
  assert gpu_payload.install_command(_ROOT / '.gpu' / 'train') == expected
  assert gpu_payload.install_command('.gpu/train') == expected


def test_wheels_are_pinned_once_each():
  names = [spec.split('==')[0].lower() for spec in gpu_payload.WHEELS]
  assert all('==' in spec for spec in gpu_payload.WHEELS)
  assert len(set(names)) == len(names)
  assert 'tensorflow-datasets' not in names


def test_install_command_for_a_rehearsal():
  command = gpu_payload.install_command(
      '.gpu/generate', python='/venv/bin/python', target='/tmp/my site'
  )
  assert command.startswith('/venv/bin/python -m pip install ')
  assert "--target '/tmp/my site' .gpu/generate/wheels/*.whl" in command
  assert command.endswith("&& export PYTHONPATH='/tmp/my site'")


def test_travelling_files_are_the_working_tree_without_ignored_files():
  files = gpu_payload.travelling_files()
  assert 'main.py' in files and 'tools/remote_gpu/gpu_payload.py' in files
  assert not any(name.startswith(('.gpu/', '.venv/')) or '__pycache__' in name for name in files)
  assert gpu_payload.code_bytes() == sum((_ROOT / name).lstat().st_size for name in files)
