"""Loss values on hand-made logits."""

import math

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
