"""'auto' speed settings: today's CPU behaviour on CPU, the documented forms on GPUs, same losses."""

import inspect
import logging

import jax
import numpy as np
import pytest

from configs import default as default_config
from configs import maps as maps_config
from configs import test as test_config
from pix2pix_jax import kernels, models, runtime, train
from pix2pix_jax.data import device_data

H100_MEMORY = 80 * 10**9
CPU_RESOLUTION = {
    'steps_per_call': 1,
    'data.on_device': False,
    'model.upsample_impl': 'adjoint',
    'model.matmul_max_pixels': 64,
    'model.conv_impl': 'winograd',
}
GPU_RESOLUTION = {
    'steps_per_call': 100,
    'data.on_device': True,
    'model.upsample_impl': 'conv_transpose',
    'model.matmul_max_pixels': 0,
    'model.conv_impl': 'xla',
}


def get(config, dotted):
  for part in dotted.split('.'):
    config = config[part]
  return config


def resolved_values(config, backend, num_train_examples=None, **kwargs):
  if num_train_examples is not None:
    kwargs['train_set_bytes'] = device_data.train_set_bytes(config.data, num_train_examples)
  resolved = runtime.resolve(config, backend=backend, **kwargs)
  return {key: get(resolved, key) for key in CPU_RESOLUTION}


def test_defaults_are_auto_and_the_config_is_left_unchanged():
  config = maps_config.get_config()
  assert all(get(config, key) == 'auto' for key in CPU_RESOLUTION)
  runtime.resolve(
      config,
      backend='gpu',
      train_set_bytes=device_data.train_set_bytes(config.data, 1096),
      device_memory_bytes=H100_MEMORY,
  )
  assert all(get(config, key) == 'auto' for key in CPU_RESOLUTION)


def test_auto_on_cpu_is_the_cpu_tuned_behaviour():
  config = maps_config.get_config()
  assert resolved_values(config, 'cpu', num_train_examples=1096) == CPU_RESOLUTION
  # Before the train set is known too: on CPU it never goes to the device.
  assert resolved_values(config, 'cpu') == CPU_RESOLUTION
  config.model.compute_dtype = 'bfloat16'  # Winograd only in float32.
  assert resolved_values(config, 'cpu')['model.conv_impl'] == 'xla'
  # The networks JAX's (CPU) backend builds from 'auto' are those of the explicit CPU values.
  auto = default_config.get_config().model
  assert jax.default_backend() == 'cpu'
  assert models.create_generator(auto, 256).conv_impl == kernels.ConvImpl(
      upsample='adjoint', matmul_max_pixels=64, winograd_min_channels=64, few_outputs_grad=True
  )
  # matmul_max_pixels counts the U-Net's levels: the PatchGAN's convolutions never are matmuls.
  assert models.create_discriminator(auto).conv_impl == kernels.ConvImpl(
      upsample='adjoint', winograd_min_channels=64, few_outputs_grad=True
  )


@pytest.mark.parametrize(
    'impl, dtype, expected',
    [
        ('auto', 'float32', 64),
        ('auto', 'bfloat16', None),
        ('xla', 'float32', None),
        ('winograd', 'bfloat16', 64),
    ],
)
def test_conv_impl_from_config(impl, dtype, expected):
  config = default_config.get_config().model
  config.conv_impl, config.compute_dtype = impl, dtype
  assert jax.default_backend() == 'cpu'  # 'auto' picks Winograd on CPU only.
  assert models.create_discriminator(config).conv_impl.winograd_min_channels == expected
  assert models.create_generator(config, 256).conv_impl.winograd_min_channels == expected


def test_auto_on_gpu_is_what_the_config_documents():
  config = maps_config.get_config()
  # maps at load_size 286: 1096 pairs, 538 MB, on an 80 GB GPU.
  assert device_data.train_set_bytes(config.data, 1096) == 1096 * 286 * 286 * 6
  assert (
      resolved_values(config, 'gpu', num_train_examples=1096, device_memory_bytes=H100_MEMORY)
      == GPU_RESOLUTION
  )
  assert (
      resolved_values(config, 'tpu', num_train_examples=1096, device_memory_bytes=H100_MEMORY)
      == GPU_RESOLUTION
  )
  # There the networks compute with XLA's own convolutions (the PatchGAN logits' gradient too).
  for network in ('generator', 'discriminator'):
    assert runtime.conv_impl(config.model, 'gpu', network=network) == kernels.ConvImpl()
  # A train set over a quarter of the device's memory stays on the host; so does one whose
  # device memory is unknown, and until the train set is known the key stays 'auto'.
  too_many = (
      int(
          runtime.ON_DEVICE_MAX_MEMORY_FRACTION
          * H100_MEMORY
          // device_data.train_set_bytes(config.data, 1)
      )
      + 1
  )
  assert not resolved_values(
      config, 'gpu', num_train_examples=too_many, device_memory_bytes=H100_MEMORY
  )['data.on_device']
  assert (
      resolved_values(config, 'gpu', num_train_examples=1096, device_memory_bytes=1)[
          'data.on_device'
      ]
      is False
  )
  assert resolved_values(config, 'gpu')['data.on_device'] == 'auto'
  # The documentation says the same.
  for key, value in GPU_RESOLUTION.items():
    assert f'`{key}`' in runtime.__doc__
  documented = f"'auto': CPU 1, GPU {runtime.ACCELERATOR_STEPS_PER_CALL}"
  assert documented in inspect.getsource(default_config)


def test_explicit_values_are_kept_on_every_backend():
  config = maps_config.get_config()
  config.steps_per_call, config.data.on_device = 7, False
  config.model.upsample_impl, config.model.matmul_max_pixels = 'subpixel', 16
  config.model.conv_impl = 'winograd'
  expected = {
      'steps_per_call': 7,
      'data.on_device': False,
      'model.upsample_impl': 'subpixel',
      'model.matmul_max_pixels': 16,
      'model.conv_impl': 'winograd',
  }
  for backend in ('cpu', 'gpu'):
    assert (
        resolved_values(config, backend, num_train_examples=10, device_memory_bytes=H100_MEMORY)
        == expected
    )


def one_step_metrics(config):
  _, init_fn, step_fn = train.create_train_functions(config, steps_per_epoch=1, num_train_steps=1)
  state = jax.jit(init_fn)(jax.random.PRNGKey(0))
  rng = np.random.default_rng(0)
  shape = (config.batch_size, config.data.image_size, config.data.image_size, 3)
  batch = {k: rng.integers(0, 256, shape, np.uint8) for k in ('input', 'target')}
  return jax.device_get(jax.jit(step_fn)(state, batch)[1])


def test_gpu_forms_compute_the_paper_step_of_the_cpu_forms():
  # On this CPU: the step with the forms 'auto' picks on a GPU equals the CPU-tuned one.
  config = test_config.get_config()
  config.model.winograd_min_channels = 8  # So that Winograd takes part at this size.
  cpu = one_step_metrics(runtime.resolve(config, backend='cpu'))
  gpu = one_step_metrics(
      runtime.resolve(
          config,
          backend='gpu',
          train_set_bytes=device_data.train_set_bytes(config.data, 16),
          device_memory_bytes=H100_MEMORY,
      )
  )
  for name in train.LOSS_NAMES:
    np.testing.assert_allclose(gpu[name], cpu[name], rtol=1e-5, err_msg=name)


def test_training_logs_what_auto_resolved_to(tmp_path, caplog):
  config = test_config.get_config()
  config.num_train_steps = 1
  with caplog.at_level(logging.INFO):
    train.train_and_evaluate(config, str(tmp_path))
  assert (
      'Runtime settings on cpu (cpu): steps_per_call=1, data.on_device=False, '
      'model.upsample_impl=adjoint, model.matmul_max_pixels=64, model.conv_impl=winograd'
      in caplog.text
  )


def test_copies_that_typed_auto_as_str_still_resolve():
  # copy_and_resolve_references (e.g. a copy per ablation run) makes the 'auto' fields str-typed.
  config = test_config.get_config().copy_and_resolve_references()
  assert resolved_values(config, 'cpu') == CPU_RESOLUTION
  assert (
      resolved_values(config, 'gpu', num_train_examples=16, device_memory_bytes=H100_MEMORY)
      == GPU_RESOLUTION
  )
