"""GAN Compression's full-size pix2pix on maps, map -> aerial: its ResNet-9 "original" model.

  python main.py --config=configs/maps_resnet.py --workdir=/tmp/maps_resnet

Li et al. 2020, "GAN Compression" (mit-han-lab/gan-compression), the teacher its compressed
map2sat models start from: the reference's resnet_9blocks generator (ngf 64, 11,378,179
parameters with instance norm, no dropout), a 70×70 PatchGAN with ndf 128, instance norm in both,
hinge loss + 10·L1, Adam 2e-4 (β1 0.5), batch 1, 100 epochs at the full rate then 200 decaying
linearly to 0 (300 epochs, 328,800 steps over the 1096 train pairs), jitter 286 -> 256 + flip.

Source: scripts/pix2pix/map2sat/train_full.sh (--netG resnet_9blocks --batch_size 1
--lambda_recon 10 --nepochs 100 --nepochs_decay 200 --direction BtoA); the defaults it leaves:
options/base_options.py (--norm instance, --load_size 286, --crop_size 256, --preprocess
resize_and_crop, flip on), options/train_options.py (--ndf 128, --netD n_layers with
--n_layers_D 3, --dropout_rate 0, --gan_mode hinge, --lr 0.0002, --beta1 0.5, --lr_policy
linear), models/pix2pix_model.py (L1 reconstruction, --lambda_gan 1, D loss halved, D then G per
step), models/modules/loss.py (hinge), models/modules/resnet_architecture/resnet_generator.py,
models/modules/discriminators.py; evaluation: test.py and scripts/pix2pix/map2sat/test_full.sh
(all val pairs resized to 256², FID against the val aerials, real_stat/maps_A.npz).

Published (README.md, "Performance of Released Models", map -> aerial photo, Original): FID 47.91
on all 1098 val pairs (11.4M parameters, 56.8G MACs). The paper's U-Net (configs/maps.py) has
FID 88.5 in mmgeneration's retraining.
Runtime and outcome with this code: not yet measured.

Not reproduced: their learning rate steps once per epoch and ends at 2e-4/201 (theirs:
1 - max(0, epoch + 1 - 100) / 201), ours decays every step to 0; their FID is pytorch-fid's
InceptionV3 (bilinear resize to 299), ours the TensorFlow graph with TF1's resize
(pix2pix_jax/perceptual.py), which can shift FID slightly; their seed (233) and PyTorch's random
streams; the generator's input clamp to [-1, 1] is a no-op on our inputs.
"""

from configs import default


def get_config():
  config = default.get_config()
  config.data.name = 'maps'
  config.data.direction = 'BtoA'  # Map (right half, B) -> aerial photo (left half, A).
  config.num_epochs = 300  # --nepochs 100 --nepochs_decay 200.
  config.model.generator = 'resnet_9blocks'
  config.model.ngf = 64
  config.model.ndf = 128  # Their train_options default: twice the paper's D.
  config.model.patch_size = 70  # --netD n_layers --n_layers_D 3.
  config.model.norm = 'instance'  # Their base_options default (the reference's pix2pix: batch).
  config.model.dropout_rate = 0.0  # --dropout_rate 0: no dropout in the residual blocks.
  config.loss.gan_mode = 'hinge'
  config.loss.lambda_l1 = 10.0  # --lambda_recon 10 (the paper: 100).
  config.optim.schedule = 'linear'
  config.optim.decay_epochs = 200
  # Their test is netG.eval(); with instance norm and no dropout it equals train mode, so the
  # deterministic form is the same images without a per-image vmap.
  config.eval.train_mode = False
  return config
