"""The paper's maps model with SPADE's discriminator side: hinge loss, spectral norm, two scales.

  python main.py --config=configs/maps_spade.py --workdir=/tmp/maps_spade

Park et al. 2019, "Semantic Image Synthesis with Spatially-Adaptive Normalization" (NVlabs/SPADE),
on configs/maps.py's setting (map -> aerial, U-Net-256, 70×70 PatchGAN, 100·L1, Adam 2e-4,
batch 1, 200 epochs): its discriminator, pix2pixHD's multi-scale PatchGAN with spectral norm on
the middle convolutions (`--norm_D spectralinstance`: here spectral norm with the config's norm),
`--num_D 2`, feature matching (`--lambda_feat 10`) and the hinge loss (`--gan_mode hinge`). Not
SPADE's generator (its spatially-adaptive normalisation needs semantic label maps) nor its VGG
loss or TTUR learning rates.

Source: options/base_options.py and options/train_options.py of NVlabs/SPADE; models/networks/
discriminator.py (MultiscaleDiscriminator, NLayerDiscriminator), models/networks/
normalization.py (get_nonspade_norm_layer: spectral norm), models/networks/loss.py (hinge).
Runtime and outcome with this code: not yet measured.
"""

from configs import maps


def get_config(direction: str = 'BtoA'):
  config = maps.get_config(direction)
  config.model.num_discriminators = 2  # --num_D 2.
  config.model.d_spectral_norm = True  # --norm_D spectral...
  config.loss.lambda_feat = 10.0  # --lambda_feat 10.
  config.loss.gan_mode = 'hinge'  # --gan_mode hinge.
  return config
