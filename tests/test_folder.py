"""Paired folders: both layouts, natural order, mode conversion and every bad input named."""

import logging
import os
import pickle
import re

import numpy as np
import pytest
from PIL import Image, ImageFile

from pix2pix_jax.data import folder, images
from pix2pix_jax.data.folder import FolderLayoutError, PairedFolder
from pix2pix_jax.data.images import BadImageError


def save(path, array_or_image, **kwargs):
  """Writes an image (array or PIL), creating its folder."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  image = (
      array_or_image if isinstance(array_or_image, Image.Image) else Image.fromarray(array_or_image)
  )
  image.save(path, **kwargs)


def solid(width, height, value):
  return np.full((height, width, 3), value, np.uint8)


def noise(width, height, seed=0):
  return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def touch(path, data=b''):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, 'wb') as f:
    f.write(data)


# ----------------------------------------------------------------------------------------------
# Layouts


def test_side_by_side_left_half_is_a(tmp_path):
  ab = np.concatenate([noise(5, 3, seed=1), noise(5, 3, seed=2)], axis=1)  # non-square halves
  save(tmp_path / 'train' / '001.png', ab)
  source = PairedFolder(str(tmp_path), 'train')
  assert len(source) == 1 and source.layout == folder.SIDE_BY_SIDE
  item = source[0]
  np.testing.assert_array_equal(item['A'], noise(5, 3, seed=1))
  np.testing.assert_array_equal(item['B'], noise(5, 3, seed=2))
  assert item['file_name'] == 'train/001.png'
  for key in ('A', 'B'):
    assert item[key].dtype == np.uint8
    assert item[key].flags.c_contiguous and item[key].flags.writeable


@pytest.mark.parametrize(
    'layout,dir_a,dir_b',
    [
        (folder.A_B_SPLIT, 'A/val', 'B/val'),
        (folder.SPLIT_A_B, 'val/A', 'val/B'),
    ],
)
def test_two_folders_match_by_stem(tmp_path, layout, dir_a, dir_b):
  # A as PNG, B as BMP: both lossless, paired by the name without extension.
  for i in (1, 2):
    save(tmp_path / dir_a / f'img{i}.png', noise(6, 4, seed=i))
    save(tmp_path / dir_b / f'img{i}.bmp', solid(6, 4, 10 * i))
  source = PairedFolder(str(tmp_path), 'val')
  assert len(source) == 2 and source.layout == layout
  item = source[1]
  np.testing.assert_array_equal(item['A'], noise(6, 4, seed=2))
  np.testing.assert_array_equal(item['B'], solid(6, 4, 20))
  assert item['file_name'] == f'{dir_a}/img2.png'


def test_jpeg_photos_pair_with_png_masks(tmp_path):
  save(tmp_path / 'A' / 'train' / 'x.JPG', solid(8, 8, 200), quality=95)
  save(tmp_path / 'B' / 'train' / 'x.png', solid(8, 8, 0))
  item = PairedFolder(str(tmp_path), 'train')[0]
  assert abs(int(item['A'].mean()) - 200) <= 2 and item['B'].max() == 0


def test_natural_sort_order(tmp_path):
  for i in (10, 2, 1, 9, 100):
    save(tmp_path / 'A' / 'train' / f'{i}.png', solid(2, 2, i))
    save(tmp_path / 'B' / 'train' / f'{i}.png', solid(2, 2, i))
  source = PairedFolder(str(tmp_path), 'train')
  assert [source[i]['A'][0, 0, 0] for i in range(len(source))] == [1, 2, 9, 10, 100]
  assert [source[i]['file_name'] for i in range(2)] == ['A/train/1.png', 'A/train/2.png']
  assert images.natural_key('img2.jpg') < images.natural_key('img10.jpg')
  assert images.natural_key('b.jpg') < images.natural_key('C.jpg')


def test_indexing(tmp_path):
  for i in range(3):
    save(tmp_path / 'train' / f'{i}.png', solid(4, 2, i))
  source = PairedFolder(str(tmp_path), 'train')
  assert source[np.int64(-1)]['file_name'] == 'train/2.png'
  with pytest.raises(IndexError):
    source[3]
  # Grain's worker processes receive the source pickled.
  np.testing.assert_array_equal(pickle.loads(pickle.dumps(source))[1]['A'], source[1]['A'])


def test_available_splits(tmp_path):
  save(tmp_path / 'train' / '1.png', solid(4, 2, 0))
  save(tmp_path / 'test' / 'A' / '1.png', solid(2, 2, 0))
  save(tmp_path / 'test' / 'B' / '1.png', solid(2, 2, 0))
  for half in ('A', 'B'):
    save(tmp_path / half / 'val2' / '1.png', solid(2, 2, 0))
    save(tmp_path / half / 'val10' / '1.png', solid(2, 2, 0))
  save(tmp_path / 'A' / 'only_a' / '1.png', solid(2, 2, 0))
  touch(tmp_path / 'notes' / 'readme.txt')  # no images: not a split
  save(tmp_path / '.cache' / '1.png', solid(4, 2, 0))  # hidden
  assert folder.available_splits(str(tmp_path)) == ['test', 'train', 'val2', 'val10']


# ----------------------------------------------------------------------------------------------
# Bad layouts: errors name the folder


def test_missing_root(tmp_path):
  with pytest.raises(FolderLayoutError, match=re.escape(f'{tmp_path}/nope does not exist')):
    PairedFolder(str(tmp_path / 'nope'), 'train')
  touch(tmp_path / 'file')
  with pytest.raises(FolderLayoutError, match='is not a folder'):
    folder.available_splits(str(tmp_path / 'file'))


def test_missing_split_lists_what_is_there(tmp_path):
  save(tmp_path / 'trainA' / '1.png', solid(2, 2, 0))
  save(tmp_path / 'val' / '1.png', solid(4, 2, 0))
  with pytest.raises(FolderLayoutError) as error:
    PairedFolder(str(tmp_path), 'train')
  message = str(error.value)
  assert "split 'train' not found in" in message and str(tmp_path) in message
  assert "available splits: ['trainA', 'val']" in message and 'ROOT/A/SPLIT/' in message


def test_empty_split_names_folder_and_contents(tmp_path):
  touch(tmp_path / 'train' / 'notes.txt')
  touch(tmp_path / 'train' / '.DS_Store')
  with pytest.raises(FolderLayoutError) as error:
    PairedFolder(str(tmp_path), 'train')
  message = str(error.value)
  assert f'no image files in {tmp_path}/train' in message
  assert 'notes.txt' in message and '.DS_Store' not in message
  os.makedirs(tmp_path / 'A' / 'val')
  os.makedirs(tmp_path / 'B' / 'val')
  with pytest.raises(FolderLayoutError, match=re.escape(f'no image files in {tmp_path}/A/val or')):
    PairedFolder(str(tmp_path), 'val')


def test_a_and_b_without_split_folders(tmp_path):
  save(tmp_path / 'A' / '1.png', solid(2, 2, 0))
  save(tmp_path / 'B' / '1.png', solid(2, 2, 0))
  assert folder.available_splits(str(tmp_path)) == []
  with pytest.raises(FolderLayoutError, match=re.escape(f'move them into {tmp_path}/A/train/')):
    PairedFolder(str(tmp_path), 'train')


@pytest.mark.parametrize('present,missing', [('A/train', 'B/train'), ('train/B', 'train/A')])
def test_one_of_two_folders_missing(tmp_path, present, missing):
  save(tmp_path / present / '1.png', solid(2, 2, 0))
  with pytest.raises(
      FolderLayoutError, match=re.escape(f'found {tmp_path}/{present} but not {tmp_path}/{missing}')
  ):
    PairedFolder(str(tmp_path), 'train')


def test_mismatched_names_listed_with_counts(tmp_path):
  for i in range(15):
    save(tmp_path / 'A' / 'train' / f'{i}.png', solid(2, 2, 0))
  for i in (0, 1, 2, 77):
    save(tmp_path / 'B' / 'train' / f'{i}.jpg', solid(2, 2, 0))
  with pytest.raises(FolderLayoutError) as error:
    PairedFolder(str(tmp_path), 'train')
  message = str(error.value)
  assert f'{tmp_path}/A/train' in message and f'{tmp_path}/B/train' in message
  listed = ', '.join(f'{i}.png' for i in range(3, 13))
  assert f'12 only in A: {listed}, ...' in message
  assert '1 only in B: 77.jpg' in message


def test_duplicate_stem_is_ambiguous(tmp_path):
  save(tmp_path / 'train' / 'A' / 'x.png', solid(2, 2, 0))
  save(tmp_path / 'train' / 'A' / 'x.jpg', solid(2, 2, 0))
  save(tmp_path / 'train' / 'B' / 'x.png', solid(2, 2, 0))
  with pytest.raises(FolderLayoutError, match=r'A has both x\.(png|jpg) and x\.(png|jpg)'):
    PairedFolder(str(tmp_path), 'train')


def test_two_layouts_for_one_split_is_an_error(tmp_path):
  save(tmp_path / 'train' / '1.png', solid(4, 2, 0))
  save(tmp_path / 'A' / 'train' / '1.png', solid(2, 2, 0))
  save(tmp_path / 'B' / 'train' / '1.png', solid(2, 2, 0))
  with pytest.raises(FolderLayoutError, match="split 'train' of .* is ambiguous"):
    PairedFolder(str(tmp_path), 'train')


def test_non_image_files_skipped_with_one_warning(tmp_path, caplog):
  for name in ('1.png', '2.PNG'):
    save(tmp_path / 'train' / name, solid(4, 2, 0))
  for name in ('notes.txt', '.DS_Store', '._1.png', 'Thumbs.db', 'desktop.ini', 'labels.csv'):
    touch(tmp_path / 'train' / name)
  os.makedirs(tmp_path / 'train' / 'extra')
  with caplog.at_level(logging.WARNING, logger=folder.__name__):
    source = PairedFolder(str(tmp_path), 'train')
  assert len(source) == 2
  (record,) = caplog.records
  assert 'skipped 3 non-image entries' in record.getMessage()
  assert 'train/extra/, train/labels.csv, train/notes.txt' in record.getMessage()
  for hidden in ('DS_Store', '._1', 'Thumbs', 'desktop'):
    assert hidden not in record.getMessage()


def test_construction_does_not_open_images(tmp_path):
  touch(tmp_path / 'train' / 'broken.jpg', b'not a jpeg')
  assert len(PairedFolder(str(tmp_path), 'train')) == 1


# ----------------------------------------------------------------------------------------------
# Bad images: errors on access name the file


def jpeg_bytes(tmp_path, width=64, height=32):
  save(tmp_path / 'src.jpg', noise(width, height), quality=90)
  return (tmp_path / 'src.jpg').read_bytes()


@pytest.mark.parametrize('kind', ['garbage', 'truncated_jpeg', 'truncated_png', 'empty'])
def test_corrupt_file_named_on_access(tmp_path, kind):
  assert not ImageFile.LOAD_TRUNCATED_IMAGES
  path = tmp_path / 'train' / 'bad.jpg'
  if kind == 'garbage':
    touch(path, b'\xff\xd8\xff\xe0' + os.urandom(200))
  elif kind == 'truncated_jpeg':
    data = jpeg_bytes(tmp_path)
    touch(path, data[: len(data) // 2])
  elif kind == 'truncated_png':
    save(tmp_path / 'src.png', noise(64, 32))
    path = tmp_path / 'train' / 'bad.png'
    touch(path, (tmp_path / 'src.png').read_bytes()[:3000])
  else:
    touch(path)
  source = PairedFolder(str(tmp_path), 'train')
  with pytest.raises(BadImageError, match=re.escape(f'cannot decode image {path}')) as error:
    source[0]
  assert error.value.paths == (str(path),)
  assert isinstance(error.value, ValueError)


def test_deleted_after_listing_named(tmp_path):
  save(tmp_path / 'train' / '1.png', solid(4, 2, 0))
  source = PairedFolder(str(tmp_path), 'train')
  os.remove(tmp_path / 'train' / '1.png')
  with pytest.raises(BadImageError, match=re.escape(f'{tmp_path}/train/1.png')):
    source[0]


def test_truncation_flag_warns(tmp_path, caplog, monkeypatch):
  save(tmp_path / 'train' / '1.png', solid(4, 2, 0))
  monkeypatch.setattr(ImageFile, 'LOAD_TRUNCATED_IMAGES', True)
  with caplog.at_level(logging.WARNING, logger=folder.__name__):
    PairedFolder(str(tmp_path), 'train')
  assert 'LOAD_TRUNCATED_IMAGES is True' in caplog.text


def test_odd_width_side_by_side_named(tmp_path):
  save(tmp_path / 'train' / 'odd.png', solid(7, 3, 0))
  expected = re.escape(f'{tmp_path}/train/odd.png is 7×3') + '.* even width'
  with pytest.raises(BadImageError, match=expected):
    PairedFolder(str(tmp_path), 'train')[0]


def test_pair_of_different_sizes_names_both(tmp_path):
  save(tmp_path / 'A' / 'train' / 'x.png', solid(4, 3, 0))
  save(tmp_path / 'B' / 'train' / 'x.png', solid(4, 4, 0))
  source = PairedFolder(str(tmp_path), 'train')
  with pytest.raises(
      BadImageError,
      match=re.escape(f'{tmp_path}/A/train/x.png is 4×3, {tmp_path}/B/train/x.png is 4×4'),
  ) as error:
    source[0]
  assert len(error.value.paths) == 2


def test_exif_orientation_applied(tmp_path):
  # Stored 8 wide × 4 tall, left half dark; orientation 6 = rotate 90° clockwise to display, so
  # it shows 4 wide × 8 tall with the dark half on top.
  stored = np.concatenate([solid(4, 4, 0), solid(4, 4, 255)], axis=1)
  exif = Image.Exif()
  exif[0x0112] = 6
  save(tmp_path / 'A' / 'train' / 'phone.jpg', stored, exif=exif, quality=95)
  save(tmp_path / 'B' / 'train' / 'phone.png', solid(4, 8, 128))
  a = PairedFolder(str(tmp_path), 'train')[0]['A']
  assert a.shape == (8, 4, 3)
  assert a[:4].mean() < 30 and a[4:].mean() > 225


# ----------------------------------------------------------------------------------------------
# Mode conversion


def rgb(image):
  out = images.to_rgb_uint8(image, 'x.png')
  assert out.dtype == np.uint8 and out.shape == image.size[::-1] + (3,)
  return out


def test_gray_and_bilevel_replicated():
  gray = np.array([[0, 7, 255]], np.uint8)
  np.testing.assert_array_equal(rgb(Image.fromarray(gray, 'L')), np.repeat(gray[..., None], 3, 2))
  bilevel = Image.fromarray(np.array([[True, False]]))
  assert bilevel.mode == '1'
  np.testing.assert_array_equal(rgb(bilevel)[0], [[255, 255, 255], [0, 0, 0]])


def test_alpha_dropped_keeping_stored_colour():
  rgba = np.array([[[10, 20, 30, 0], [40, 50, 60, 255]]], np.uint8)
  np.testing.assert_array_equal(rgb(Image.fromarray(rgba, 'RGBA')), rgba[..., :3])
  la = Image.fromarray(np.array([[[90, 0], [200, 128]]], np.uint8), 'LA')
  np.testing.assert_array_equal(rgb(la)[0], [[90] * 3, [200] * 3])


def test_palette_looked_up(tmp_path):
  image = Image.fromarray(np.array([[0, 1, 1]], np.uint8), 'P')
  image.putpalette([10, 20, 30, 200, 100, 50] + [0] * 762)
  np.testing.assert_array_equal(rgb(image)[0], [[10, 20, 30], [200, 100, 50], [200, 100, 50]])
  save(tmp_path / 'p.png', image, transparency=0)  # transparent palette entry: colour kept
  with Image.open(tmp_path / 'p.png') as loaded:
    np.testing.assert_array_equal(rgb(loaded)[0, 0], [10, 20, 30])


@pytest.mark.parametrize('mode', ['I;16', 'I;16B', 'I'])
def test_sixteen_bit_scaled_not_clipped(mode):
  values = np.array([[0, 128, 257, 32768, 65535]])
  if mode == 'I':
    image = Image.fromarray(values.astype(np.int32))
  else:
    dtype = '>u2' if mode == 'I;16B' else '<u2'
    image = Image.frombytes(mode, (5, 1), values.astype(dtype).tobytes())
  assert image.mode == mode
  out = rgb(image)
  np.testing.assert_array_equal(out[0, :, 0], [0, 0, 1, 128, 255])
  np.testing.assert_array_equal(out[..., 0], out[..., 2])


def test_sixteen_bit_png_through_folder_keeps_sixteen_bits(tmp_path):
  # Folder data keeps 16-bit precision (replicated to 3 channels); to_rgb_uint8's 8-bit scaling
  # above is the TFDS builder's.
  values = np.array([[0, 32769, 65535, 65535]], np.uint16)
  save(tmp_path / 'train' / 'deep.png', values)
  item = PairedFolder(str(tmp_path), 'train')[0]
  assert item['A'].dtype == np.uint16 and item['A'].shape == (1, 2, 3)
  np.testing.assert_array_equal(item['A'][0, :, 1], [0, 32769])
  np.testing.assert_array_equal(item['B'][0, :, 1], [65535, 65535])


def test_cmyk_converted():
  cmyk = Image.new('CMYK', (1, 1), (0, 255, 255, 0))  # no black, full magenta + yellow: red
  np.testing.assert_array_equal(rgb(cmyk)[0, 0], [255, 0, 0])


def test_float_images_refused_naming_file():
  with pytest.raises(BadImageError, match='x.png: 32-bit float'):
    images.to_rgb_uint8(Image.new('F', (2, 2)), 'x.png')


# ----------------------------------------------------------------------------------------------
# The check before training: every file read once, every problem reported together


def side_by_side_folder(root, split='train', count=3, size=8):
  for i in range(count):
    save(root / split / f'{i}.png', noise(2 * size, size, seed=i))


def test_check_lists_every_bad_file_with_its_reason(tmp_path):
  side_by_side_folder(tmp_path)
  data = jpeg_bytes(tmp_path)
  touch(tmp_path / 'train' / 'truncated.jpg', data[: len(data) // 2])
  touch(tmp_path / 'train' / 'text.png', b'this is not a PNG')
  save(tmp_path / 'train' / 'odd.png', solid(7, 3, 0))
  source = PairedFolder(str(tmp_path), 'train')
  with pytest.raises(BadImageError) as error:
    source.check(num_threads=2)
  message = str(error.value)
  bad = [f'{tmp_path}/train/{name}' for name in ('odd.png', 'text.png', 'truncated.jpg')]
  assert sorted(error.value.paths) == bad
  assert '3 of 6 pairs' in message and "on_bad_file='skip'" in message
  assert f'cannot decode image {bad[2]}: OSError: image file is truncated' in message
  assert f'cannot decode image {bad[1]}: UnidentifiedImageError' in message
  assert f'{bad[0]} is 7×3: a side-by-side A|B image needs an even width' in message
  assert len(source) == 6  # Nothing dropped.


def test_check_skip_drops_bad_pairs_with_one_warning(tmp_path, caplog):
  for i in range(3):
    save(tmp_path / 'A' / 'val' / f'{i}.png', solid(8, 8, i))
    save(tmp_path / 'B' / 'val' / f'{i}.jpg', solid(8, 8, i))
  touch(tmp_path / 'B' / 'val' / '1.jpg', b'\xff\xd8\xff\xe0broken')
  save(tmp_path / 'A' / 'val' / '2.png', solid(8, 6, 0))  # A and B differ in size.
  source = PairedFolder(str(tmp_path), 'val')
  with caplog.at_level(logging.WARNING, logger=folder.__name__):
    kept = source.check(on_bad_file='skip', transform=lambda example: example['file_name'])
  assert kept == ['A/val/0.png'] and len(source) == 1 and source[0]['file_name'] == 'A/val/0.png'
  (record,) = caplog.records
  message = record.getMessage()
  assert '2 of 3 pairs' in message and 'left out' in message
  assert f'cannot decode image {tmp_path}/B/val/1.jpg' in message
  assert f'{tmp_path}/A/val/2.png is 8×6, {tmp_path}/B/val/2.jpg is 8×8' in message


def test_check_skip_with_nothing_left_is_an_error(tmp_path):
  touch(tmp_path / 'train' / 'a.png', b'not a png')
  with pytest.raises(BadImageError, match='no pair is left'):
    PairedFolder(str(tmp_path), 'train').check(on_bad_file='skip')


def test_check_warns_once_about_images_not_2_to_1(tmp_path, caplog):
  side_by_side_folder(tmp_path, size=8)
  save(tmp_path / 'train' / 'wide.png', noise(48, 8))  # 3:1: halves 24×8
  save(tmp_path / 'train' / 'tall.png', noise(8, 8))  # 1:1: halves 4×8
  with caplog.at_level(logging.WARNING, logger=folder.__name__):
    PairedFolder(str(tmp_path), 'train').check()
  (record,) = caplog.records
  assert (
      '2 side-by-side images are not 2:1' in record.getMessage()
      and 'train/tall.png (8×8), train/wide.png (48×8)' in record.getMessage()
  )


def test_a_stale_exif_turn_is_named_in_the_not_2_to_1_warning(tmp_path, caplog):
  """An upright 2:1 pair tagged 'rotate 90' (Orientation 6) decodes 1:2, as viewers show it: the
  warning names the tag and the file, so the user knows what to strip."""
  side_by_side_folder(tmp_path, size=8)
  exif = Image.Exif()
  exif[0x0112] = 6  # ExifTags.Base.Orientation: rotate 90° clockwise to view.
  Image.fromarray(noise(16, 8)).save(tmp_path / 'train' / 'turned.jpg', exif=exif)
  with caplog.at_level(logging.WARNING, logger=folder.__name__):
    PairedFolder(str(tmp_path), 'train').check()
  (record,) = caplog.records
  message = record.getMessage()
  assert '1 side-by-side images are not 2:1' in message and 'train/turned.jpg (8×16)' in message
  assert (
      '1 of them carry an EXIF Orientation tag' in message and 'exiftool -Orientation=' in message
  )
  assert images.exif_orientation(tmp_path / 'train' / 'turned.jpg') == 6
  assert images.exif_orientation(tmp_path / 'train' / '0.png') == 1


def test_check_warns_once_about_pairs_below_image_size(tmp_path, caplog):
  side_by_side_folder(tmp_path, count=2, size=32)
  save(tmp_path / 'train' / 'small.png', noise(32, 16))
  save(tmp_path / 'train' / 'narrow.png', noise(40, 40))  # halves 20×40
  with caplog.at_level(logging.WARNING, logger=folder.__name__):
    PairedFolder(str(tmp_path), 'train').check(image_size=32)
  messages = [r.getMessage() for r in caplog.records]
  (small,) = [m for m in messages if 'smaller than' in m]
  assert (
      '2 pairs have A and B smaller than config.data.image_size=32' in small
      and 'train/narrow.png (20×40), train/small.png (16×16)' in small
  )


def test_check_required_size_makes_small_pairs_bad(tmp_path):
  side_by_side_folder(tmp_path, count=1, size=32)
  save(tmp_path / 'train' / 'small.png', noise(32, 16))
  with pytest.raises(
      BadImageError,
      match=re.escape(
          f'{tmp_path}/train/small.png: A and B are 16×16, smaller than the 32×32 this run needs'
      ),
  ):
    PairedFolder(str(tmp_path), 'train').check(required_size=32)


def test_pairs_the_check_decoded_at_cached_size_are_not_decoded_again(tmp_path):
  from configs import test as test_config  # pylint: disable=g-import-not-at-top
  from pix2pix_jax.data import pipeline  # pylint: disable=g-import-not-at-top

  side_by_side_folder(tmp_path, 'train', count=2, size=36)  # load_size: train pairs cached as read
  side_by_side_folder(tmp_path, 'val', count=2, size=36)  # resized to image_size 32 on first use
  config = test_config.get_config().data
  config.name, config.folder_dir = 'folder', str(tmp_path)
  train, evaluation = (pipeline.create_source(config, split, seed=0) for split in ('train', 'eval'))
  for path in tmp_path.glob('*/*.png'):
    path.unlink()
  np.testing.assert_array_equal(train[1]['A'], noise(72, 36, seed=1)[:, :36])
  with pytest.raises(BadImageError, match='cannot decode'):
    evaluation[0]
  with pytest.raises(BadImageError, match='cannot decode'):
    train.uncached()[0]  # A source without the cache reads the files.


def write_png16(path, samples):
  """A 16-bit PNG of `samples` (H, W, C) written by hand: Pillow cannot write 16-bit colour."""
  import struct  # pylint: disable=g-import-not-at-top
  import zlib  # pylint: disable=g-import-not-at-top

  height, width, channels = samples.shape
  rows = b''.join(b'\0' + samples[y].astype('>u2').tobytes() for y in range(height))

  def chunk(kind, data):
    return struct.pack('>I', len(data)) + kind + data + struct.pack('>I', zlib.crc32(kind + data))

  colour_type = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
  header = struct.pack('>IIBBBBB', width, height, 16, colour_type, 0, 0, 0)
  path.write_bytes(
      b'\x89PNG\r\n\x1a\n'
      + chunk(b'IHDR', header)
      + chunk(b'IDAT', zlib.compress(rows))
      + chunk(b'IEND', b'')
  )


@pytest.mark.parametrize('channels', [3, 4, 2])
def test_16bit_colour_png_is_refused_not_cut_to_8_bits(tmp_path, channels):
  samples = np.full((2, 4, channels), [53182, 5613, 11759, 65535][:channels], np.uint16)
  write_png16(tmp_path / 'c16.png', samples)
  for load in (lambda p: images.load_image(p, 3), images.load_rgb):
    with pytest.raises(BadImageError, match=r'c16.png is a 16-bit colour PNG.*16-bit TIFF'):
      load(tmp_path / 'c16.png')
  # 16-bit gray keeps its 16 bits (the rule's other half).
  write_png16(tmp_path / 'g16.png', samples[..., :1])
  gray = images.load_image(tmp_path / 'g16.png', 1)
  assert gray.dtype == np.uint16 and (gray == 53182).all()


def test_decompression_bomb_limit_names_the_file_once_and_the_setting(tmp_path, caplog):
  """data.max_image_pixels sets Pillow's limit: over it, one warning naming the file however often
  it is decoded; over twice it, a bad file whose message names the setting."""
  save(tmp_path / 'large.png', noise(16, 8))  # 128 pixels.
  save(tmp_path / 'huge.png', noise(32, 16))  # 512 pixels.
  try:
    images.set_max_image_pixels(100)
    with caplog.at_level(logging.WARNING):
      for _ in range(2):
        assert images.load_image(tmp_path / 'large.png').shape == (8, 16, 3)
    (record,) = [r for r in caplog.records if 'decompression-bomb' in r.getMessage()]
    assert 'large.png is 16×8 = 128 pixels' in record.getMessage()
    assert 'config.data.max_image_pixels' in record.getMessage()
    with pytest.raises(BadImageError, match=r'huge.png is 32×16 = 512 pixels, over twice .*raise'):
      images.load_image(tmp_path / 'huge.png')
    images.set_max_image_pixels(1000)  # Raised knowingly: the large file decodes.
    assert images.load_image(tmp_path / 'huge.png').shape == (16, 32, 3)
  finally:
    images.set_max_image_pixels(None)
  assert not [r for r in caplog.records if 'DecompressionBomb' in r.getMessage()]  # Pillow's.


def test_a_folder_that_cannot_be_listed_is_named(tmp_path, monkeypatch):
  """Permissions or I/O errors while listing a split: a layout error naming the folder, not a raw
  OSError (root reads every folder, so the error is simulated)."""
  side_by_side_folder(tmp_path)
  real_scandir = os.scandir

  def scandir(path):
    if os.fspath(path).endswith('train'):
      raise PermissionError(13, 'Permission denied', os.fspath(path))
    return real_scandir(path)

  monkeypatch.setattr(folder.os, 'scandir', scandir)
  with pytest.raises(FolderLayoutError, match=r'cannot list the folder .*train: Permission denied'):
    PairedFolder(str(tmp_path), 'train')
