"""Tests for the TFDS `pix2pix` builder and `load_pix2pix` (pix2pix_jax.data.pix2pix_tfds).

`tfds.testing.DatasetBuilderTestCase` is not used: it subclasses `tf.test.TestCase` and reads
through `as_dataset` (tf.data), so it needs TensorFlow, which this project must not depend on.
Instead each test writes tiny side-by-side JPEGs (16×8: red left half, blue right half) into a
tmp dir and runs `download_and_prepare(file_format='array_record')` through `load_pix2pix`.
"""

import hashlib
import io
import logging
import pathlib
import pickle
import subprocess
import sys
import tarfile

import numpy as np
from PIL import Image
import pytest
import tensorflow_datasets as tfds

from pix2pix_jax.data import pix2pix_tfds as p2p

tfds.disable_progress_bar()

RED, BLUE = (230, 20, 20), (20, 20, 230)
COUNTS = {'train': 11, 'val': 2}  # 11: natural order puts train/10.jpg after train/9.jpg.


def _jpeg(width: int = 16, height: int = 8, left=RED, right=BLUE) -> bytes:
  pixels = np.zeros((height, width, 3), np.uint8)
  pixels[:, : width // 2] = left
  pixels[:, width // 2 :] = right
  buffer = io.BytesIO()
  # 4:4:4 so that no chroma block straddles the two halves.
  Image.fromarray(pixels).save(buffer, format='jpeg', quality=95, subsampling=0)
  return buffer.getvalue()


def _write_dataset(root: pathlib.Path, counts=None, **jpeg_kwargs) -> dict[str, bytes]:
  """Writes root/{split}/{1..n}.jpg; returns {file_name: bytes}."""
  files = {
      f'{split}/{i}.jpg': _jpeg(**jpeg_kwargs)
      for split, n in (counts or COUNTS).items()
      for i in range(1, n + 1)
  }
  for file_name, data in files.items():
    (root / file_name).parent.mkdir(parents=True, exist_ok=True)
    (root / file_name).write_bytes(data)
  return files


def _write_manifest(path: pathlib.Path, files: dict[str, bytes]) -> pathlib.Path:
  path.write_text(''.join(f'{hashlib.sha256(d).hexdigest()}  {f}\n' for f, d in files.items()))
  return path


def _write_tar(path: pathlib.Path, files: dict[str, bytes], top: str | None = 'maps'):
  with tarfile.open(path, 'w:gz') as archive:
    for file_name, data in files.items():
      info = tarfile.TarInfo(f'{top}/{file_name}' if top else file_name)
      info.size = len(data)
      archive.addfile(info, io.BytesIO(data))


@pytest.fixture
def originals(tmp_path, monkeypatch):
  """A tiny 'original' maps copy in tmp_path/src, and the manifest of it that the builder uses."""
  files = _write_dataset(tmp_path / 'src')
  manifest = _write_manifest(tmp_path / 'manifest.txt', files)
  monkeypatch.setattr(p2p, 'default_manifest_path', lambda name: manifest)
  return files


def _load(tmp_path, split='train', manual_dir=None, verify='full', name='maps'):
  return p2p.load_pix2pix(
      name,
      split,
      data_dir=str(tmp_path / 'tfds'),
      manual_dir=str(manual_dir) if manual_dir else None,
      verify=verify,
  )


def _assert_nothing_prepared(tmp_path, name='maps'):
  dataset_dir = tmp_path / 'tfds' / 'pix2pix' / name
  assert not dataset_dir.exists() or not any(dataset_dir.iterdir()), list(dataset_dir.iterdir())


def test_prepare_from_extracted_dir(tmp_path, originals):
  train = _load(tmp_path, 'train', tmp_path / 'src')
  val = _load(tmp_path, 'val')  # Already prepared: manual_dir not needed.
  assert (len(train), len(val)) == (COUNTS['train'], COUNTS['val'])
  assert [train[i]['file_name'] for i in range(len(train))] == [
      f'train/{i}.jpg' for i in range(1, 12)
  ]
  assert val[1]['file_name'] == 'val/2.jpg'
  assert len(_load(tmp_path, 'train[:3]')) == 3


def test_orientation_a_is_left_half_and_lossless(tmp_path, originals):
  example = _load(tmp_path, 'train', tmp_path / 'src')[0]
  assert example['A'].dtype == np.uint8 and example['A'].shape == (8, 8, 3)
  assert example['B'].shape == (8, 8, 3)
  np.testing.assert_allclose(example['A'].reshape(-1, 3).mean(0), RED, atol=12)
  np.testing.assert_allclose(example['B'].reshape(-1, 3).mean(0), BLUE, atol=12)
  # The halves are exactly the decoded JPEG pixels: stored as PNG, no second lossy step.
  decoded = np.asarray(Image.open(io.BytesIO(originals['train/1.jpg'])).convert('RGB'))
  np.testing.assert_array_equal(example['A'], decoded[:, :8])
  np.testing.assert_array_equal(example['B'], decoded[:, 8:])


@pytest.mark.parametrize(
    'layout', ['archive', 'dir_with_archive', 'archive_without_top_dir', 'dir_with_dataset_dir']
)
def test_manual_dir_layouts(tmp_path, originals, layout):
  holder = tmp_path / 'holder'
  holder.mkdir()
  if layout == 'dir_with_dataset_dir':
    (tmp_path / 'src').rename(holder / 'maps')
    manual_dir = holder
  else:
    _write_tar(
        holder / 'maps.tar.gz',
        originals,
        top=None if layout == 'archive_without_top_dir' else 'maps',
    )
    manual_dir = holder if layout == 'dir_with_archive' else holder / 'maps.tar.gz'
  train = _load(tmp_path, 'train', manual_dir)
  assert len(train) == COUNTS['train'] and len(_load(tmp_path, 'val')) == COUNTS['val']
  assert train[10]['file_name'] == 'train/11.jpg'
  np.testing.assert_allclose(train[0]['A'].reshape(-1, 3).mean(0), RED, atol=12)


def test_readable_without_tensorflow(tmp_path, originals):
  _load(tmp_path, 'train', tmp_path / 'src')
  # A fresh interpreter in which TensorFlow looks not installed, even where it is.
  code = (
      'import sys\n'
      'class HideTensorFlow:\n'
      '  def __init__(self, finder):\n'
      '    self.finder = finder\n'
      '  def find_spec(self, name, path=None, target=None):\n'
      "    if name.split('.')[0] == 'tensorflow':\n"
      '      return None\n'
      '    return self.finder.find_spec(name, path, target)\n'
      'sys.meta_path[:] = [HideTensorFlow(f) for f in sys.meta_path]\n'
      'from pix2pix_jax.data import pix2pix_tfds as p\n'
      f"s = p.load_pix2pix('maps', 'val', data_dir={str(tmp_path / 'tfds')!r}, verify='off')\n"
      "print(len(s), s[1]['file_name'], s[1]['A'].shape, 'tensorflow' in sys.modules)\n"
  )
  result = subprocess.run(
      [sys.executable, '-c', code],
      capture_output=True,
      text=True,
      cwd=pathlib.Path(__file__).parents[1],
      check=False,
  )
  assert result.returncode == 0, result.stderr[-3000:]
  assert '2 val/2.jpg (8, 8, 3) False' in result.stdout


def test_source_pickles_and_batch_reads(tmp_path, originals):
  source = pickle.loads(pickle.dumps(_load(tmp_path, 'train', tmp_path / 'src')))
  assert [e['file_name'] for e in source.__getitems__([9, 0])] == ['train/10.jpg', 'train/1.jpg']


def test_full_names_corrupted_file_and_prepares_nothing(tmp_path, originals):
  path = tmp_path / 'src' / 'train' / '7.jpg'
  data = bytearray(path.read_bytes())
  data[len(data) // 2] ^= 0x01
  path.write_bytes(bytes(data))
  with pytest.raises(p2p.VerificationError, match=r'content differs.*\n\s+train/7\.jpg: sha256'):
    _load(tmp_path, 'train', tmp_path / 'src')
  _assert_nothing_prepared(tmp_path)


def test_full_names_missing_file(tmp_path, originals):
  (tmp_path / 'src' / 'val' / '2.jpg').unlink()
  with pytest.raises(p2p.VerificationError, match=r'missing \(1\):\n\s+val/2\.jpg'):
    _load(tmp_path, 'train', tmp_path / 'src')
  _assert_nothing_prepared(tmp_path)


def test_full_rejects_file_not_in_manifest(tmp_path, originals):
  (tmp_path / 'src' / 'train' / '99.jpg').write_bytes(_jpeg())
  with pytest.raises(p2p.VerificationError, match=r'not in the manifest \(1\):\n\s+train/99\.jpg'):
    _load(tmp_path, 'train', tmp_path / 'src')


def test_present_accepts_partial_copy_but_not_corrupted_file(tmp_path, originals):
  for i in range(4, 12):
    (tmp_path / 'src' / 'train' / f'{i}.jpg').unlink()
  (tmp_path / 'src' / 'val' / '1.jpg').write_bytes(_jpeg(left=(200, 0, 0)))
  with pytest.raises(p2p.VerificationError, match=r'content differs.*\n\s+val/1\.jpg'):
    _load(tmp_path, 'train', tmp_path / 'src', verify='present')
  _assert_nothing_prepared(tmp_path)
  (tmp_path / 'src' / 'val' / '1.jpg').write_bytes(originals['val/1.jpg'])
  assert len(_load(tmp_path, 'train', tmp_path / 'src', verify='present')) == 3


def test_off_accepts_resized_copy_and_logs(tmp_path, originals, caplog):
  resized = tmp_path / 'resized'
  _write_dataset(resized, width=32, height=16)
  with caplog.at_level(logging.WARNING):
    train = _load(tmp_path, 'train', resized, verify='off')
  assert train[0]['A'].shape == (16, 16, 3)
  assert "verify='off'" in caplog.text and 'not checked' in caplog.text


def test_stronger_verify_refuses_a_weaker_prepared_copy(tmp_path, originals):
  _load(tmp_path, 'train', tmp_path / 'src', verify='off')
  with pytest.raises(ValueError, match=r"verify='off', weaker than the requested verify='full'"):
    _load(tmp_path, 'val', verify='full')
  assert len(_load(tmp_path, 'val', verify='off')) == COUNTS['val']


def test_nothing_to_verify_without_manifest(tmp_path, caplog):
  _write_dataset(tmp_path / 'facades', counts={'train': 2, 'val': 1, 'test': 1})
  with caplog.at_level(logging.INFO):
    test = _load(tmp_path, 'test', tmp_path / 'facades', name='facades')
  assert len(test) == 1 and 'nothing to verify' in caplog.text


@pytest.mark.parametrize('width,height', [(15, 8), (24, 8), (16, 16)])
def test_not_two_to_one_is_rejected_naming_the_file(tmp_path, width, height):
  _write_dataset(tmp_path / 'src')
  (tmp_path / 'src' / 'val' / '2.jpg').write_bytes(_jpeg(width=width, height=height))
  with pytest.raises(ValueError, match=rf'val/2\.jpg: {width}×{height} is not a side-by-side'):
    _load(tmp_path, 'train', tmp_path / 'src', verify='off')
  _assert_nothing_prepared(tmp_path)


def test_unreadable_image_is_rejected_naming_the_file(tmp_path):
  _write_dataset(tmp_path / 'src')
  (tmp_path / 'src' / 'train' / '3.jpg').write_bytes(b'not a jpeg')
  with pytest.raises(ValueError, match=r'train/3\.jpg: not a readable image'):
    _load(tmp_path, 'train', tmp_path / 'src', verify='off')


def test_split_without_images_is_an_error(tmp_path):
  _write_dataset(tmp_path / 'src', counts={'train': 2})
  with pytest.raises(p2p.SourceNotFoundError, match=r"no images for split\(s\) \['val'\]"):
    _load(tmp_path, 'train', tmp_path / 'src', verify='off')


def test_unknown_split_and_dataset(tmp_path):
  with pytest.raises(ValueError, match=r"no split 'test'; available: \['train', 'val'\]"):
    _load(tmp_path, 'test')
  with pytest.raises(ValueError, match=r"unknown pix2pix dataset 'mapz'.*'maps'"):
    _load(tmp_path, name='mapz')
  with pytest.raises(ValueError, match=r"verify='all'.*\('full', 'present', 'off'\)"):
    _load(tmp_path, verify='all')
  assert not (tmp_path / 'tfds').exists()


def test_bad_manual_dir_is_named(tmp_path, caplog):
  caplog.set_level(logging.INFO)
  (tmp_path / 'empty').mkdir()
  with pytest.raises(p2p.SourceNotFoundError, match=r'empty holds none of the accepted layouts'):
    _load(tmp_path, 'train', tmp_path / 'empty')
  with pytest.raises(p2p.SourceNotFoundError, match=r'nowhere does not exist'):
    _load(tmp_path, 'train', tmp_path / 'nowhere')
  # Named before TFDS starts: no "Downloading and preparing", no empty dataset folders left.
  assert 'Downloading and preparing' not in caplog.text and 'Preparing pix2pix' not in caplog.text
  assert not (tmp_path / 'tfds' / 'pix2pix').exists()


def _offline(*args, **kwargs):
  raise OSError('Name or service not known')


@pytest.mark.parametrize('failing', ['reachability_check', 'download'])
def test_offline_error_says_what_to_download_and_where(tmp_path, monkeypatch, failing):
  if failing == 'download':
    monkeypatch.setattr(p2p, 'check_reachable', lambda url: None)
    monkeypatch.setattr(tfds.download.DownloadManager, 'download', _offline)
  else:
    monkeypatch.setattr(p2p, 'check_reachable', _offline)
  with pytest.raises(p2p.SourceNotFoundError) as error:
    _load(tmp_path, 'train')
  message = str(error.value)
  for expected in (
      'http://efrosgans.eecs.berkeley.edu/pix2pix/datasets/maps.tar.gz',
      'Name or service not known',
      '--config.data.manual_dir=DIR',
      'DIR/maps.tar.gz',
      'DIR/{train/, val/}',
      'DIR/maps/{train/, val/}',
  ):
    assert expected in message
  _assert_nothing_prepared(tmp_path)
