"""Property-based tests (hypothesis) of the pair preprocessing: shapes, ranges, pair consistency."""

from hypothesis import given, settings, strategies as st
import numpy as np

from pix2pix_jax.data import images, pipeline


@st.composite
def pairs(draw):
  image_size = draw(st.integers(1, 48))
  size = image_size + draw(st.integers(0, 24))
  seed = draw(st.integers(0, 2**32 - 1))
  a = np.random.default_rng(seed).integers(0, 256, (size, size, 3), np.uint8)
  return a, image_size, seed


@settings(max_examples=150, deadline=None)
@given(pairs(), st.booleans(), st.sampled_from(images.DIRECTIONS), st.booleans())
def test_crop_flip_keep_the_pair_aligned(pair, flip, direction, deterministic):
  a, image_size, seed = pair
  b = 255 - a  # Any pixelwise relation between A and B must survive the jitter.
  rng = None if deterministic else np.random.default_rng(seed)
  out = pipeline.preprocess_pair(
      {'A': a, 'B': b}, rng, image_size=image_size, flip=flip, direction=direction
  )
  for key in ('input', 'target'):
    assert out[key].shape == (image_size, image_size, 3) and out[key].dtype == np.uint8
    assert out[key].flags['C_CONTIGUOUS']
  np.testing.assert_array_equal(out['target'], 255 - out['input'])
  source = a if direction == 'AtoB' else b
  # The input is a crop of the source, possibly mirrored: find it among all crops.
  windows = np.lib.stride_tricks.sliding_window_view(source, (image_size, image_size, 3))[
      ..., 0, :, :, :
  ]
  candidates = (
      [out['input'], out['input'][:, ::-1]] if flip and not deterministic else [out['input']]
  )
  assert any((windows == c).all(axis=(-3, -2, -1)).any() for c in candidates)


@settings(max_examples=60, deadline=None)
@given(st.integers(8, 80), st.integers(8, 80), st.integers(4, 40))
def test_resize_gives_the_requested_square(height, width, size):
  image = np.random.default_rng(height * width).integers(0, 256, (height, width, 3), np.uint8)
  out = pipeline.resize(image, size)
  assert out.shape == (size, size, 3) and out.dtype == np.uint8


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 1000), st.integers(0, 5))
def test_same_seed_and_index_give_the_same_batch(seed, step):
  from configs import test as test_config  # pylint: disable=g-import-not-at-top

  config = test_config.get_config().data
  config.synthetic_train_examples = 6
  source = pipeline.create_source(config, 'train', seed=0)
  first = pipeline.train_dataset(source, config, batch_size=2, seed=seed)[step]
  again = pipeline.train_dataset(source, config, batch_size=2, seed=seed)[step]
  np.testing.assert_array_equal(first['input'], again['input'])
  assert first['input'].min() >= 0 and first['input'].max() <= 255
