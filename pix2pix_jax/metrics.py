"""Per-image quality metrics for generated images: L1, PSNR, SSIM and high-pass L1 (pure JAX).

Every metric takes two batches of images, float NHWC in [0, 1], of the same shape, and returns
one value per image, shape (N,), so that callers can average, summarise or pick out the worst
examples. They are jitted and can be called inside other jitted code. `summarize` turns a
per-image array into host-side statistics for logs and reports.

Filters are written as weighted sums of shifted slices rather than convolutions: on GPUs XLA
may run float32 convolutions in TF32, which would cost SSIM its ~1e-6 agreement with
scikit-image; elementwise arithmetic is exact float32 everywhere.
"""

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


class Metric(NamedTuple):
  title: str  # As tables and the report print it.
  lower_is_better: bool
  perceptual: bool = False  # Needs the `metrics` extra and config.eval.perceptual.


# Every metric the project reports, in the order tables list them: the per-image metrics of this
# module, then LPIPS, FID and KID (pix2pix_jax/perceptual.py). Evaluation's log table, the
# ablation table and the report all read their names here.
METRICS = {
    'l1': Metric('L1', True),
    'psnr': Metric('PSNR (dB)', False),
    'ssim': Metric('SSIM', False),
    'hp_l1': Metric('HP-L1', True),
    'lpips': Metric('LPIPS', True, perceptual=True),
    'fid': Metric('FID', True, perceptual=True),
    'kid': Metric('KID', True, perceptual=True),
}

# FID and KID are computed over the whole set of images, not per image: their sample covariances
# (KID: its unbiased estimate) need at least this many images per set.
SET_METRICS = ('fid', 'kid')
SET_METRICS_MIN_IMAGES = 2


def improves(name: str, value: float, best: float | None) -> bool:
  """Whether `value` of metric `name` is strictly better than `best` (None: no value yet).

  Lower is better except for PSNR and SSIM (`METRICS`). A NaN never improves: it marks a broken
  evaluation, not a good one.
  """
  if math.isnan(value):
    return False
  if best is None:
    return True
  return value < best if METRICS[name].lower_is_better else value > best


# SSIM constants of Wang et al. 2004, as scikit-image's `structural_similarity` with
# `gaussian_weights=True`: an 11-tap Gaussian window (sigma 1.5 truncated at 3.5 sigma).
SSIM_SIGMA = 1.5
SSIM_TRUNCATE = 3.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03
# The filter radius as scipy.ndimage computes it from sigma and truncate: 5, so 11 taps.
SSIM_RADIUS = int(SSIM_TRUNCATE * SSIM_SIGMA + 0.5)
SSIM_WIN_SIZE = 2 * SSIM_RADIUS + 1


def _check_pair(generated: jax.Array, target: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Validates two NHWC batches and casts them to a float type of at least 32 bits.

  Integer and half-precision inputs are promoted so that sums of squares keep their accuracy;
  float64 stays float64 when jax_enable_x64 is on.
  """
  generated = jnp.asarray(generated)
  target = jnp.asarray(target)
  if generated.ndim != 4 or generated.shape != target.shape:
    raise ValueError(
        f'expected two NHWC batches of the same shape, got {generated.shape} and {target.shape}'
    )
  dtype = jnp.promote_types(jnp.promote_types(generated.dtype, target.dtype), jnp.float32)
  return generated.astype(dtype), target.astype(dtype)


@jax.jit
def l1(generated: jax.Array, target: jax.Array) -> jax.Array:
  """Mean absolute error of each image, over all pixels and channels.

  Args:
    generated: (N, H, W, C) images in [0, 1].
    target: (N, H, W, C) images in [0, 1].

  Returns:
    (N,) mean |generated - target| per image.
  """
  generated, target = _check_pair(generated, target)
  return jnp.mean(jnp.abs(generated - target), axis=(1, 2, 3))


@jax.jit
def psnr(generated: jax.Array, target: jax.Array, data_range: float = 1.0) -> jax.Array:
  """Peak signal-to-noise ratio of each image, 10·log10(data_range² / MSE), in dB.

  Matches scikit-image's `peak_signal_noise_ratio(target, generated, data_range=data_range)`
  image by image. An exact reconstruction (MSE = 0) gives +inf, as scikit-image does: it is
  the true value, never NaN, and no real generator output hits it (see `summarize` for how an
  inf propagates into the statistics).

  Args:
    generated: (N, H, W, C) images.
    target: (N, H, W, C) images.
    data_range: max - min of the value range the images live in (1 for [0, 1]).

  Returns:
    (N,) PSNR per image.
  """
  generated, target = _check_pair(generated, target)
  mse = jnp.mean(jnp.square(generated - target), axis=(1, 2, 3))
  # Dividing explicitly (not log10(r²) - log10(mse)) keeps MSE = 0 at +inf rather than NaN.
  return 10.0 * jnp.log10(jnp.square(data_range) / mse)


def _gaussian_taps(sigma: float, radius: int) -> np.ndarray:
  """scipy.ndimage's normalised 1-D Gaussian kernel, computed in float64."""
  x = np.arange(-radius, radius + 1, dtype=np.float64)
  phi = np.exp(-0.5 / (sigma * sigma) * x * x)
  return phi / phi.sum()


def _filter_hw(x: jax.Array, taps: np.ndarray) -> jax.Array:
  """Separable 'same' filter along H and W with scipy's mode='reflect' border.

  scipy's 'reflect' repeats the edge pixel (d c b a | a b c d), which is numpy's 'symmetric'.
  """
  radius = (len(taps) - 1) // 2
  h, w = x.shape[1], x.shape[2]
  x = jnp.pad(x, ((0, 0), (radius, radius), (0, 0), (0, 0)), mode='symmetric')
  x = sum(float(t) * x[:, i : i + h] for i, t in enumerate(taps))
  x = jnp.pad(x, ((0, 0), (0, 0), (radius, radius), (0, 0)), mode='symmetric')
  return sum(float(t) * x[:, :, i : i + w] for i, t in enumerate(taps))


@jax.jit
def ssim(generated: jax.Array, target: jax.Array, data_range: float = 1.0) -> jax.Array:
  """Structural similarity of each image (Wang et al. 2004), as scikit-image computes it.

  Equals `skimage.metrics.structural_similarity(target, generated, data_range=data_range,
  channel_axis=-1, gaussian_weights=True, sigma=1.5, use_sample_covariance=False)`: local
  statistics under an 11-tap Gaussian window (sigma 1.5, truncate 3.5, 'reflect' border),
  population (co)variances, K1 = 0.01 and K2 = 0.03; the SSIM map is averaged after cropping
  the (win_size - 1) // 2 = 5 pixel border that the filter padding contaminates, then averaged
  over channels.

  Args:
    generated: (N, H, W, C) images, H and W at least 11.
    target: (N, H, W, C) images.
    data_range: max - min of the value range the images live in (1 for [0, 1]).

  Returns:
    (N,) mean SSIM per image, in [-1, 1]; 1 for identical images.

  Raises:
    ValueError: if the images are smaller than the 11×11 window (as scikit-image).
  """
  generated, target = _check_pair(generated, target)
  h, w = generated.shape[1], generated.shape[2]
  if min(h, w) < SSIM_WIN_SIZE:
    raise ValueError(
        f'SSIM needs images of at least {SSIM_WIN_SIZE}×{SSIM_WIN_SIZE} (its '
        f'Gaussian window), got {h}×{w}'
    )
  taps = _gaussian_taps(SSIM_SIGMA, SSIM_RADIUS)
  # (Co)variances are shift-invariant, so subtract each image's channel means first: E[x²] -
  # E[x]² then cancels far less in float32 (a flat patch of value 0.5 would otherwise lose ~3
  # of float32's 7 digits, amplified by 1/C2 ≈ 1100 in the SSIM map).
  shift = 0.5 * (
      jnp.mean(generated, axis=(1, 2), keepdims=True) + jnp.mean(target, axis=(1, 2), keepdims=True)
  )
  x = generated - shift
  y = target - shift
  mx = _filter_hw(x, taps)
  my = _filter_hw(y, taps)
  vx = _filter_hw(x * x, taps) - mx * mx
  vy = _filter_hw(y * y, taps) - my * my
  vxy = _filter_hw(x * y, taps) - mx * my
  ux = mx + shift
  uy = my + shift
  c1 = jnp.square(SSIM_K1 * data_range)
  c2 = jnp.square(SSIM_K2 * data_range)
  ssim_map = (2 * ux * uy + c1) * (2 * vxy + c2) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
  pad = (SSIM_WIN_SIZE - 1) // 2
  return jnp.mean(ssim_map[:, pad : h - pad, pad : w - pad], axis=(1, 2, 3))


@jax.jit
def hp_l1(generated: jax.Array, target: jax.Array) -> jax.Array:
  """L1 between the 3×3 Laplacian high-pass of each image: how far fine detail is off.

  The kernel [[0, 1, 0], [1, -4, 1], [0, 1, 0]] is applied to each channel separately with
  scipy.ndimage's default 'reflect' border (edge pixel repeated), so the result equals
  `scipy.ndimage.laplace` per channel and a flat region, border included, has no high-pass
  response (zero padding would invent an edge along every border). Plain L1 rewards the blurry
  average that an L1-trained generator drifts to; this term does not.

  Args:
    generated: (N, H, W, C) images in [0, 1].
    target: (N, H, W, C) images in [0, 1].

  Returns:
    (N,) mean |laplace(generated) - laplace(target)| per image, over pixels and channels.
  """
  generated, target = _check_pair(generated, target)
  # The Laplacian is linear, so filter the difference once instead of both images.
  d = generated - target
  h, w = d.shape[1], d.shape[2]
  p = jnp.pad(d, ((0, 0), (1, 1), (1, 1), (0, 0)), mode='symmetric')
  lap = (
      p[:, :h, 1 : w + 1] + p[:, 2:, 1 : w + 1] + p[:, 1 : h + 1, :w] + p[:, 1 : h + 1, 2:] - 4 * d
  )
  return jnp.mean(jnp.abs(lap), axis=(1, 2, 3))


def summarize(values) -> dict[str, float]:
  """Summary statistics of per-image metric values, as Python floats for logs and JSON.

  Not NaN-safe by design: a NaN anywhere makes every statistic NaN, because a NaN metric means
  a broken image (e.g. a diverged generator) that an average must not hide. A +inf (PSNR of an
  exact reconstruction) gives mean = max = inf and std = NaN, numpy's arithmetic.

  Args:
    values: array-like of per-image values, any shape (flattened).

  Returns:
    {'mean', 'min', 'max', 'std'}; std is the population standard deviation (ddof = 0),
    computed in float64.

  Raises:
    ValueError: if `values` is empty.
  """
  v = np.asarray(values, dtype=np.float64).ravel()
  if v.size == 0:
    raise ValueError('cannot summarize an empty set of metric values')
  # inf - inf inside std is expected here, not worth a RuntimeWarning.
  with np.errstate(invalid='ignore'):
    stats = {'mean': v.mean(), 'min': v.min(), 'max': v.max(), 'std': v.std()}
  return {k: float(s) for k, s in stats.items()}
