"""The paper's maps model with pix2pixHD's discriminator side: two scales, feature matching, LSGAN.

  python main.py --config=configs/maps_pix2pixhd.py --workdir=/tmp/maps_pix2pixhd

Wang et al. 2018, "High-Resolution Image Synthesis and Semantic Manipulation with Conditional
GANs" (NVIDIA/pix2pixHD), on configs/maps.py's setting (map -> aerial, U-Net-256, 70×70 PatchGAN,
100·L1, Adam 2e-4, batch 1, 200 epochs): its multi-scale discriminator (3.2: `--num_D 2`, each
scale the same PatchGAN on the pair downsampled by AvgPool2d(3, 2)), its feature-matching loss
(3.2: `--lambda_feat 10`, the L1 between D's intermediate features of real and fake pairs) and
its least-squares GAN loss (`--no_lsgan` off). Not pix2pixHD's generator (its coarse-to-fine
global and local networks) nor its VGG perceptual loss.

Source: options/base_options.py and options/train_options.py of NVIDIA/pix2pixHD; models/
networks.py (MultiscaleDiscriminator, GANLoss with use_lsgan), models/pix2pixHD_model.py (the
feature-matching term: 4 / (n_layers_D + 1) per layer, 1 / num_D per scale).
Runtime and outcome with this code: not yet measured.
"""

from configs import maps


def get_config(direction: str = 'BtoA'):
  config = maps.get_config(direction)
  config.model.num_discriminators = 2  # --num_D 2.
  config.loss.lambda_feat = 10.0  # --lambda_feat 10.
  config.loss.gan_mode = 'lsgan'  # pix2pixHD's default (use_lsgan).
  return config
