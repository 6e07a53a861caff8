"""models.py: the networks, layer for layer the PyTorch reference's, and the options beyond the paper.

Sections: the paper's U-Net and PatchGAN (parameter counts, receptive fields, shapes, norms); the
discriminators beyond the paper (multi-scale as pix2pixHD, spectral norm as SPADE, feature
matching); the ResNet generators (the reference's, layer for layer, checked against the PyTorch peer).
"""

import functools

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image
import pytest

torch = pytest.importorskip('torch')

from configs import default as default_config  # pylint: disable=g-import-not-at-top
from configs import test as test_config
from pix2pix_jax import checkpointing, config_checks, inference, kernels, layers, losses, models
from pix2pix_jax import predict, train, train_state
from pix2pix_jax.data import images, pipeline
from reference import pytorch_peer

KEYS = {'params': jax.random.PRNGKey(0), 'dropout': jax.random.PRNGKey(1)}


def count(tree) -> int:
  return sum(x.size for x in jax.tree.leaves(tree))


def abstract_variables(module, shape):
  return jax.eval_shape(lambda: module.init(jax.random.PRNGKey(0), jnp.zeros(shape), train=True))


def model_config(**overrides):
  config = default_config.get_config().model
  config.update(overrides)
  return config


# The paper's U-Net and PatchGAN.


def test_unet256_has_the_reference_parameter_count():
  generator = models.create_generator(default_config.get_config().model, 256)
  variables = abstract_variables(generator, (1, 256, 256, 3))
  assert count(variables['params']) == 54_413_955


@pytest.mark.parametrize('size, levels', [(32, 5), (64, 6), (128, 7), (256, 8), (512, 9)])
def test_levels_follow_image_size(size, levels):
  assert models.num_unet_levels(size) == levels


@pytest.mark.parametrize('size', [16, 48, 100, 257, 0])
def test_bad_image_size_is_a_clear_error(size):
  with pytest.raises(ValueError, match=f'image size {size} is not a power of two'):
    models.num_unet_levels(size)


def test_no_norm_on_outermost_layer_and_bottleneck():
  names = set(abstract_variables(models.UNetGenerator(num_levels=8), (1, 256, 256, 3))['params'])
  assert 'down0_norm' not in names and 'down7_norm' not in names
  assert {f'down{i}_norm' for i in range(1, 7)} <= names
  with_bottleneck = models.UNetGenerator(num_levels=8, bottleneck_norm=True)
  assert 'down7_norm' in abstract_variables(with_bottleneck, (1, 256, 256, 3))['params']


# Counts of the reference's NLayerDiscriminator / PixelDiscriminator with BatchNorm, in_ch = 6.
@pytest.mark.parametrize(
    'patch_size, params, logits_side',
    [(1, 9_024, 256), (16, 139_585, 126), (70, 2_768_705, 30), (286, 11_159_361, 6)],
)
def test_discriminator_counts_and_output_shape(patch_size, params, logits_side):
  config = default_config.get_config().model
  config.patch_size = patch_size
  discriminator = models.create_discriminator(config)
  variables = abstract_variables(discriminator, (1, 256, 256, 6))
  assert count(variables['params']) == params
  logits = jax.eval_shape(
      lambda v: discriminator.apply(
          v, jnp.zeros((1, 256, 256, 6)), train=True, mutable=['batch_stats']
      )[0],
      variables,
  )
  assert logits.shape == (1, logits_side, logits_side, 1)


@pytest.mark.parametrize('patch_size', [1, 16, 70, 286])
def test_receptive_field_by_gradient_support(patch_size):
  """Pixels of the pair that one central logit depends on form a patch_size² square."""
  size = 320 if patch_size == 286 else 128
  discriminator = models.PatchDiscriminator(
      base_features=4, num_strided_layers=models.PATCH_SIZE_TO_STRIDED_LAYERS[patch_size]
  )
  x = jax.random.normal(jax.random.PRNGKey(1), (1, size, size, 6))
  variables = jax.jit(lambda: discriminator.init(jax.random.PRNGKey(0), x, train=True))()

  def central_logit(x):
    # Eval-mode BatchNorm is a per-channel affine map, so it does not couple pixels.
    logits = discriminator.apply(variables, x, train=False)
    return logits[0, logits.shape[1] // 2, logits.shape[2] // 2, 0]

  support = np.asarray(jnp.abs(jax.jit(jax.grad(central_logit))(x)).sum(axis=(0, 3)) > 0)
  rows, cols = np.nonzero(support.any(axis=1))[0], np.nonzero(support.any(axis=0))[0]
  assert rows[-1] - rows[0] + 1 == patch_size
  assert cols[-1] - cols[0] + 1 == patch_size
  assert support.sum() == patch_size**2


def test_generator_output_range_noise_and_init():
  generator = models.UNetGenerator(num_levels=6, base_features=8)
  x = jax.random.uniform(jax.random.PRNGKey(0), (2, 64, 64, 3), minval=-1, maxval=1)
  variables = jax.jit(lambda: generator.init(jax.random.PRNGKey(0), x, train=True))()
  apply = jax.jit(
      lambda rng: generator.apply(
          variables, x, train=True, rngs={'dropout': rng}, mutable=['batch_stats']
      )[0]
  )
  out_a, out_b = apply(jax.random.PRNGKey(1)), apply(jax.random.PRNGKey(2))
  assert out_a.shape == (2, 64, 64, 3)
  assert float(jnp.max(jnp.abs(out_a))) <= 1.0
  assert not np.allclose(out_a, out_b)  # Dropout is the noise source in train mode...
  deterministic = generator.apply(variables, x, train=False)
  np.testing.assert_array_equal(deterministic, generator.apply(variables, x, train=False))
  # ... and the init is the paper's: conv weights N(0, 0.02), BatchNorm scales N(1, 0.02).
  kernels = np.concatenate(
      [np.ravel(p['kernel']) for p in variables['params'].values() if 'kernel' in p]
  )
  scales = np.concatenate(
      [np.ravel(p['scale']) for p in variables['params'].values() if 'scale' in p]
  )
  assert abs(kernels.mean()) < 2e-3 and 0.018 < kernels.std() < 0.022
  assert abs(scales.mean() - 1) < 5e-3 and 0.012 < scales.std() < 0.028


def test_instance_norm_has_no_running_stats_and_biased_convs():
  config = default_config.get_config().model
  config.norm = 'instance'
  variables = abstract_variables(models.create_discriminator(config), (1, 64, 64, 6))
  assert not variables.get('batch_stats')
  assert 'bias' in variables['params']['conv1']
  generator = models.create_generator(config, 64)
  assert not abstract_variables(generator, (1, 64, 64, 3)).get('batch_stats')


def test_grouped_batch_norm_is_batch_norm_of_each_group():
  x = jax.random.normal(jax.random.PRNGKey(0), (4, 3, 5, 6)) * 3 + 1
  reference = nn.BatchNorm(use_running_average=False, momentum=0.9, epsilon=1e-5)
  grouped = layers.GroupedBatchNorm(2, use_running_average=False)
  variables = reference.init(jax.random.PRNGKey(1), x)
  # Same parameters and statistics as nn.BatchNorm: checkpoints work with either.
  assert jax.tree.map(jnp.shape, variables) == jax.tree.map(
      jnp.shape, grouped.init(jax.random.PRNGKey(1), x)
  )
  out, updated = grouped.apply(variables, x, mutable=['batch_stats'])
  halves = [reference.apply(variables, x[i : i + 2], mutable=['batch_stats']) for i in (0, 2)]
  np.testing.assert_allclose(out, jnp.concatenate([h[0] for h in halves]), rtol=1e-4, atol=1e-4)
  for name in ('mean', 'var'):  # Running statistics move by the groups' mean.
    expected = (halves[0][1]['batch_stats'][name] + halves[1][1]['batch_stats'][name]) / 2
    if name == 'var':  # nn.BatchNorm's moves by the biased variance, ours by PyTorch's unbiased.
      n = 2 * 3 * 5
      expected = 0.9 * variables['batch_stats']['var'] + (
          expected - 0.9 * variables['batch_stats']['var']
      ) * n / (n - 1)
    np.testing.assert_allclose(updated['batch_stats'][name], expected, rtol=1e-5, atol=1e-6)
  one_group, _ = layers.GroupedBatchNorm(1, use_running_average=False).apply(
      variables, x, mutable=['batch_stats']
  )
  np.testing.assert_allclose(
      one_group, reference.apply(variables, x, mutable=['batch_stats'])[0], rtol=1e-4, atol=1e-4
  )
  with pytest.raises(ValueError, match='does not split into 3 BatchNorm groups'):
    layers.GroupedBatchNorm(3, use_running_average=False).apply(
        variables, x, mutable=['batch_stats']
    )


@pytest.mark.parametrize('shape', [(1, 2, 2, 8), (4, 6, 5, 3)])  # The U-Net's 2×2 level at batch 1.
def test_batch_norm_is_pytorchs_running_statistics_included(shape):
  torch = pytest.importorskip('torch')
  x = np.array(jax.random.normal(jax.random.PRNGKey(0), (3,) + shape) * 2 + 0.5)  # Writable.
  ours = layers.norm_layer('batch', train=True, init_std=0.02, dtype=jnp.float32, name='bn')
  variables = ours.init(jax.random.PRNGKey(1), x[0])
  reference = torch.nn.BatchNorm2d(shape[-1], momentum=0.1, eps=1e-5)
  with torch.no_grad():
    reference.weight.copy_(torch.from_numpy(np.array(variables['params']['scale'])))
  for step in range(3):  # Train-mode calls: each updates the running statistics.
    out, updates = ours.apply(variables, x[step], mutable=['batch_stats'])
    variables = {**variables, **updates}
    expected = reference(torch.from_numpy(x[step]).permute(0, 3, 1, 2))
    np.testing.assert_allclose(
        out, expected.permute(0, 2, 3, 1).detach().numpy(), rtol=1e-5, atol=1e-5
    )
  np.testing.assert_allclose(variables['batch_stats']['mean'], reference.running_mean, rtol=1e-5)
  np.testing.assert_allclose(variables['batch_stats']['var'], reference.running_var, rtol=1e-5)
  test_mode = layers.norm_layer('batch', train=False, init_std=0.02, dtype=jnp.float32, name='bn')
  reference.eval()
  expected = reference(torch.from_numpy(x[0]).permute(0, 3, 1, 2))
  np.testing.assert_allclose(
      test_mode.apply(variables, x[0]),
      expected.permute(0, 2, 3, 1).detach().numpy(),
      rtol=1e-5,
      atol=1e-5,
  )


def test_unet_takes_multiples_of_its_size_and_names_the_sizes_otherwise():
  generator = models.UNetGenerator(num_levels=2, base_features=4)
  variables = generator.init(jax.random.PRNGKey(0), np.zeros((1, 4, 4, 3)), train=False)
  assert generator.apply(variables, np.zeros((1, 8, 12, 3)), train=False).shape == (1, 8, 12, 3)
  with pytest.raises(
      ValueError, match='2-level U-Net takes images whose sides are multiples of 4, got 8×10'
  ):
    generator.apply(variables, np.zeros((1, 8, 10, 3)), train=False)


# Discriminators beyond the paper: multi-scale (pix2pixHD), spectral norm (SPADE), features.


def fixed_batch(config):
  source = pipeline.create_source(config.data, 'eval', seed=0)
  batch = next(pipeline.eval_batches(source, config.data, batch_size=2))
  return {'input': batch['input'], 'target': batch['target']}


def test_the_paper_settings_give_todays_discriminator_and_parameter_tree():
  # num_discriminators=1, d_spectral_norm=False: the PatchGAN and tree of checkpoints made before.
  discriminator = models.create_discriminator(model_config(ndf=8))
  assert type(discriminator) is models.PatchDiscriminator
  variables = abstract_variables(discriminator, (1, 64, 64, 6))
  assert jax.tree.map(lambda x: x.shape, variables) == {
      'params': {
          'conv0': {'kernel': (4, 4, 6, 8), 'bias': (8,)},
          'conv1': {'kernel': (4, 4, 8, 16)},
          'conv1_norm': {'scale': (16,), 'bias': (16,)},
          'conv2': {'kernel': (4, 4, 16, 32)},
          'conv2_norm': {'scale': (32,), 'bias': (32,)},
          'conv3': {'kernel': (4, 4, 32, 64)},
          'conv3_norm': {'scale': (64,), 'bias': (64,)},
          'logits': {'kernel': (4, 4, 64, 1), 'bias': (1,)},
      },
      'batch_stats': {
          f'conv{n}_norm': {'mean': (c,), 'var': (c,)} for n, c in ((1, 16), (2, 32), (3, 64))
      },
  }
  logits = jax.eval_shape(
      lambda v: discriminator.apply(v, jnp.zeros((1, 64, 64, 6)), train=False), variables
  )
  assert logits.shape == (1, 6, 6, 1)  # The default call returns the logits alone.


@pytest.mark.parametrize('shape', [(2, 16, 16, 3), (1, 13, 10, 2), (1, 1, 2, 1)])
def test_downsample_is_torchs_avg_pool_without_padding_in_the_count(shape):
  x = np.random.default_rng(0).normal(size=shape).astype(np.float32)
  pool = torch.nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False)
  expected = pool(torch.from_numpy(x).permute(0, 3, 1, 2)).permute(0, 2, 3, 1).numpy()
  np.testing.assert_allclose(models.downsample(jnp.asarray(x)), expected, rtol=1e-6, atol=1e-6)


def test_multiscale_discriminator_shapes_parameters_and_features():
  single = models.create_discriminator(model_config(ndf=8, patch_size=16))
  multi = models.create_discriminator(model_config(ndf=8, patch_size=16, num_discriminators=3))
  assert isinstance(multi, models.MultiScaleDiscriminator)
  single_variables = abstract_variables(single, (1, 64, 64, 6))
  variables = abstract_variables(multi, (1, 64, 64, 6))
  # Three copies, each its own parameters: scale0 (full size), scale1, scale2.
  assert set(variables['params']) == {'scale0', 'scale1', 'scale2'}
  assert count(variables['params']) == 3 * count(single_variables['params']) == 3 * 3_113
  for scale in variables['params'].values():
    assert jax.tree.map(lambda x: x.shape, scale) == jax.tree.map(
        lambda x: x.shape, single_variables['params']
    )

  def run(return_features):
    return jax.eval_shape(
        lambda v: multi.apply(
            v,
            jnp.zeros((2, 64, 64, 6)),
            train=True,
            return_features=return_features,
            mutable=['batch_stats'],
        )[0],
        variables,
    )

  logits = run(return_features=False)
  # Patch logits at 64, 32 and 16 pixels: side / 2 - 2.
  assert [x.shape for x in logits] == [(2, 30, 30, 1), (2, 14, 14, 1), (2, 6, 6, 1)]
  with_features = run(return_features=True)
  assert [[f.shape for f in features] for _, features in with_features] == [
      [(2, 32, 32, 8), (2, 31, 31, 16)],
      [(2, 16, 16, 8), (2, 15, 15, 16)],
      [(2, 8, 8, 8), (2, 7, 7, 16)],
  ]


def test_features_are_the_activations_before_the_logits_layer():
  discriminator = models.PatchDiscriminator(base_features=4, num_strided_layers=3, norm='instance')
  x = jax.random.normal(jax.random.PRNGKey(1), (1, 32, 32, 6))
  variables = discriminator.init(jax.random.PRNGKey(0), x, train=True)
  logits, features = discriminator.apply(variables, x, train=True, return_features=True)
  assert len(features) == 4  # n_layers_D + 1: pix2pixHD's intermediate outputs.
  np.testing.assert_array_equal(logits, discriminator.apply(variables, x, train=True))
  last = layers.Logits4x4(1, name='logits').apply(
      {'params': variables['params']['logits']}, features[-1]
  )
  np.testing.assert_allclose(last, logits, rtol=1e-5, atol=1e-6)


def test_spectral_norm_wraps_the_middle_convs_and_keeps_the_parameter_tree():
  plain = abstract_variables(models.create_discriminator(model_config(ndf=8)), (1, 64, 64, 6))
  normalised = abstract_variables(
      models.create_discriminator(model_config(ndf=8, d_spectral_norm=True)), (1, 64, 64, 6)
  )
  assert jax.tree.map(lambda x: x.shape, normalised['params']) == jax.tree.map(
      lambda x: x.shape, plain['params']
  )
  # SPADE: conv1 ... conv3 (not conv0, not the logits); u and σ in 'batch_stats'.
  spectral = {
      k: jax.tree.map(lambda x: x.shape, v)
      for k, v in normalised['batch_stats'].items()
      if k.endswith('_spectral_norm')
  }
  assert spectral == {
      f'conv{n}_spectral_norm': {f'conv{n}/kernel/u': (1, c), f'conv{n}/kernel/sigma': ()}
      for n, c in ((1, 16), (2, 32), (3, 64))
  }
  assert set(normalised['batch_stats']) - set(spectral) == set(plain['batch_stats'])


def kernel_with_singular_values(singular_values, c_in, rng):
  """A (4, 4, c_in, c_out) kernel whose (16·c_in, c_out) matrix has these singular values."""
  c_out = len(singular_values)
  left, _ = np.linalg.qr(rng.normal(size=(16 * c_in, c_out)))
  right, _ = np.linalg.qr(rng.normal(size=(c_out, c_out)))
  return (left * singular_values @ right.T).reshape(4, 4, c_in, c_out).astype(np.float32)


# Winograd for this layer: spectral norm works through any `conv_impl`.
WINOGRAD = kernels.ConvImpl(winograd_min_channels=1)


class SpectralConv(nn.Module):
  """One 4×4 conv under spectral norm, as PatchDiscriminator wraps its middle convs."""

  @nn.compact
  def __call__(self, x, *, update_stats):
    conv = layers.Conv4x4(8, use_bias=False, conv_impl=WINOGRAD, name='conv')
    return nn.SpectralNorm(conv, collection_name='batch_stats', name='sn')(
        x, update_stats=update_stats
    )


def test_spectral_norm_of_a_4x4_conv_divides_by_the_largest_singular_value():
  rng = np.random.default_rng(0)
  singular_values = np.array([3.0, 1.5, 1.0, 0.5, 0.25, 0.1, 0.1, 0.1])
  kernel = kernel_with_singular_values(singular_values, c_in=8, rng=rng)
  layer = SpectralConv()
  x = jnp.asarray(rng.normal(size=(1, 12, 12, 8)), jnp.float32)
  variables = layer.init(jax.random.PRNGKey(0), x, update_stats=True)
  variables = {
      'params': {'conv': {'kernel': jnp.asarray(kernel)}},
      'batch_stats': variables['batch_stats'],
  }
  step = jax.jit(lambda v: layer.apply(v, x, update_stats=True, mutable=['batch_stats']))
  for _ in range(20):  # One power-iteration step per train-mode call.
    y, updates = step(variables)
    variables = variables | updates
  sigma = float(variables['batch_stats']['sn']['conv/kernel/sigma'])
  assert sigma == pytest.approx(3.0, rel=1e-4)
  normalised = kernel.reshape(-1, 8) / sigma
  assert np.linalg.svd(normalised, compute_uv=False)[0] == pytest.approx(1.0, rel=1e-4)
  # The layer is the plain conv with the normalised kernel; eval mode leaves u and σ as they are.
  conv = layers.Conv4x4(8, use_bias=False, conv_impl=WINOGRAD)
  plain = conv.apply({'params': {'kernel': jnp.asarray(kernel) / sigma}}, x)
  np.testing.assert_allclose(y, plain, rtol=1e-4, atol=1e-5)
  eval_out, eval_updates = layer.apply(variables, x, update_stats=False, mutable=['batch_stats'])
  jax.tree.map(
      np.testing.assert_array_equal, eval_updates, {'batch_stats': variables['batch_stats']}
  )
  np.testing.assert_allclose(eval_out, plain, rtol=1e-4, atol=1e-5)


def test_a_too_small_coarsest_scale_names_the_three_keys():
  config = test_config.get_config()  # 32×32.
  config.model.num_discriminators = 2
  with pytest.raises(ValueError) as error:
    config_checks.validate_config(config, 1)
  message = str(error.value)
  for key in (
      'config.model.num_discriminators=2',
      'config.model.patch_size=70',
      'config.data.image_size=32',
      'image_size >= 47',
  ):
    assert key in message, message
  config.model.patch_size = 16  # 32 -> 16 pixels: 6×6 logits at the coarsest scale.
  config_checks.validate_config(config, 1)
  # The minimum named is exact: at 47 pixels the coarsest 70×70 PatchGAN has one logit, at 46 none.
  multi = models.create_discriminator(model_config(ndf=8, num_discriminators=2))
  for side, logits_side in ((47, 1), (46, 0)):
    pairs = jnp.zeros((1, side, side, 6))
    variables = abstract_variables(multi, pairs.shape)
    logits = jax.eval_shape(functools.partial(multi.apply, x=pairs, train=False), variables)
    assert logits[-1].shape[1] == logits_side


def beyond_the_paper_config():
  config = test_config.get_config()
  config.model.patch_size = 16  # At 32×32 the 70×70 PatchGAN leaves no logit at half size.
  config.model.num_discriminators = 2
  config.model.d_spectral_norm = True
  config.loss.gan_mode = 'hinge'
  config.loss.lambda_feat = 10.0
  return config


def test_feature_matching_targets_the_updated_discriminator():
  config = test_config.get_config()
  config.model.norm = 'instance'  # D has no state: its features follow from its params alone.
  config.loss.lambda_feat = 10.0
  config.optim.learning_rate = 1e-2  # One step moves D's features clearly.
  generator, init_fn, step_fn = train.create_train_functions(
      config, steps_per_epoch=8, num_train_steps=100
  )
  discriminator = models.create_discriminator(config.model)
  state = jax.jit(init_fn)(jax.random.PRNGKey(0))
  batch = fixed_batch(config)
  new_state, metrics = jax.jit(step_fn)(state, batch)
  assert set(train.loss_names(metrics)) == set(train.LOSS_NAMES) | {'g_feat'}

  inputs, targets = (images.to_float(batch[k]) for k in ('input', 'target'))
  fake, _ = train_state.apply_train_mode(
      generator,
      state.generator.params,
      state.generator.batch_stats,
      inputs,
      jax.random.fold_in(state.rng, state.step),
  )

  def feature_matching(d_params):
    def features(outputs):
      pairs = jnp.concatenate([inputs, outputs], axis=-1)
      _, features = discriminator.apply(
          {'params': d_params}, pairs, train=True, return_features=True
      )
      return [features]  # One scale.

    return float(losses.feature_matching_loss(features(fake), features(targets)))

  assert float(metrics['g_feat']) == pytest.approx(
      feature_matching(new_state.discriminator.params), rel=1e-4
  )
  assert float(metrics['g_feat']) != pytest.approx(
      feature_matching(state.discriminator.params), rel=1e-3
  )


def test_multiscale_hinge_spectral_feature_matching_lowers_l1():
  config = beyond_the_paper_config()
  config.optim.learning_rate = 1e-3
  _, init_fn, step_fn = train.create_train_functions(config, steps_per_epoch=8, num_train_steps=100)
  state, step = jax.jit(init_fn)(jax.random.PRNGKey(0)), jax.jit(step_fn, donate_argnums=0)
  batch = fixed_batch(config)
  l1 = []
  for _ in range(30):
    state, metrics = step(state, batch)
    l1.append(float(metrics['g_l1']))
    assert np.isfinite(float(metrics['g_feat']))
  assert np.mean(l1[-5:]) < 0.6 * np.mean(l1[:3]), l1


def test_multiscale_hinge_spectral_feature_matching_trains_and_resumes(tmp_path):
  config = beyond_the_paper_config()
  config.num_train_steps = 2
  first = jax.device_get(train.train_and_evaluate(config, str(tmp_path)))
  config.num_train_steps = 3
  resumed = jax.device_get(train.train_and_evaluate(config, str(tmp_path)))
  assert int(resumed.step) == 3
  steps = sorted(int(p.name) for p in (tmp_path / 'checkpoints').iterdir() if p.name.isdigit())
  assert steps == [2, 3]
  u = 'scale1', 'conv1_spectral_norm', 'conv1/kernel/u'
  before, after = (s.discriminator.batch_stats[u[0]][u[1]][u[2]] for s in (first, resumed))
  assert not np.array_equal(before, after)  # Power iteration went on from the restored u.
  assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(resumed))


def test_check_finite_names_the_feature_matching_loss():
  good = {name: 1.0 for name in train.LOSS_NAMES}
  train.check_finite([good, good | {'g_feat': 2.0}], first_step=1)
  with pytest.raises(FloatingPointError, match=r'step 2: g_feat=inf'):
    train.check_finite([good, good | {'g_feat': float('inf')}], first_step=1)


# The ResNet generators (models.ResnetGenerator): the reference's, layer for layer; they train.


def abstract_params(module, shape):
  return jax.eval_shape(lambda: module.init(KEYS, jnp.zeros(shape), train=True))['params']


@pytest.mark.parametrize(
    'generator, norm, expected',
    [
        ('resnet_9blocks', 'batch', 11_383_427),
        ('resnet_9blocks', 'instance', 11_378_179),
        ('resnet_6blocks', 'batch', 7_841_411),
        ('resnet_6blocks', 'instance', 7_837_699),
    ],
)
def test_parameter_counts_at_256_equal_the_reference(generator, norm, expected):
  ours = models.create_generator(model_config(generator=generator, norm=norm), 256)
  count = sum(x.size for x in jax.tree.leaves(abstract_params(ours, (1, 256, 256, 3))))
  with torch.device('meta'):  # Shapes only: no 11M-parameter init.
    peer = pytorch_peer.create_generator(256, 64, norm, generator=generator)
  assert count == pytorch_peer.count_parameters(peer) == expected


def test_non_square_multiple_of_4_keeps_its_shape_and_other_sides_are_named():
  generator = models.ResnetGenerator(num_blocks=1, base_features=4, dropout_rate=0.0)
  x = jnp.zeros((1, 20, 36, 3))
  variables = generator.init(KEYS, x, train=False)
  out = generator.apply(variables, jnp.ones((2, 20, 36, 3)), train=False)
  assert out.shape == (2, 20, 36, 3) and out.dtype == jnp.float32
  with pytest.raises(ValueError, match=r'multiples of 4, at least 8, got 20×34'):
    generator.apply(variables, jnp.zeros((1, 20, 34, 3)), train=False)


@pytest.mark.parametrize('norm', ['batch', 'instance'])
def test_convolutions_have_biases_only_with_instance_norm(norm):
  params = abstract_params(
      models.ResnetGenerator(num_blocks=1, base_features=4, norm=norm), (1, 16, 16, 3)
  )
  flat = flax.traverse_util.flatten_dict(params, sep='/')
  convs = ['stem', 'down0', 'down1', 'block0/conv0', 'block0/conv1', 'up0', 'up1']
  for conv in convs:
    assert (f'{conv}/bias' in flat) == (norm == 'instance'), conv
    assert (f'{conv}_norm/scale' in flat) == (norm == 'batch'), conv  # InstanceNorm: no affine.
  assert 'out/bias' in flat  # The last conv, with no norm after it, always has one.


def test_conv_transpose_3x3_is_torchs_with_the_documented_weight_mapping():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(2, 5, 7, 6)).astype(np.float32)
  weight = rng.normal(size=(6, 4, 3, 3)).astype(np.float32)  # PyTorch: (C_in, C_out, 3, 3).
  bias = rng.normal(size=(4,)).astype(np.float32)
  expected = (
      torch.nn.functional.conv_transpose2d(
          torch.from_numpy(x).permute(0, 3, 1, 2),
          torch.from_numpy(weight),
          torch.from_numpy(bias),
          stride=2,
          padding=1,
          output_padding=1,
      )
      .permute(0, 2, 3, 1)
      .numpy()
  )

  def ours(kernel):
    return np.asarray(
        layers.ConvTranspose3x3(4).apply({'params': {'kernel': kernel, 'bias': bias}}, x)
    )

  assert expected.shape == (2, 10, 14, 4)
  np.testing.assert_allclose(ours(weight.transpose(2, 3, 0, 1)), expected, atol=1e-5)
  # The mapping is not flipped: a flipped kernel computes something else.
  assert not np.allclose(ours(weight[:, :, ::-1, ::-1].transpose(2, 3, 0, 1)), expected, atol=1e-2)


def copy_into_peer(peer, params):
  """Our ResnetGenerator's params into the peer's `pytorch_peer.ResnetGenerator`."""
  modules = pytorch_peer.modules(peer)
  written = 0
  with torch.no_grad():
    for path, value in flax.traverse_util.flatten_dict(params, sep='/').items():
      module_path, name = path.rsplit('/', 1)
      module = modules[module_path]
      tensor = torch.from_numpy(np.array(value))
      # Ours (kh, kw, in, out); Conv2d (out, in, kh, kw); ConvTranspose2d (in, out, kh, kw).
      if name == 'kernel':
        tensor = tensor.permute(
            (2, 3, 0, 1) if isinstance(module, torch.nn.ConvTranspose2d) else (3, 2, 0, 1)
        )
      target = {'kernel': module.weight, 'scale': module.weight, 'bias': module.bias}[name]
      target.copy_(tensor)
      written += tensor.numel()
  assert written == pytorch_peer.count_parameters(peer)  # Every peer parameter came from ours.


@pytest.mark.parametrize('norm', ['batch', 'instance'])
def test_forward_equals_the_peers_with_copied_weights(norm):
  """Train mode (BatchNorm with the batch's statistics), dropout off, a non-square 24×40."""
  ours = models.ResnetGenerator(num_blocks=2, base_features=4, norm=norm, dropout_rate=0.0)
  x = np.random.default_rng(0).uniform(-1, 1, (2, 24, 40, 3)).astype(np.float32)
  variables = ours.init(KEYS, jnp.asarray(x), train=True)
  expected, _ = ours.apply(variables, jnp.asarray(x), train=True, mutable=['batch_stats'])
  peer = pytorch_peer.ResnetGenerator(
      3, 3, 4, pytorch_peer.get_norm_layer(norm), use_dropout=False, n_blocks=2
  ).train()
  copy_into_peer(peer, variables['params'])
  with torch.no_grad():
    out = peer(torch.from_numpy(x).permute(0, 3, 1, 2)).permute(0, 2, 3, 1).numpy()
  assert np.abs(np.asarray(expected)).max() > 0.05  # Not a trivially small output.
  np.testing.assert_allclose(np.asarray(expected), out, atol=2e-5)


def test_dropout_rate_puts_one_dropout_in_every_block():
  x = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (1, 16, 16, 3)), jnp.float32)

  def outputs(rate):
    generator = models.ResnetGenerator(num_blocks=2, base_features=4, dropout_rate=rate)
    variables = generator.init(KEYS, x, train=False)
    return [
        np.asarray(
            generator.apply(
                variables,
                x,
                train=True,
                mutable=['batch_stats'],
                rngs={'dropout': jax.random.PRNGKey(k)},
            )[0]
        )
        for k in (0, 1)
    ]

  with_dropout, without = outputs(0.5), outputs(0.0)
  assert not np.allclose(*with_dropout)  # Noise: two dropout keys, two outputs.
  np.testing.assert_array_equal(*without)


def resnet_test_config():
  config = test_config.get_config()
  config.model.generator = 'resnet_6blocks'
  config.model.ngf = 4
  return config


def test_resnet_6blocks_training_lowers_l1():
  config = resnet_test_config()
  config.optim.learning_rate = 1e-3
  config.model.dropout_rate = 0.0  # Fitting one batch: without noise, as GAN Compression trains.
  _, init_fn, step_fn = train.create_train_functions(config, steps_per_epoch=8, num_train_steps=100)
  state, step = jax.jit(init_fn)(jax.random.PRNGKey(0)), jax.jit(step_fn, donate_argnums=0)
  source = pipeline.create_source(config.data, 'eval', seed=0)
  batch = next(pipeline.eval_batches(source, config.data, batch_size=2))
  batch = {'input': batch['input'], 'target': batch['target']}
  l1 = []
  for _ in range(30):
    state, metrics = step(state, batch)
    l1.append(float(metrics['g_l1']))
  assert np.mean(l1[-5:]) < 0.6 * np.mean(l1[:3]), l1


def test_resnet_run_resumes_and_predicts_at_native_resolution(tmp_path):
  config = resnet_test_config()
  config.num_train_steps = 2
  train.train_and_evaluate(config, str(tmp_path / 'run'))
  config.num_train_steps = 3
  state = train.train_and_evaluate(config, str(tmp_path / 'run'))
  assert int(state.step) == 3
  assert sorted(
      int(p.name) for p in (tmp_path / 'run' / 'checkpoints').iterdir() if p.name.isdigit()
  ) == [2, 3]
  # Native resolution pads to a multiple of 4 (not of the U-Net's 32) and crops back.
  Image.fromarray(np.full((37, 50, 3), 128, np.uint8)).save(tmp_path / 'odd.png')
  written = predict.predict(
      config,
      str(tmp_path / 'run'),
      str(tmp_path / 'odd.png'),
      str(tmp_path / 'out'),
      resolution='native',
  )
  assert Image.open(written[0]).size == (50, 37)


def test_unet_checkpoint_is_refused_by_a_resnet_config(trained_workdir):
  config = test_config.get_config()
  config.model.generator = 'resnet_9blocks'
  with pytest.raises(
      checkpointing.CheckpointMismatchError,
      match="model.generator: checkpoint 'unet', config 'resnet_9blocks'",
  ):
    inference.restore_trained_generator(config, str(trained_workdir))


def test_side_multiple_is_what_native_prediction_pads_to():
  assert models.side_multiple(models.UNetGenerator(num_levels=5)) == 32
  assert (
      models.side_multiple(models.create_generator(model_config(generator='resnet_9blocks'), 256))
      == 4
  )
