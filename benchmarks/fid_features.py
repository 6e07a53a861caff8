"""Images/s of FID's Inception features, JAX (Flax, jitted) against torch (TorchScript).

  python benchmarks/fid_features.py --images=256 --batch_size=32

Both paths of `perceptual.InceptionFeatures` on the same N synthetic aerials at --size² (uint8;
each resized to 299² inside the timed call, as in evaluation), on the current device: JAX's
default device, torch's CUDA if it sees one. Each path first runs one batch untimed (the JAX path
compiles there), then the N images are timed once. Prints one JSON line per path, then a summary
line: the seconds the JAX path takes for the 1,098 maps val images (measured with --images=1098,
else extrapolated from its images/s; the line says which) and the largest relative feature
difference, max over images of max|f_jax - f_torch| / max|f_torch|.
"""

import json
import pathlib
import sys
import time

from absl import app
from absl import flags
import jax
import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from pix2pix_jax import perceptual  # pylint: disable=g-import-not-at-top
from pix2pix_jax.data import synthetic  # pylint: disable=g-import-not-at-top

flags.DEFINE_integer('images', 256, 'Images timed per path.')
flags.DEFINE_integer('batch_size', 32, 'Images per forward pass (both paths).')
flags.DEFINE_integer('size', 256, 'Image side before the resize to 299.')
flags.DEFINE_list('backends', list(perceptual.INCEPTION_BACKENDS), 'Paths to time.')
FLAGS = flags.FLAGS
MAPS_VAL_IMAGES = 1098


def time_path(backend: str, images: np.ndarray) -> tuple[dict, np.ndarray]:
  start = time.perf_counter()
  features = perceptual.InceptionFeatures(batch_size=FLAGS.batch_size, backend=backend)
  setup_s = time.perf_counter() - start
  start = time.perf_counter()
  features(images[: FLAGS.batch_size])  # Untimed: compilation (JAX), allocator warm-up (torch).
  warmup_s = time.perf_counter() - start
  start = time.perf_counter()
  out = features(images)
  seconds = time.perf_counter() - start
  device = str(jax.devices()[0]) if backend == 'jax' else str(features.device)
  return {
      'backend': backend,
      'device': device,
      'images': len(images),
      'size': FLAGS.size,
      'batch_size': FLAGS.batch_size,
      'setup_s': round(setup_s, 2),
      'first_batch_s': round(warmup_s, 2),
      'seconds': round(seconds, 2),
      'images_per_s': round(len(images) / seconds, 2),
  }, out


def main(_):
  images = np.stack([synthetic.render_pair(0, i, FLAGS.size)[1] for i in range(FLAGS.images)])
  rows, features = {}, {}
  for backend in FLAGS.backends:
    rows[backend], features[backend] = time_path(backend, images)
    print(json.dumps(rows[backend]), flush=True)
  summary = {}
  if 'jax' in rows:
    per_image = rows['jax']['seconds'] / FLAGS.images
    summary[f'jax_seconds_for_{MAPS_VAL_IMAGES}'] = round(per_image * MAPS_VAL_IMAGES, 1)
    summary['how'] = (
        'measured'
        if FLAGS.images == MAPS_VAL_IMAGES
        else f'extrapolated from {FLAGS.images} images'
    )
  if len(features) == 2:
    a, b = features['jax'], features['torch']
    relative = np.abs(a - b).max(axis=1) / np.abs(b).max(axis=1)
    summary['max_relative_feature_difference'] = float(f'{relative.max():.3g}')
  print(json.dumps(summary), flush=True)


if __name__ == '__main__':
  app.run(main)
