"""Image metrics against independent references (scikit-image, scipy.ndimage) and hand values."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage

from pix2pix_jax import metrics
from pix2pix_jax.data import synthetic


@pytest.fixture(name='skimage_metrics')
def _skimage_metrics():
  # Only the comparisons need it; the hand-value tests run without the `test` extra.
  return pytest.importorskip(
      'skimage.metrics', reason="scikit-image is the SSIM/PSNR reference: pip install -e '.[test]'"
  )


def _smooth_images(rng, n, h, w, c):
  """Natural-looking images: smooth sinusoidal gradients per channel plus a little noise."""
  yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
  images = []
  for _ in range(n):
    a = rng.uniform(-1, 1, (c, 3))
    images.append(
        np.stack(
            [0.5 + 0.3 * np.sin(4 * a[k, 0] * xx + 3 * a[k, 1] * yy + a[k, 2]) for k in range(c)],
            axis=-1,
        )
    )
  images = np.asarray(images) + rng.normal(0, 0.01, (n, h, w, c))
  return np.clip(images, 0, 1)


def _cases():
  """(name, generated, target) float64 pairs at several sizes and channel counts."""
  rng = np.random.default_rng(0)
  x = rng.uniform(0, 1, (3, 48, 40, 3))
  yield 'uniform_noise', np.clip(x + rng.normal(0, 0.1, x.shape), 0, 1), x
  x = _smooth_images(rng, 3, 64, 64, 3)
  yield 'smooth_plus_noise', np.clip(x + rng.normal(0, 0.03, x.shape), 0, 1), x
  yield 'smooth_contrast', 0.9 * x + 0.05, x
  x = _smooth_images(rng, 2, 32, 37, 1)
  yield 'gray', np.clip(x + rng.normal(0, 0.05, x.shape), 0, 1), x
  x = _smooth_images(rng, 2, 33, 32, 4)
  yield 'four_channels', np.clip(x[:, ::-1] * 0.5 + x * 0.5, 0, 1), x
  x = np.stack([synthetic.render_pair(0, i, 64)[0] for i in range(3)]) / 255.0
  yield 'synthetic_aerial', np.clip(x + rng.normal(0, 0.05, x.shape), 0, 1), x


CASES = list(_cases())
CASE_IDS = [c[0] for c in CASES]


def _f32(x):
  return jnp.asarray(x, jnp.float32)


@pytest.mark.parametrize('name,generated,target', CASES, ids=CASE_IDS)
def test_ssim_matches_scikit_image(skimage_metrics, name, generated, target):
  del name
  expected = [
      skimage_metrics.structural_similarity(
          t,
          g,
          data_range=1.0,
          channel_axis=-1,
          gaussian_weights=True,
          sigma=1.5,
          use_sample_covariance=False,
          K1=0.01,
          K2=0.03,
      )
      for g, t in zip(generated, target)
  ]
  got = metrics.ssim(_f32(generated), _f32(target))
  assert got.shape == (len(generated),)
  np.testing.assert_allclose(np.asarray(got), expected, rtol=0, atol=1e-5)


def test_ssim_data_range_matches_scikit_image(skimage_metrics):
  rng = np.random.default_rng(1)
  target = _smooth_images(rng, 2, 40, 40, 3) * 255
  generated = np.clip(target + rng.normal(0, 8, target.shape), 0, 255)
  expected = [
      skimage_metrics.structural_similarity(
          t,
          g,
          data_range=255,
          channel_axis=-1,
          gaussian_weights=True,
          sigma=1.5,
          use_sample_covariance=False,
      )
      for g, t in zip(generated, target)
  ]
  got = metrics.ssim(_f32(generated), _f32(target), data_range=255.0)
  np.testing.assert_allclose(np.asarray(got), expected, rtol=0, atol=1e-5)


def test_ssim_of_identical_images_is_one_even_when_flat():
  x = np.concatenate(
      [np.full((1, 16, 16, 3), 0.3), np.random.default_rng(2).uniform(size=(1, 16, 16, 3))]
  )
  np.testing.assert_allclose(np.asarray(metrics.ssim(_f32(x), _f32(x))), 1.0, atol=1e-6)


def test_ssim_rejects_images_smaller_than_its_window():
  x = jnp.zeros((1, 10, 32, 3))
  with pytest.raises(ValueError, match='11×11'):
    metrics.ssim(x, x)


@pytest.mark.parametrize('name,generated,target', CASES, ids=CASE_IDS)
def test_psnr_matches_scikit_image(skimage_metrics, name, generated, target):
  del name
  expected = [
      skimage_metrics.peak_signal_noise_ratio(t, g, data_range=1.0)
      for g, t in zip(generated, target)
  ]
  got = metrics.psnr(_f32(generated), _f32(target))
  # 1e-5 relative on values of ~20-40 dB.
  np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-5, atol=0)


def test_psnr_hand_values_and_exact_reconstruction():
  target = jnp.zeros((3, 4, 4, 1))
  generated = target.at[0].set(0.1).at[1].set(0.5)
  got = np.asarray(metrics.psnr(generated, target))
  np.testing.assert_allclose(got[:2], [20.0, 10 * math.log10(4)], rtol=1e-6)
  # MSE = 0: +inf, as scikit-image, never NaN.
  assert got[2] == np.inf
  np.testing.assert_allclose(
      np.asarray(metrics.psnr(generated * 255, target, 255.0))[:2], got[:2], rtol=1e-6
  )


@pytest.mark.parametrize('name,generated,target', CASES, ids=CASE_IDS)
def test_hp_l1_matches_scipy_laplace(name, generated, target):
  del name
  expected = []
  for g, t in zip(generated, target):
    # scipy's laplace over the spatial axes only, channel by channel (default mode 'reflect').
    lap = [ndimage.laplace(g[..., c]) - ndimage.laplace(t[..., c]) for c in range(g.shape[-1])]
    expected.append(np.mean(np.abs(np.stack(lap, axis=-1))))
  got = metrics.hp_l1(_f32(generated), _f32(target))
  assert got.shape == (len(generated),)
  np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-5, atol=1e-7)


def test_hp_l1_ignores_flat_and_linear_offsets():
  x = np.random.default_rng(3).uniform(size=(2, 16, 16, 3))
  # A constant offset has no high-pass response, border included; plain L1 sees it.
  assert np.asarray(metrics.hp_l1(_f32(x + 0.25), _f32(x))) == pytest.approx([0, 0], abs=1e-6)
  assert np.asarray(metrics.l1(_f32(x + 0.25), _f32(x))) == pytest.approx([0.25, 0.25])


def test_l1_hand_values():
  target = jnp.zeros((2, 2, 2, 1))
  generated = jnp.array([[[[0.0], [1.0]], [[0.5], [0.5]]], [[[-0.25], [0.25]], [[0.0], [0.0]]]])
  got = metrics.l1(generated, target)
  assert got.shape == (2,)
  np.testing.assert_allclose(np.asarray(got), [0.5, 0.125])


def test_metrics_reject_mismatched_shapes():
  for fn in (metrics.l1, metrics.psnr, metrics.ssim, metrics.hp_l1):
    with pytest.raises(ValueError, match='same shape'):
      fn(jnp.zeros((1, 16, 16, 3)), jnp.zeros((1, 16, 16, 1)))


def test_metrics_accept_uint8_and_work_under_an_outer_jit(skimage_metrics):
  x = np.random.default_rng(4).integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)
  y = np.clip(x.astype(np.int32) + 3, 0, 255).astype(np.uint8)
  # Integers are promoted to float; data_range must then say 255.
  assert float(metrics.psnr(x, y, 255.0)[0]) == pytest.approx(
      skimage_metrics.peak_signal_noise_ratio(y[0], x[0], data_range=255), rel=1e-5
  )

  @jax.jit
  def all_metrics(a, b):
    return {
        'l1': metrics.l1(a, b),
        'psnr': metrics.psnr(a, b),
        'ssim': metrics.ssim(a, b),
        'hp_l1': metrics.hp_l1(a, b),
    }

  out = all_metrics(_f32(x / 255), _f32(y / 255))
  assert {k: v.shape for k, v in out.items()} == {k: (2,) for k in out}


def test_summarize_hand_values():
  s = metrics.summarize(jnp.array([1.0, 2.0, 3.0, 6.0]))
  assert s == {'mean': 3.0, 'min': 1.0, 'max': 6.0, 'std': pytest.approx(math.sqrt(3.5))}
  assert all(type(v) is float for v in s.values())
  assert metrics.summarize([2.5]) == {'mean': 2.5, 'min': 2.5, 'max': 2.5, 'std': 0.0}


def test_summarize_propagates_nan_and_inf():
  s = metrics.summarize([1.0, float('nan'), 3.0])
  assert all(math.isnan(v) for v in s.values())
  s = metrics.summarize(np.array([20.0, np.inf]))
  assert s['mean'] == s['max'] == math.inf and s['min'] == 20.0 and math.isnan(s['std'])
  with pytest.raises(ValueError, match='empty'):
    metrics.summarize([])
