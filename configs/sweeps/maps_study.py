"""The maps study: batch size 1/4/10 × PatchGAN 16/70/286 × resize vs four patches, map -> aerial.

  python main.py --config=configs/sweeps/maps_study.py --workdir=/tmp/maps_study --mode=sweep
  python main.py --config=configs/sweeps/maps_study.py:demo --workdir=/tmp/study_demo --mode=sweep

Source: the pix2pix maps study this project started from (its seed, "Seed 001", whose `patches`
preprocessing is data.preprocess='patches'), which compared these runs in tables of SSIM, PSNR,
L1 and HP-L1; the sweep also reports FID, KID and LPIPS (the `metrics` extra).

18 runs of configs/maps.py (U-Net-256, BCE + 100·L1, Adam 2e-4, map -> aerial, 200 epochs each),
each in WORKDIR/batch_size=B,patch_size=P,preprocess=M/, then WORKDIR/sweep.md, sweep.csv and
WORKDIR/report/index.html; the same command resumes the sweep. Preprocessing of the train pairs:
- 'resize': each 600×600 half resized to 256×256 (bicubic), random flip, no crop jitter;
- 'patches': each half gives four native-resolution 256×256 crops (the corners of a 2×2 grid,
  offsets 0 and 344: together the whole image, no down-scaling), each then jittered as the paper
  does (resize to 286, random 256 crop) and flipped.
Each run is scored as `--mode=evaluate` scores it, with its own preprocessing: 'resize' runs on
the 1098 val pairs resized to 256×256, 'patches' runs on the four native 256×256 crops of each
(4392 images): the table's `images` column says which.

The number of epochs stays at 200 whatever the batch: the steps follow, 1096 // B per epoch for
'resize' (219,200 / 54,800 / 21,800 steps for B = 1 / 4 / 10) and four times as many for
'patches', whose epoch is a pass over all 4384 crops (876,800 / 219,200 / 87,600 steps).
`--config.num_epochs=50` gives 'patches' runs as many steps (and images seen) as 'resize' ones.

Cost of each run on a GPU: not yet measured; `python benchmarks/train_step.py --settings=paper
--variants=batch_size=4 --variants=batch_size=10` times the three batches' steps. On the 2-core
development CPU the batch-1 step alone takes 0.31–0.34 s (benchmarks/README.md): about 19 hours
of steps for a batch-1 'resize' run, four times that for 'patches'.

`:demo` is the same sweep at the demo's data and size (configs/demo.py: synthetic maps at 64×64,
32 filters), 1 epoch of 200 pairs, pixel metrics only, with the PatchGANs scaled to the image: 1,
16 and 70 (at 64×64 a 70×70 PatchGAN sees the whole image, as the 286×286 one does at 256×256):
20 min 21 s for its 18 runs on the 2-core development CPU shared with other jobs (2026-12-07). `:test` is a 2×2×2
version at configs/test.py's size (32×32, 8 filters), which the tests run end to end. The
synthetic pairs are generated at the size the pipeline asks for (72×72 to train, 64×64 to score),
so there 'patches' crops barely differ from the whole image: these versions exercise the sweep and
its table, not the study's question.
"""

from configs import default, demo, test

# key -> values of each axis; the grid of all of them is the sweep.
_AXES = {
    'maps': {
        'batch_size': (1, 4, 10),
        'model.patch_size': (16, 70, 286),
        'data.preprocess': ('resize', 'patches'),
    },
    'demo': {
        'batch_size': (1, 4, 10),
        'model.patch_size': (1, 16, 70),
        'data.preprocess': ('resize', 'patches'),
    },
    'test': {
        'batch_size': (2, 4),
        'model.patch_size': (16, 70),
        'data.preprocess': ('resize', 'patches'),
    },
}


def get_config(size: str = 'maps'):
  if size not in _AXES:
    raise ValueError(f'configs/sweeps/maps_study.py:{size}: expected one of {list(_AXES)}')
  if size == 'maps':
    config = default.get_config()
    config.data.name = 'maps'
    config.data.direction = 'BtoA'  # Map -> aerial.
  else:
    config = demo.get_config() if size == 'demo' else test.get_config()
    config.num_train_steps = -1  # Epochs: the steps follow the batch size.
    config.num_epochs = 1
    config.eval.every_steps = 0  # Scored once, at the end, by the sweep's evaluate.
    if size == 'demo':
      config.data.synthetic_train_examples = 200
      # FID on 16 eval images means little, and its features take minutes per run on a CPU.
      config.eval.perceptual = False
      config.eval.best_metric = None
    else:
      config.data.synthetic_train_examples = 4
      config.checkpoint_every_steps = 4
  config.sweep.axes = tuple(
      f'{key}={",".join(map(str, values))}' for key, values in _AXES[size].items()
  )
  return config
