"""Transposed 4×4 convolutions (PyTorch's ConvTranspose2d, stride 2): 'adjoint', 'subpixel'.

'adjoint' also computes the ResNet generator's 3×3 ones (padding 1, output_padding 1).

The same linear map, with the same kernel, as XLA's transposed convolution
(`xla.conv_transpose_4x4`), faster on XLA:CPU because XLA:CPU differentiates its own transposed
convolution into kernels 10-18× slower than the forward pass, which made the decoder dominate the
step (see benchmarks/):

- 'adjoint' (fastest on CPU) runs XLA's transposed convolution forward and a custom VJP: the input
  gradient is the forward stride-2 convolution it is the adjoint of, the kernel gradient one
  matrix product per tap.
- 'subpixel' computes four 2×2 stride-1 convolutions of the *undilated* input, one per output
  phase, interleaved by depth-to-space (output pixel 2i+a only ever sees kernel taps of parity a).

Both take `kernel[ky, kx, c_in, c_out]` = the PyTorch weight `W[c_in, c_out, ky, kx]`, x of shape
(N, H, W, C_in), and return (N, 2H, 2W, C_out).
"""

import jax
import jax.numpy as jnp
from jax import lax

from pix2pix_jax.kernels.matmul import padded_taps
from pix2pix_jax.kernels.xla import NHWC


def _adjoint_conv(z: jax.Array, kernel: jax.Array) -> jax.Array:
  """The stride-2 convolution (padding 1) whose input adjoint is the transposed convolution by `kernel`.

  PyTorch's ConvTranspose2d is the input gradient of Conv2d with the same weight, read with the
  in/out roles swapped: `kernel[ky, kx, c_in, c_out]` is this convolution's (k, k, O, I) kernel.
  For k = 3 the convolution never reads the last padded row and column, so its adjoint of a 2H×2W
  input is ConvTranspose2d(3, stride=2, padding=1, output_padding=1).
  """
  return lax.conv_general_dilated(
      z, kernel, (2, 2), ((1, 1), (1, 1)), dimension_numbers=('NHWC', 'HWOI', 'NHWC')
  )


@jax.custom_vjp
def conv_transpose_adjoint(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """'adjoint': XLA's transposed convolution with a custom VJP (see the module docstring)."""
  n, h, w, _ = x.shape
  z = jax.ShapeDtypeStruct((n, 2 * h, 2 * w, kernel.shape[-1]), x.dtype)
  return jax.linear_transpose(lambda z: _adjoint_conv(z, kernel), z)(x)[0]


def _conv_transpose_adjoint_fwd(x, kernel):
  return conv_transpose_adjoint(x, kernel), (x, kernel)


def _conv_transpose_adjoint_bwd(residuals, grad):
  x, kernel = residuals
  # Kernel tap (ky, kx) joins input pixel i to output pixel 2i + ky - 1: one (C_in, C_out) product
  # per tap, stacked in the kernel's own layout. (XLA's kernel gradient of `_adjoint_conv` comes
  # out as (C_out, 4, 4, C_in), and reading it transposed made Adam's update of the 16 MB kernel
  # of the 16×16 -> 32×32 layer take 57 ms instead of ~7.)
  grad_kernel = jnp.stack([
      jnp.einsum('nhwi,nhwo->io', x, tap)
      for tap in padded_taps(grad, 2, *x.shape[1:3], size=kernel.shape[0])
  ])
  return _adjoint_conv(grad, kernel), grad_kernel.reshape(kernel.shape)


conv_transpose_adjoint.defvjp(_conv_transpose_adjoint_fwd, _conv_transpose_adjoint_bwd)


def conv_transpose_subpixel(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """'subpixel': one stride-1 convolution per output phase, then depth-to-space."""
  n, h, w, _ = x.shape
  c_in, c_out = kernel.shape[2:]
  flipped = kernel[::-1, ::-1]
  padded = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  if c_out < 8:
    # Few output channels (the final RGB layer): four 2×2 convs with 3 outputs each run badly
    # on XLA:CPU; one 3×3 conv giving all 4 phases × C_out channels (zero taps where a phase
    # does not reach) is ~5× faster there, for 2.25× the FLOPs of a tiny layer.
    merged = jnp.zeros((3, 3, c_in, 2, 2, c_out), kernel.dtype)
    for a in (0, 1):
      for b in (0, 1):
        merged = merged.at[a : a + 2, b : b + 2, :, a, b, :].set(flipped[a::2, b::2])
    out = lax.conv_general_dilated(
        padded, merged.reshape(3, 3, c_in, 4 * c_out), (1, 1), 'VALID', dimension_numbers=NHWC
    )
    out = out.reshape(n, h, w, 2, 2, c_out).transpose(0, 1, 3, 2, 4, 5)
    return out.reshape(n, 2 * h, 2 * w, c_out)
  rows = []
  for a in (0, 1):
    phases = [
        lax.conv_general_dilated(
            padded[:, a : a + h + 1, b : b + w + 1],
            flipped[a::2, b::2],
            (1, 1),
            'VALID',
            dimension_numbers=NHWC,
        )
        for b in (0, 1)
    ]
    rows.append(jnp.stack(phases, axis=3))  # (N, H, W, 2[b], C)
  out = jnp.stack(rows, axis=2)  # (N, H, 2[a], W, 2[b], C)
  return out.reshape(n, 2 * h, 2 * w, c_out)
