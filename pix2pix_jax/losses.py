"""pix2pix objectives (paper eq. 1-4), pure functions on discriminator logits.

All losses are means over every patch logit / pixel, as the reference's `GANLoss` and `L1Loss`.
Beyond the paper: the hinge loss (SPADE), the mean over the scales of a multi-scale D and the
feature-matching loss (pix2pixHD).
"""

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import optax

GAN_MODES = ('vanilla', 'lsgan', 'hinge')

# One PatchGAN's logits, or one array per scale of a multi-scale discriminator.
Logits = jax.Array | Sequence[jax.Array]


def gan_loss(
    logits: jax.Array,
    target_is_real: bool,
    gan_mode: str = 'vanilla',
    *,
    for_discriminator: bool = True,
) -> jax.Array:
  """Adversarial loss of patch logits against an all-real or all-fake target.

  Args:
    logits: raw discriminator outputs (no sigmoid applied).
    target_is_real: whether every patch should be classified real.
    gan_mode: 'vanilla' — sigmoid cross-entropy computed from logits (numerically stable, the
      reference's BCEWithLogitsLoss); 'lsgan' — least squares on the raw outputs (Mao et al.);
      'hinge' — SPADE's `GANLoss`: D mean(relu(1 - logits)) on real, mean(relu(1 + logits)) on
      fake; G -mean(logits).
    for_discriminator: the loss D minimises (True) or G's (False, target real). Only the hinge
      loss tells them apart; the others use the same loss, G's in its non-saturating form.

  Returns:
    The scalar mean loss.
  """
  if gan_mode == 'hinge':
    if for_discriminator:
      return jnp.mean(jax.nn.relu(1.0 - logits if target_is_real else 1.0 + logits))
    if not target_is_real:
      raise ValueError("the generator's hinge loss aims for real (target_is_real=True)")
    return -jnp.mean(logits)
  target = jnp.full_like(logits, 1.0 if target_is_real else 0.0)
  if gan_mode == 'vanilla':
    return jnp.mean(optax.sigmoid_binary_cross_entropy(logits, target))
  if gan_mode == 'lsgan':
    return jnp.mean(jnp.square(logits - target))
  raise ValueError(f'unknown gan_mode {gan_mode!r}; expected one of {GAN_MODES}')


def scales(logits: Logits) -> list[jax.Array]:
  """The logits as a list over scales (a single PatchGAN's: a list of one)."""
  return [logits] if isinstance(logits, jax.Array) else list(logits)


def multiscale_gan_loss(
    logits: Logits,
    target_is_real: bool,
    gan_mode: str = 'vanilla',
    *,
    for_discriminator: bool = True,
) -> jax.Array:
  """`gan_loss` averaged over the scales of a multi-scale D (one scale: `gan_loss` itself).

  The mean, as SPADE's `GANLoss` (`loss / len(input)`); pix2pixHD's `GANLoss` sums the scales,
  so its GAN term grows with num_D. The mean keeps the GAN term's balance with λ·L1 whatever the
  number of scales.
  """
  per_scale = [
      gan_loss(x, target_is_real, gan_mode, for_discriminator=for_discriminator)
      for x in scales(logits)
  ]
  return sum(per_scale) / len(per_scale)


def feature_matching_loss(
    fake_features: Sequence[Sequence[jax.Array]], real_features: Sequence[Sequence[jax.Array]]
) -> jax.Array:
  """pix2pixHD's discriminator feature-matching loss (Wang et al. 2018, eq. 4), without its λ.

  The L1 between D's intermediate features on the fake pair and on the real pair, the real ones
  detached, over every layer but the logits of every scale, weighted as pix2pixHD's
  `loss_G_GAN_Feat`: 1/num_D per scale and 4/(n_layers_D + 1) per layer, i.e. 4 over the number
  of intermediate features (4 at n_layers_D = 3, so each layer weighs 1).

  Args:
    fake_features: per scale, D's features on the (input, generated) pair.
    real_features: the same on the (input, target) pair.

  Returns:
    The scalar loss.
  """
  if len(fake_features) != len(real_features):
    raise ValueError(f'{len(fake_features)} scales of fake features, {len(real_features)} of real')
  total = 0.0
  for fake_scale, real_scale in zip(fake_features, real_features):
    layer_weight = 4.0 / len(fake_scale)
    for fake, real in zip(fake_scale, real_scale, strict=True):
      total += layer_weight * l1_loss(fake, jax.lax.stop_gradient(real))
  return total / len(fake_features)


def l1_loss(generated: jax.Array, target: jax.Array) -> jax.Array:
  """Mean absolute error, the paper's L1 term (on images in [-1, 1])."""
  return jnp.mean(jnp.abs(generated - target))


def discriminator_loss(
    real_logits: Logits, fake_logits: Logits, gan_mode: str = 'vanilla'
) -> dict[str, jax.Array]:
  """D's objective, halved as in the paper ("we divide the objective by 2 while optimizing D").

  Halved in every `gan_mode` (SPADE does not halve its hinge loss; pix2pixHD halves).

  Args:
    real_logits, fake_logits: D's logits on the real and fake pairs (per scale for a multi-scale
      D: each term is then the mean over the scales).
    gan_mode: one of GAN_MODES.

  Returns:
    {'d_total', 'd_real', 'd_fake'}.
  """
  d_real = multiscale_gan_loss(real_logits, True, gan_mode)
  d_fake = multiscale_gan_loss(fake_logits, False, gan_mode)
  return {'d_total': 0.5 * (d_real + d_fake), 'd_real': d_real, 'd_fake': d_fake}


def generator_loss(
    fake_logits: Logits,
    generated: jax.Array,
    target: jax.Array,
    lambda_l1: float,
    gan_mode: str = 'vanilla',
    *,
    fake_features: Sequence[Sequence[jax.Array]] | None = None,
    real_features: Sequence[Sequence[jax.Array]] | None = None,
    lambda_feat: float = 0.0,
) -> dict[str, jax.Array]:
  """G's objective: fool D (non-saturating form) plus λ·L1 to the target (paper eq. 4).

  Args:
    fake_logits: D's logits on the fake pairs (per scale for a multi-scale D: mean over scales).
    generated, target: G's images and the targets.
    lambda_l1: weight of the L1 term.
    gan_mode: one of GAN_MODES.
    fake_features, real_features: D's intermediate features per scale (see
      `feature_matching_loss`); given, the loss adds λ_feat times the feature-matching term.
    lambda_feat: weight of the feature-matching term (pix2pixHD: 10).

  Returns:
    {'g_total', 'g_gan', 'g_l1'} and, with features, 'g_feat'; `g_l1` and `g_feat` unweighted.
  """
  g_gan = multiscale_gan_loss(fake_logits, True, gan_mode, for_discriminator=False)
  g_l1 = l1_loss(generated, target)
  out = {'g_total': g_gan + lambda_l1 * g_l1, 'g_gan': g_gan, 'g_l1': g_l1}
  if fake_features is not None:
    out['g_feat'] = feature_matching_loss(fake_features, real_features)
    out['g_total'] = out['g_total'] + lambda_feat * out['g_feat']
  return out
