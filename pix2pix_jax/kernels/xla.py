"""XLA's own 4×4 (and the ResNet's 3×3 transposed) convolutions, differentiated by JAX: the definitions the other forms must equal.

These are the forms the networks use by default (`ConvImpl()`) and on GPUs and TPUs, where cuDNN and
XLA:TPU pick their own algorithms. On XLA:CPU some of their gradients are slow; the other modules of
this package compute the same linear maps faster there (tests/test_kernels.py checks each one
against these).
"""

import jax
import jax.numpy as jnp
from jax import lax

NHWC = ('NHWC', 'HWIO', 'NHWC')


def conv_4x4(x: jax.Array, kernel: jax.Array, stride: int) -> jax.Array:
  """PyTorch's `Conv2d(kernel_size=4, stride, padding=1)` by XLA's convolution.

  Args:
    x: (N, H, W, C_in).
    kernel: (4, 4, C_in, C_out).
    stride: 1 or 2.

  Returns:
    (N, H', W', C_out), H' = (H + 2 - 4) // stride + 1.
  """
  return lax.conv_general_dilated(
      x, kernel, (stride, stride), ((1, 1), (1, 1)), dimension_numbers=NHWC
  )


def conv_transpose_4x4(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """PyTorch's `ConvTranspose2d(kernel_size=4, stride=2, padding=1)` by XLA's transposed conv.

  `kernel[ky, kx, c_in, c_out]` equals the PyTorch weight `W[c_in, c_out, ky, kx]`. XLA:CPU
  differentiates this form into kernels 10-18× slower than its forward pass, which made the
  decoder dominate the CPU step (see benchmarks/): conv_transpose.py and matmul.py hold the faster
  forms of the same map.

  Args:
    x: (N, H, W, C_in).
    kernel: (4, 4, C_in, C_out).

  Returns:
    (N, 2H, 2W, C_out).
  """
  return lax.conv_transpose(
      x,
      jnp.swapaxes(kernel, 2, 3),
      (2, 2),
      ((2, 2), (2, 2)),
      dimension_numbers=NHWC,
      transpose_kernel=True,
  )


def conv_transpose_3x3(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """PyTorch's `ConvTranspose2d(kernel_size=3, stride=2, padding=1, output_padding=1)`.

  The ResNet generator's upsampling. As a convolution of the stride-dilated input with the flipped
  kernel, PyTorch pads k - 1 - padding = 1 before and k - 1 - padding + output_padding = 2 after.

  Args:
    x: (N, H, W, C_in).
    kernel: (3, 3, C_in, C_out); `kernel[ky, kx, c_in, c_out]` is the PyTorch weight
      `W[c_in, c_out, ky, kx]` (not flipped).

  Returns:
    (N, 2H, 2W, C_out).
  """
  return lax.conv_transpose(
      x,
      jnp.swapaxes(kernel, 2, 3),
      (2, 2),
      ((1, 2), (1, 2)),
      dimension_numbers=NHWC,
      transpose_kernel=True,
  )
