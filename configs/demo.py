"""A few-minute CPU demo on the built-in synthetic maps (no download): map -> aerial.

  python main.py --config=configs/demo.py --workdir=/tmp/demo

The paper's model and losses at 64×64 with fewer filters, 1500 steps of batch 4. Measured on the
2-core development CPU (1 min 28 s wall alone, 4 min 34 s shared with other jobs, compilation
included): eval L1 (images in [0, 1], 8-bit outputs) 0.159 at step 0 -> 0.083 at step 1500, PSNR
14.4 -> 18.8 dB, SSIM 0.06 -> 0.57. The panels in /tmp/demo/images go from grey noise to aerial
renderings with roads, water, parks and roofs.

With the `metrics` extra every eval also computes FID, KID and LPIPS and the best checkpoint by
FID is kept (/tmp/demo/checkpoints_best): about 8 s per eval on that CPU, shared with another
run (35 s for the first, compiling; `eval_seconds` in TensorBoard), not in the times above.
`--config.eval.perceptual=false --config.eval.best_metric=l1` leaves them out.
"""

from configs import default


def get_config():
  config = default.get_config()
  config.data.name = 'synthetic'
  config.data.image_size = 64  # 6 U-Net levels.
  config.data.load_size = 72  # Same 286/256 jitter ratio.
  config.data.synthetic_train_examples = 1000
  config.data.synthetic_eval_examples = 16
  config.batch_size = 4
  config.num_train_steps = 1500
  config.model.ngf = 32
  config.model.ndf = 32
  config.optim.learning_rate = 5e-4  # Faster than the paper's 2e-4 so a few minutes show progress.
  config.eval.batch_size = 8
  config.eval.every_steps = 100
  config.eval.num_panel_images = 4
  config.log_every_steps = 50
  config.checkpoint_every_steps = 500
  return config
