"""Discriminators beyond the paper: multi-scale (pix2pixHD), spectral norm (SPADE), features."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from configs import default as default_config
from configs import test as test_config
from pix2pix_jax import config_checks, kernels, layers, losses, models, train, train_state
from pix2pix_jax.data import images, pipeline


def count(tree) -> int:
  return sum(x.size for x in jax.tree.leaves(tree))


def abstract_variables(module, shape):
  return jax.eval_shape(lambda: module.init(jax.random.PRNGKey(0), jnp.zeros(shape), train=True))


def fixed_batch(config):
  source = pipeline.create_source(config.data, 'eval', seed=0)
  batch = next(pipeline.eval_batches(source, config.data, batch_size=2))
  return {'input': batch['input'], 'target': batch['target']}


def model_config(**overrides):
  config = default_config.get_config().model
  config.ndf = 8
  for key, value in overrides.items():
    config[key] = value
  return config


def test_the_paper_settings_give_todays_discriminator_and_parameter_tree():
  # num_discriminators=1, d_spectral_norm=False: the PatchGAN and tree of checkpoints made before.
  discriminator = models.create_discriminator(model_config())
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
  single = models.create_discriminator(model_config(patch_size=16))
  multi = models.create_discriminator(model_config(patch_size=16, num_discriminators=3))
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
  plain = abstract_variables(models.create_discriminator(model_config()), (1, 64, 64, 6))
  normalised = abstract_variables(
      models.create_discriminator(model_config(d_spectral_norm=True)), (1, 64, 64, 6)
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
  multi = models.create_discriminator(model_config(num_discriminators=2))
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
