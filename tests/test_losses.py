"""Loss values on hand-made logits."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pix2pix_jax import losses


def test_vanilla_gan_loss_is_bce_on_logits():
  zeros = jnp.zeros((1, 4, 4, 1))
  assert float(losses.gan_loss(zeros, True)) == pytest.approx(math.log(2), rel=1e-6)
  assert float(losses.gan_loss(zeros, False)) == pytest.approx(math.log(2), rel=1e-6)
  logits = jnp.array([2.0, -1.0])
  expected_real = np.mean([math.log1p(math.exp(-2.0)), math.log1p(math.exp(1.0))])
  assert float(losses.gan_loss(logits, True)) == pytest.approx(expected_real, rel=1e-6)


def test_vanilla_gan_loss_is_stable_for_large_logits():
  logits = jnp.array([100.0, -100.0])
  assert float(losses.gan_loss(logits, True)) == pytest.approx(50.0, rel=1e-6)
  assert float(losses.gan_loss(logits, False)) == pytest.approx(50.0, rel=1e-6)
  assert float(losses.gan_loss(jnp.array([1e4]), True)) == 0.0


def test_lsgan_loss():
  logits = jnp.array([0.0, 2.0])
  assert float(losses.gan_loss(logits, True, 'lsgan')) == pytest.approx(1.0)
  assert float(losses.gan_loss(logits, False, 'lsgan')) == pytest.approx(2.0)


def test_unknown_gan_mode():
  with pytest.raises(ValueError, match='wgan'):
    losses.gan_loss(jnp.zeros(2), True, 'wgan')


def test_discriminator_loss_is_halved_sum():
  out = losses.discriminator_loss(jnp.array([0.0]), jnp.array([0.0]))
  assert float(out['d_real']) == pytest.approx(math.log(2), rel=1e-6)
  assert float(out['d_total']) == pytest.approx(math.log(2), rel=1e-6)
  out = losses.discriminator_loss(jnp.array([1.0]), jnp.array([1.0]), 'lsgan')
  assert (float(out['d_real']), float(out['d_fake']), float(out['d_total'])) == (0.0, 1.0, 0.5)


def test_generator_loss_adds_weighted_l1():
  generated = jnp.zeros((1, 2, 2, 3))
  target = jnp.full((1, 2, 2, 3), 0.5)
  out = losses.generator_loss(jnp.zeros((1, 1, 1, 1)), generated, target, lambda_l1=100.0)
  assert float(out['g_l1']) == pytest.approx(0.5)
  assert float(out['g_gan']) == pytest.approx(math.log(2), rel=1e-6)
  assert float(out['g_total']) == pytest.approx(math.log(2) + 50.0, rel=1e-6)


def test_hinge_losses_for_discriminator_and_generator():
  real = jnp.array([2.0, 0.5, -1.0])  # relu(1 - x): 0, 0.5, 2.
  fake = jnp.array([-2.0, 0.5, 1.0])  # relu(1 + x): 0, 1.5, 2.
  assert float(losses.gan_loss(real, True, 'hinge')) == pytest.approx(2.5 / 3)
  assert float(losses.gan_loss(fake, False, 'hinge')) == pytest.approx(3.5 / 3)
  out = losses.discriminator_loss(real, fake, 'hinge')
  assert float(out['d_total']) == pytest.approx(1.0)  # Halved, as the other modes.
  # G: -mean(D(fake)), SPADE's; no margin, so G keeps pushing fakes up.
  g_hinge = losses.gan_loss(fake, True, 'hinge', for_discriminator=False)
  assert float(g_hinge) == pytest.approx(0.5 / 3)
  out = losses.generator_loss(fake, jnp.zeros(2), jnp.ones(2), lambda_l1=10.0, gan_mode='hinge')
  assert float(out['g_gan']) == pytest.approx(0.5 / 3)
  assert float(out['g_total']) == pytest.approx(0.5 / 3 + 10.0)
  with pytest.raises(ValueError, match='aims for real'):
    losses.gan_loss(fake, False, 'hinge', for_discriminator=False)


def test_multiscale_gan_losses_are_means_over_scales():
  scales = [jnp.zeros((1, 4, 4, 1)), jnp.ones((1, 2, 2, 1)), jnp.full((1, 1, 1, 1), 3.0)]
  # LSGAN against real: 1, 0, 4 -> mean 5/3 (pix2pixHD would sum them: 5).
  out = losses.discriminator_loss(scales, scales, 'lsgan')
  assert float(out['d_real']) == pytest.approx(5 / 3)
  assert float(out['d_fake']) == pytest.approx((0 + 1 + 9) / 3)
  assert float(out['d_total']) == pytest.approx(0.5 * (5 / 3 + 10 / 3))
  g = losses.generator_loss(scales, jnp.zeros(1), jnp.zeros(1), lambda_l1=100.0, gan_mode='lsgan')
  assert float(g['g_gan']) == pytest.approx(5 / 3)
  # One scale, as an array or a list of one: exactly the single-D loss.
  single = losses.discriminator_loss(scales[2], scales[0], 'vanilla')
  listed = losses.discriminator_loss([scales[2]], [scales[0]], 'vanilla')
  assert all(float(single[k]) == float(listed[k]) for k in single)


def test_feature_matching_weights_are_pix2pixhds():
  def features(values):
    return [jnp.full((1, 2, 2, 3), v) for v in values]

  zeros = features([0.0] * 4)
  # Two scales of 4 features (n_layers_D = 3: weight 4/4 per layer), L1s 1, 2, 3, 4 and 0.5 × 4:
  # (10 + 2) / 2 scales = 6.
  loss = losses.feature_matching_loss([features([1, 2, 3, 4]), features([0.5] * 4)], [zeros, zeros])
  assert float(loss) == pytest.approx(6.0)
  # Two features (the PixelGAN's): weight 4/2 each.
  loss = losses.feature_matching_loss([features([1.0, 0.25])], [features([0.0, 0.0])])
  assert float(loss) == pytest.approx(2.5)
  # The real features are detached: G's gradient flows through the fake ones only.
  real_grad = jax.grad(lambda r: losses.feature_matching_loss([features([1.0])], [[r]]))(
      jnp.zeros((1, 2, 2, 3))
  )
  assert not np.any(real_grad)
  out = losses.generator_loss(
      jnp.zeros(1),
      jnp.zeros(1),
      jnp.zeros(1),
      lambda_l1=100.0,
      fake_features=[features([1, 2, 3, 4])],
      real_features=[zeros],
      lambda_feat=10.0,
  )
  assert float(out['g_feat']) == pytest.approx(10.0)
  assert float(out['g_total']) == pytest.approx(math.log(2) + 100.0)
