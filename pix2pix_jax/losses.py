"""pix2pix objectives (paper eq. 1-4), pure functions on discriminator logits.

All losses are means over every patch logit / pixel, as the reference's `GANLoss` and `L1Loss`.
"""

import jax
import jax.numpy as jnp
import optax

GAN_MODES = ('vanilla', 'lsgan')


def gan_loss(logits: jax.Array, target_is_real: bool, gan_mode: str = 'vanilla') -> jax.Array:
  """Adversarial loss of patch logits against an all-real or all-fake target.

  Args:
    logits: raw discriminator outputs (no sigmoid applied).
    target_is_real: whether every patch should be classified real.
    gan_mode: 'vanilla' — sigmoid cross-entropy computed from logits (numerically stable, the
      reference's BCEWithLogitsLoss); 'lsgan' — least squares on the raw outputs (Mao et al.).

  Returns:
    The scalar mean loss.
  """
  target = jnp.full_like(logits, 1.0 if target_is_real else 0.0)
  if gan_mode == 'vanilla':
    return jnp.mean(optax.sigmoid_binary_cross_entropy(logits, target))
  if gan_mode == 'lsgan':
    return jnp.mean(jnp.square(logits - target))
  raise ValueError(f'unknown gan_mode {gan_mode!r}; expected one of {GAN_MODES}')


def l1_loss(generated: jax.Array, target: jax.Array) -> jax.Array:
  """Mean absolute error, the paper's L1 term (on images in [-1, 1])."""
  return jnp.mean(jnp.abs(generated - target))


def discriminator_loss(real_logits: jax.Array, fake_logits: jax.Array,
                       gan_mode: str = 'vanilla') -> dict[str, jax.Array]:
  """D's objective, halved as in the paper ("we divide the objective by 2 while optimizing D").

  Returns:
    {'d_total', 'd_real', 'd_fake'}.
  """
  d_real = gan_loss(real_logits, True, gan_mode)
  d_fake = gan_loss(fake_logits, False, gan_mode)
  return {'d_total': 0.5 * (d_real + d_fake), 'd_real': d_real, 'd_fake': d_fake}


def generator_loss(fake_logits: jax.Array, generated: jax.Array, target: jax.Array,
                   lambda_l1: float, gan_mode: str = 'vanilla') -> dict[str, jax.Array]:
  """G's objective: fool D (non-saturating form) plus λ·L1 to the target (paper eq. 4).

  Returns:
    {'g_total', 'g_gan', 'g_l1'}; `g_l1` is the unweighted L1.
  """
  g_gan = gan_loss(fake_logits, True, gan_mode)
  g_l1 = l1_loss(generated, target)
  return {'g_total': g_gan + lambda_l1 * g_l1, 'g_gan': g_gan, 'g_l1': g_l1}
