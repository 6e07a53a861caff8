"""4×4 convolutions by Winograd's minimal filtering (Lavin & Gray 2016): fewer multiplications.

The same linear map as XLA's convolution (`xla.conv_4x4`), faster on XLA:CPU for layers with many
channels because it needs 25/64 (stride 1) or 9/16 (stride 2) of the multiplications: input and
kernel go to the Winograd domain, where the convolution is one matrix product per tile position of
(tiles, C_in) × (C_in, C_out). The VJP stays in the Winograd domain (products with the transformed
kernel and data, then the transposed transforms). Rounding differs from the direct sum: in float32,
relative errors ~5e-6 for stride 1 and ~1e-6 for stride 2, against ~5e-7 (tests/test_kernels.py).
"""

import functools

import jax
import jax.numpy as jnp
from jax import lax
import numpy as np

from pix2pix_jax.kernels.matmul import BATCHED, BATCHED_NT, BATCHED_TN

# Winograd's minimal filtering with 2×2 output tiles: an r×r correlation maps each (r+1)×(r+1)
# input tile d to the 2×2 outputs A^T [(G k G^T) ⊙ (B^T d B)] A, i.e. (r+1)² products per
# (C_in, C_out) pair and tile instead of 4r². Interpolation points: 0, 1, -1, 2, ∞ for r = 4 (B^T's
# fractions moved into G, rows scaled by 2, 2, 6, 6, 1, so data transforms are small integers) and
# 0, 1, ∞ for r = 2 (all entries 0 or ±1).
_WINOGRAD_1D = {  # r: (A^T, G, B^T)
    4: (
        np.array([[1, 1, 1, 1, 0], [0, 1, -1, 2, 1]]),
        np.array([[1, 0, 0, 0], [1, 1, 1, 1], [1, -1, 1, -1], [1, 2, 4, 8], [0, 0, 0, 1]])
        / np.array([2, 2, 6, 6, 1.0])[:, None],
        np.array([
            [2, -1, -2, 1, 0],
            [0, 2, 1, -1, 0],
            [0, -2, 3, -1, 0],
            [0, -1, 0, 1, 0],
            [0, 2, -1, -2, 1],
        ]),
    ),
    2: (
        np.array([[1, 1, 0], [0, 1, 1]]),
        np.array([[1, 0], [1, 1], [0, 1]]),
        np.array([[1, -1, 0], [0, 1, 0], [0, -1, 1]]),
    ),
}
# The 2-D transforms as matrices on flattened tiles (row-major): A (4, t²), G (t², r²), B (t², t²).
_WINOGRAD_2D = {
    r: tuple(np.kron(m, m).astype(np.float32) for m in mats) for r, mats in _WINOGRAD_1D.items()
}


def _winograd_shapes(x_shape, r):
  n, h, w, c = x_shape
  ho, wo = h - r + 1, w - r + 1
  return n, h, w, c, ho, wo, -(-ho // 2), -(-wo // 2)  # ..., tiles of 2×2 outputs per column, row


def _winograd_correlation(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """'VALID' correlation of x (N, H, W, C_in) with kernel (r, r, C_in, C_out), r in {2, 4}."""
  return _winograd_correlation_vjp(x, kernel, x.shape)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _winograd_correlation_vjp(x, kernel, x_shape):
  return _winograd_correlation_fwd(x, kernel, x_shape)[0]


def _winograd_correlation_fwd(x, kernel, x_shape):
  r, t = kernel.shape[0], kernel.shape[0] + 1
  a2, g2, b2 = (jnp.asarray(m, x.dtype) for m in _WINOGRAD_2D[r])
  n, h, w, c_in, ho, wo, th, tw = _winograd_shapes(x_shape, r)
  padded = jnp.pad(x, ((0, 0), (0, 2 * th + r - 1 - h), (0, 2 * tw + r - 1 - w), (0, 0)))
  tiles = jnp.stack([
      padded[:, u : u + 2 * th - 1 : 2, v : v + 2 * tw - 1 : 2] for u in range(t) for v in range(t)
  ])  # (t², N, th, tw, C_in)
  data = (b2 @ tiles.reshape(t * t, -1)).reshape(t * t, n * th * tw, c_in)
  # The kernel is read in its own layout: (t², r²) × (r², C_in · C_out).
  transformed_kernel = (g2 @ kernel.reshape(r * r, -1)).reshape((t * t,) + kernel.shape[2:])
  products = lax.dot_general(data, transformed_kernel, BATCHED)  # (t², tiles, C_out)
  out = (a2 @ products.reshape(t * t, -1)).reshape(2, 2, n, th, tw, -1)
  out = out.transpose(2, 3, 0, 4, 1, 5).reshape(n, 2 * th, 2 * tw, -1)[:, :ho, :wo]
  return out, (data, transformed_kernel)


def _winograd_correlation_bwd(x_shape, residuals, grad):
  data, transformed_kernel = residuals
  t = round(data.shape[0] ** 0.5)
  r = t - 1
  a2, g2, b2 = (jnp.asarray(m, grad.dtype) for m in _WINOGRAD_2D[r])
  n, h, w, c_in, _, _, th, tw = _winograd_shapes(x_shape, r)
  c_out = grad.shape[-1]
  grad = jnp.pad(grad, ((0, 0), (0, 2 * th - grad.shape[1]), (0, 2 * tw - grad.shape[2]), (0, 0)))
  grad = grad.reshape(n, th, 2, tw, 2, c_out).transpose(2, 4, 0, 1, 3, 5).reshape(4, -1)
  grad_products = (a2.T @ grad).reshape(t * t, -1, c_out)
  # Kernel: sum over tiles of data ⊗ product gradient, back through G's transform.
  grad_transformed_kernel = lax.dot_general(data, grad_products, BATCHED_TN)
  grad_kernel = (g2.T @ grad_transformed_kernel.reshape(t * t, -1)).reshape(r, r, c_in, c_out)
  # Input: product gradient × transformed kernel, back through B's transform, then each tile
  # position (u, v) added where it was read: row 2i + u, column 2j + v, grouped by parity.
  grad_data = lax.dot_general(grad_products, transformed_kernel, BATCHED_NT)
  grad_tiles = (b2.T @ grad_data.reshape(t * t, -1)).reshape(t, t, n, th, tw, c_in)
  q = (t - 1) // 2  # Largest shift u // 2.
  phases = [
      [
          sum(
              jnp.pad(
                  grad_tiles[u, v], ((0, 0), (u // 2, q - u // 2), (v // 2, q - v // 2), (0, 0))
              )
              for u in range(a, t, 2)
              for v in range(b, t, 2)
          )
          for b in (0, 1)
      ]
      for a in (0, 1)
  ]
  # (N, th + q, 2, tw + q, 2, C):
  grad_x = jnp.stack([jnp.stack(row, axis=3) for row in phases], axis=2)
  grad_x = grad_x.reshape(n, 2 * (th + q), 2 * (tw + q), c_in)[:, :h, :w]
  return grad_x, grad_kernel


_winograd_correlation_vjp.defvjp(_winograd_correlation_fwd, _winograd_correlation_bwd)


def conv_4x4_winograd(x: jax.Array, kernel: jax.Array, stride: int = 1) -> jax.Array:
  """`xla.conv_4x4` (same arguments and result) by Winograd's minimal filtering.

  Stride 1 is F(2×2, 4×4). Stride 2 is a 2×2 stride-1 convolution of the input's four pixel
  phases (space-to-depth, C_in -> 4·C_in), by F(2×2, 2×2).
  """
  padded = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  if stride == 1:
    return _winograd_correlation(padded, kernel)
  n, h, w, c_in = x.shape
  ho, wo = (h - 2) // 2 + 1, (w - 2) // 2 + 1
  # Padded pixel (2i + a, 2j + b) is phase (a, b) of pixel (i, j); kernel tap (2q + a, 2p + b)
  # joins phase (a, b) of input pixel (i + q, j + p) to output pixel (i, j).
  padded = jnp.pad(padded, ((0, 0), (0, (h + 2) % 2), (0, (w + 2) % 2), (0, 0)))
  hp, wp = padded.shape[1] // 2, padded.shape[2] // 2
  phases = padded.reshape(n, hp, 2, wp, 2, c_in).transpose(0, 1, 3, 2, 4, 5)
  phases = phases.reshape(n, hp, wp, 4 * c_in)
  taps = kernel.reshape(2, 2, 2, 2, c_in, -1).transpose(0, 2, 1, 3, 4, 5)
  taps = taps.reshape(2, 2, 4 * c_in, -1)
  return _winograd_correlation(phases, taps)[:, :ho, :wo]
