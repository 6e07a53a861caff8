"""4×4 convolutions as matrix products on the kernel's own layout (the U-Net's small levels).

The same linear maps as XLA's convolution and transposed convolution (xla.py), faster on XLA:CPU
for a few pixels and large kernels (the U-Net's deep levels: up to 4M weights) because XLA:CPU's
convolution gradients first copy the kernel into a transposed, flipped layout, and there those
copies dominate; the matrix products here, and their gradients, read `kernel` in its own
(4, 4, C_in, C_out) layout.
"""

import jax
import jax.numpy as jnp
from jax import lax

# Batched products over a leading T axis, as dot_general dimension numbers:
BATCHED = (((2,), (1,)), ((0,), (0,)))  # (T, M, K) × (T, K, N) -> (T, M, N).
BATCHED_NT = (((2,), (2,)), ((0,), (0,)))  # (T, M, N) × (T, K, N) -> (T, M, K).
BATCHED_TN = (((1,), (1,)), ((0,), (0,)))  # (T, M, K) × (T, M, N) -> (T, K, N).


def padded_taps(
    x: jax.Array, stride: int, h_out: int, w_out: int, size: int = 4
) -> list[jax.Array]:
  """The size² inputs of a size×size convolution with padding 1: tap (ky, kx) of every output pixel.

  Args:
    x: (N, H, W, C).
    stride: the convolution's stride.
    h_out: output rows.
    w_out: output columns.
    size: the kernel's side (4, or 3 for the ResNet's transposed convolutions).

  Returns:
    size² arrays (N, h_out, w_out, C), in (ky, kx) row-major order: `x` padded by 1, from (ky, kx),
    every `stride`-th row and column.
  """
  padded = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  rows, cols = stride * (h_out - 1) + 1, stride * (w_out - 1) + 1
  return [
      padded[:, ky : ky + rows : stride, kx : kx + cols : stride]
      for ky in range(size)
      for kx in range(size)
  ]


def conv_4x4_matmul(x: jax.Array, kernel: jax.Array, stride: int) -> jax.Array:
  """`xla.conv_4x4` (same arguments and result) as one matrix product of im2col patches."""
  n, h, w, c_in = x.shape
  c_out = kernel.shape[-1]
  h_out, w_out = (h - 2) // stride + 1, (w - 2) // stride + 1
  patches = jnp.stack(padded_taps(x, stride, h_out, w_out), axis=3)
  patches = patches.reshape(n * h_out * w_out, 16 * c_in)
  return (patches @ kernel.reshape(16 * c_in, c_out)).reshape(n, h_out, w_out, c_out)


@jax.custom_vjp
def _tap_products(rows: jax.Array, taps_kernel: jax.Array) -> jax.Array:
  """(M, C_in) × (T, C_in, C_out) -> (T, M, C_out): `rows @ taps_kernel[t]` for every tap t.

  A batched product over the taps, so neither it nor its gradients copy the kernel out of its own
  layout.
  """
  t = taps_kernel.shape[0]
  return lax.dot_general(jnp.broadcast_to(rows, (t,) + rows.shape), taps_kernel, BATCHED)


def _tap_products_fwd(rows, taps_kernel):
  return _tap_products(rows, taps_kernel), (rows, taps_kernel)


def _tap_products_bwd(residuals, grad):
  rows, taps_kernel = residuals
  t = taps_kernel.shape[0]
  # (T, M, C_out) × (T, C_in, C_out) contracting C_out -> (T, M, C_in), then the sum over taps.
  grad_rows = lax.dot_general(grad, taps_kernel, BATCHED_NT)
  # Summed as T slices: XLA:CPU fuses a reduce into the product, which then runs at ~half speed
  # (28 ms instead of ~8 for the 8×8 level at 256²). Slices work under any compile options: an
  # optimization barrier holds on XLA:CPU only with config.xla_cpu_region_analysis.
  grad_rows = sum(grad_rows[i] for i in range(t))
  # (T, M, C_in) × (T, M, C_out) contracting M -> (T, C_in, C_out): the kernel's own layout.
  grad_kernel = lax.dot_general(jnp.broadcast_to(rows, (t,) + rows.shape), grad, BATCHED_TN)
  return grad_rows, grad_kernel


_tap_products.defvjp(_tap_products_fwd, _tap_products_bwd)


def conv_transpose_4x4_matmul(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """`xla.conv_transpose_4x4` as 16 matrix products (one per tap) plus overlap-add.

  Args:
    x: (N, H, W, C_in).
    kernel: (4, 4, C_in, C_out), laid out as for `xla.conv_transpose_4x4`.

  Returns:
    (N, 2H, 2W, C_out).
  """
  n, h, w, c_in = x.shape
  c_out = kernel.shape[-1]
  taps = _tap_products(x.reshape(n * h * w, c_in), kernel.reshape(16, c_in, c_out))
  # Output pixel 2i + k - 1 gets tap k of input pixel i. With k = 2q + a that is row i + q, phase a
  # of the padded output (H + 1 rows of 2 phases): sum the four (q, p) shifts, then interleave.
  taps = taps.reshape(2, 2, 2, 2, n, h, w, c_out)  # (q, a, p, b, ...)
  out = sum(
      jnp.pad(taps[q, :, p], ((0, 0),) * 3 + ((q, 1 - q), (p, 1 - p), (0, 0)))
      for q in (0, 1)
      for p in (0, 1)
  )  # (a, b, N, H + 1, W + 1, C)
  out = out.transpose(2, 3, 0, 4, 1, 5).reshape(n, 2 * h + 2, 2 * w + 2, c_out)
  return out[:, 1:-1, 1:-1]
