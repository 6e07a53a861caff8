"""Input pipeline: shared jitter, direction, determinism and resumability, padded eval batches."""

import numpy as np
import pytest

from configs import test as test_config
from pix2pix_jax.data import pipeline


def data_config(**overrides):
  config = test_config.get_config().data
  config.update(overrides)
  return config


def gradient_pair(size):
  ramp = np.arange(size, dtype=np.uint8)[None, :, None] * np.ones((size, 1, 3), np.uint8)
  return {'A': ramp, 'B': 255 - ramp}


@pytest.mark.parametrize('seed', range(5))
def test_input_and_target_get_the_same_crop_and_flip(seed):
  image = np.random.default_rng(seed).integers(0, 256, (40, 40, 3), dtype=np.uint8)
  out = pipeline.preprocess_pair(
      {'A': image, 'B': image.copy()},
      np.random.default_rng(seed),
      image_size=32,
      flip=True,
      direction='AtoB',
  )
  assert out['input'].shape == (32, 32, 3) and out['input'].dtype == np.uint8
  np.testing.assert_array_equal(out['input'], out['target'])


def test_flip_happens_and_direction_swaps():
  pair = gradient_pair(32)
  flips = set()
  for seed in range(20):
    out = pipeline.preprocess_pair(
        pair, np.random.default_rng(seed), image_size=32, flip=True, direction='AtoB'
    )
    flips.add(int(out['input'][0, 0, 0]))
    np.testing.assert_array_equal(out['target'], 255 - out['input'])
  assert flips == {0, 31}
  out = pipeline.preprocess_pair(pair, None, image_size=32, flip=True, direction='BtoA')
  np.testing.assert_array_equal(out['input'], pair['B'])
  np.testing.assert_array_equal(out['target'], pair['A'])


def source_config(tmp_path, preprocess, **overrides):
  """A 'folder' config over two 48×48 pairs whose A and B are the same random image."""
  from PIL import Image

  for split in ('train', 'val'):
    (tmp_path / split).mkdir()
    for i in range(2):
      half = np.random.default_rng(i).integers(0, 256, (48, 48, 3), dtype=np.uint8)
      Image.fromarray(np.concatenate([half, half], axis=1)).save(tmp_path / split / f'{i}.png')
  return data_config(name='folder', folder_dir=str(tmp_path), preprocess=preprocess, **overrides)


@pytest.mark.parametrize(
    'preprocess, train_size', [('resize_and_crop', 36), ('resize', 32), ('patches', 36)]
)
def test_preprocess_modes(tmp_path, preprocess, train_size):
  config = source_config(tmp_path, preprocess)
  train = pipeline.create_source(config, 'train', seed=0)
  evaluation = pipeline.create_source(config, 'eval', seed=0)
  assert len(train) == len(evaluation) == (8 if preprocess == 'patches' else 2)
  assert train[0]['A'].shape == (train_size, train_size, 3)
  assert evaluation[0]['A'].shape == (32, 32, 3)
  batch = pipeline.train_dataset(train, config, batch_size=2, seed=0)[0]
  assert batch['input'].shape == (2, 32, 32, 3) and batch['input'].dtype == np.uint8
  np.testing.assert_array_equal(batch['input'], batch['target'])  # Same jitter for both.


def test_patches_are_native_resolution_corners(tmp_path):
  config = source_config(tmp_path, 'patches')
  source = pipeline.create_source(config, 'eval', seed=0)
  raw = np.asarray(__import__('PIL.Image').Image.open(tmp_path / 'val' / '0.png'))[:, :48]
  np.testing.assert_array_equal(source[0]['A'], raw[:32, :32])
  np.testing.assert_array_equal(source[3]['A'], raw[16:, 16:])


def test_cache_returns_the_same_pairs(tmp_path):
  config = source_config(tmp_path, 'resize_and_crop')
  cached = pipeline.create_source(config, 'train', seed=0)
  config.cache = False
  uncached = pipeline.create_source(config, 'train', seed=0)
  for _ in range(2):
    np.testing.assert_array_equal(cached[1]['A'], uncached[1]['A'])


def test_train_batches_are_a_function_of_the_step():
  config = data_config()
  source = pipeline.create_source(config, 'train', seed=0)
  dataset = pipeline.train_dataset(source, config, batch_size=2, seed=0)
  from_start = pipeline.train_iterator(dataset, 0, config)
  batches = [next(from_start) for _ in range(12)]  # 1.5 epochs of 8 steps.
  resumed = next(pipeline.train_iterator(dataset, 9, config))
  np.testing.assert_array_equal(resumed['input'], batches[9]['input'])
  assert batches[0]['input'].shape == (2, 32, 32, 3)
  # Epoch 2 sees the same examples in another order, with other crops.
  assert not np.array_equal(batches[8]['input'], batches[0]['input'])


def test_processes_read_disjoint_examples():
  config = data_config(preprocess='resize', flip=False)
  source = pipeline.create_source(config, 'train', seed=0)
  shards = [
      pipeline.train_dataset(source, config, batch_size=4, seed=0, process_index=i, process_count=2)
      for i in range(2)
  ]
  seen = [
      set(np.asarray(shard[s]['input']).reshape(2, -1).sum(axis=1).tolist())
      for shard in shards
      for s in range(2)
  ]
  assert len(set.union(*seen)) == 8


def test_eval_batches_cover_every_example_once_with_padding():
  config = data_config()
  source = pipeline.create_source(config, 'eval', seed=0)
  batches = list(pipeline.eval_batches(source, config, batch_size=3))
  assert [b['mask'].tolist() for b in batches] == [[1, 1, 1], [1, 0, 0]]
  assert [b['index'].tolist() for b in batches] == [[0, 1, 2], [3, -1, -1]]
  assert list(batches[1]['file_name']) == ['synthetic/eval/3.png', '', '']
  np.testing.assert_array_equal(batches[1]['input'][0], source[3]['B'])  # BtoA: input = B.
  assert not batches[1]['input'][1:].any()


def test_batch_of_the_wrong_shape_is_named():
  config = test_config.get_config()
  batch = {
      'input': np.zeros((2, 32, 32, 3), np.uint8),
      'target': np.zeros((2, 32, 32, 1), np.uint8),
  }
  pipeline.check_batch({'input': batch['input'], 'target': batch['input']}, config)
  with pytest.raises(
      ValueError, match=r'target batches of uint8 \(2, 32, 32, 1\).*\(2, 32, 32, 3\)'
  ):
    pipeline.check_batch(batch, config)
