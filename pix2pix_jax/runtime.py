"""Speed and runtime settings: the one place where a config's 'auto' values become concrete.

These keys change how fast a run is, never what it computes (results agree up to float rounding),
so their best values depend on the backend. 'auto' resolves as follows:

| key                       | CPU                               | GPU / TPU                        |
|---------------------------|-----------------------------------|----------------------------------|
| `steps_per_call`          | 1 (XLA:CPU unrolls the loop)      | 100 (ACCELERATOR_STEPS_PER_CALL) |
| `data.on_device`          | False                             | True if the resized train set    |
|                           |                                   | takes ≤ 1/4 of a device's memory |
| `model.upsample_impl`     | 'adjoint'                         | 'conv_transpose' (XLA's own)     |
| `model.matmul_max_pixels` | 64                                | 0                                |
| `model.conv_impl`         | 'winograd' in float32, else 'xla' | 'xla'                            |
| PatchGAN logits' kernel   | custom (`kernels/logits.py`)      | XLA's (no config key: follows    |
| gradient                  |                                   | the backend)                     |

The CPU column is what the 2-core development CPU measured fastest (benchmarks/README figures);
on GPUs and TPUs XLA's own convolutions are used (cuDNN picks its algorithms) until
a GPU measurement shows the CPU forms faster there. Any key can be set explicitly.
`conv_impl` turns the model keys into the `kernels.ConvImpl` the networks take.
"""

import copy
import logging

import jax
import jax.numpy as jnp
import ml_collections

from pix2pix_jax import kernels

AUTO = 'auto'
CONV_IMPLS = ('xla', 'winograd')  # config.model.conv_impl, besides AUTO.
ACCELERATOR_STEPS_PER_CALL = 100
# data.on_device='auto' keeps the train set on an accelerator when it takes at most this share of
# one device's memory (maps at 286²: 538 MB, 0.7 % of an 80 GB H100).
ON_DEVICE_MAX_MEMORY_FRACTION = 0.25
CPU_MATMUL_MAX_PIXELS = 64


def _backend(backend: str | None) -> str:
  return backend or jax.default_backend()


def conv_impl(
    model_config, backend: str | None = None, *, network: str = 'generator'
) -> kernels.ConvImpl:
  """The convolution forms `config.model` asks for, with 'auto' resolved for `backend`.

  Args:
    model_config: `config.model` (upsample_impl, matmul_max_pixels, conv_impl,
      winograd_min_channels, compute_dtype).
    backend: 'cpu', 'gpu' or 'tpu'; default: JAX's default backend.
    network: 'generator' or 'discriminator'. `model.matmul_max_pixels` counts the U-Net's levels:
      the PatchGAN's convolutions are never matrix products.

  Returns:
    The `kernels.ConvImpl` for the network's `conv_impl` field.
  """
  if network not in ('generator', 'discriminator'):
    raise ValueError(f"network={network!r} is not 'generator' or 'discriminator'")
  cpu = _backend(backend) == 'cpu'
  upsample = model_config.upsample_impl
  if upsample == AUTO:
    upsample = 'adjoint' if cpu else 'conv_transpose'
  matmul = model_config.matmul_max_pixels
  if matmul == AUTO:
    matmul = CPU_MATMUL_MAX_PIXELS if cpu else 0
  impl = model_config.conv_impl
  if impl == AUTO:
    float32 = jnp.dtype(model_config.compute_dtype) == jnp.float32
    # Winograd's transforms scale values by up to 8: untested for the rounding of 16-bit floats.
    impl = 'winograd' if cpu and float32 else 'xla'
  return kernels.ConvImpl(
      upsample=upsample,
      matmul_max_pixels=int(matmul) if network == 'generator' else 0,
      winograd_min_channels=model_config.winograd_min_channels if impl == 'winograd' else None,
      few_outputs_grad=cpu,
  )


def _device_memory_bytes() -> int | None:
  stats = jax.local_devices()[0].memory_stats()  # None on CPU.
  return stats.get('bytes_limit') if stats else None


def resolve(
    config: ml_collections.ConfigDict,
    *,
    train_set_bytes: int | None = None,
    backend: str | None = None,
    device_memory_bytes: int | None = None,
) -> ml_collections.ConfigDict:
  """A copy of `config` with every 'auto' speed key replaced by its value for `backend`.

  Args:
    config: the run's config.
    train_set_bytes: the train set's size as `data.on_device` would hold it
      (`device_data.train_set_bytes`), for `data.on_device='auto'` on an accelerator; None leaves
      that key 'auto' there (resolve again once the data is known).
    backend: 'cpu', 'gpu' or 'tpu'; default: JAX's default backend.
    device_memory_bytes: one device's memory; default: what JAX reports (unknown: not on device).

  Returns:
    The resolved copy (the argument is unchanged).
  """
  backend = _backend(backend)
  cpu = backend == 'cpu'
  resolved = copy.deepcopy(config)
  if resolved.steps_per_call == AUTO:
    _set(resolved, 'steps_per_call', 1 if cpu else ACCELERATOR_STEPS_PER_CALL)
  if resolved.data.on_device == AUTO and (cpu or train_set_bytes is not None):
    memory = device_memory_bytes or (None if cpu else _device_memory_bytes())
    _set(
        resolved.data,
        'on_device',
        bool(not cpu and memory and train_set_bytes <= ON_DEVICE_MAX_MEMORY_FRACTION * memory),
    )
  forms = conv_impl(resolved.model, backend)
  _set(resolved.model, 'upsample_impl', forms.upsample)
  _set(resolved.model, 'matmul_max_pixels', forms.matmul_max_pixels)
  _set(resolved.model, 'conv_impl', 'xla' if forms.winograd_min_channels is None else 'winograd')
  return resolved


def _set(config: ml_collections.ConfigDict, key: str, value) -> None:
  """Sets a speed key, whatever type the field has taken.

  The 'auto' fields of configs/default.py take any type, but a copy made with
  `copy_and_resolve_references` (the usual ml_collections idiom) types them as str.
  """
  with config.unlocked():
    try:
      config[key] = value
    except TypeError:
      del config[key]
      config[key] = value


def describe(config: ml_collections.ConfigDict) -> str:
  """One log line of the runtime settings of a resolved config."""
  return (
      f'steps_per_call={config.steps_per_call}, data.on_device={config.data.on_device}, '
      f'model.upsample_impl={config.model.upsample_impl}, '
      f'model.matmul_max_pixels={config.model.matmul_max_pixels}, '
      f'model.conv_impl={config.model.conv_impl}, model.compute_dtype='
      f'{config.model.compute_dtype}'
  )


def log_resolved(config: ml_collections.ConfigDict) -> None:
  logging.info(
      'Runtime settings on %s (%s): %s',
      jax.default_backend(),
      jax.devices()[0].device_kind,
      describe(config),
  )
