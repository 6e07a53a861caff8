"""pix2pix on maps, the paper's setting (Isola et al. 2017, Sec. 4 / appendix 6.2).

  python main.py --config=configs/maps.py --workdir=/tmp/maps          # map -> aerial (BtoA)
  python main.py --config=configs/maps.py:AtoB --workdir=/tmp/maps_a2b # aerial -> map

U-Net-256 generator, 70×70 PatchGAN, BCE + 100·L1, Adam 2e-4 (β1 0.5), batch 1, 200 epochs
(219,200 steps over the 1096 train pairs), jitter 286 -> 256 + flip.

Runtime on the 2-core development CPU: the step alone 0.31–0.34 s (benchmarks/train_step.py,
2026-11-28; 0.56–0.67 s on a slower day, 2026-12-07, 1.36–1.43× the PyTorch peer), a real `main.py` run 1.5–1.8 steps/s with its logging, evals and checkpoints (about
34–41 hours for the 219,200 steps); on a GPU not yet measured.
Outcome (all 1098 val pairs at 256², the paper's test mode): after 3 epochs on the CPU (3,288
steps, `python benchmarks/parity.py --workdir=/tmp/parity`, the reference's dropout placement),
seed 0: FID 269.1, KID 0.260, LPIPS 0.427, L1 0.127, PSNR 15.57 dB, SSIM 0.244; seed 1: FID
229.2, KID 0.205, LPIPS 0.401, L1 0.133, PSNR 15.17 dB, SSIM 0.250; the PyTorch reference's step
on the same data, seed 0: FID 219.7, KID 0.197, LPIPS 0.397, L1 0.129, PSNR 15.51 dB, SSIM 0.252.
The 200 epochs are not yet measured.
Published for map -> aerial: realistic enough to fool AMT participants 18.9% of the time (the
paper); FID 88.5 for mmgeneration's retrained pix2pix.
"""

from configs import default


def get_config(direction: str = 'BtoA'):
  config = default.get_config()
  config.data.name = 'maps'
  config.data.direction = direction  # Left half (A) is the aerial photo, right half (B) the map.
  return config
