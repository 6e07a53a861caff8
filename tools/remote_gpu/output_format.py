"""Which lossy format can carry generated images back from a GPU machine without moving FID.

  python tools/remote_gpu/output_format.py --eval_dir=../shared/data/maps_val/val

The 1098 generated aerials (256×256, maps val, map→aerial) must come back in ≤ 8 files of
≤ 16 MiB, ≤ 64 MiB together; lossless does not fit (PNG ~154 MiB, lossless WebP ~94 MiB). For
each candidate format this measures the size of 1098 encoded images and how far encoding moves
FID (and L1/PSNR/SSIM) against the 1098 original targets, the left halves of --eval_dir resized
to 256² as the evaluation resizes them (`PairedFolder`, `pipeline.resize`: bicubic).

No trained generator is at hand, so "generated" images X are proxies, each scored as
ΔFID = FID(format(X), Y) - FID(X, Y) with the project's FID (`perceptual.InceptionFeatures`,
`perceptual.fid(method='svd')`):
  (a) degraded: Y = the targets; X = each target bicubic-downscaled ×2 and back, plus Gaussian
      noise σ = 3 levels (seed 0): soft like pix2pix outputs; FID(X, Y) = 68.4.
  (a0) blurred: (a) without the noise; FID 61.2.
  (b) real: X = the targets of files 1..549 (natural order), Y = those of 550..1098, and the
      other way round (two ΔFIDs): real aerial statistics on both sides; FID 39.5.
  (c) sharp: Y = the targets; X = each target through an unsharp mask (radius 2, 200 %), no
      noise: the halos and high-frequency ringing of GAN outputs; FID 75.2.
(a0) and (c) are scored by FID for --side_formats only. Sizes are of the encoded bytes (PIL,
in memory, summed over 1098 images); `real` (the targets) is the best stand-in for generator
outputs, but a generator with more high-frequency content than the photos, as (c), costs up to
1.6× more. Inception features are computed once per image set and cached as .npy under
--cache_dir: the 24 sets (26k images) took 80 min on 2 busy CPU cores (2-13 images/s); a rerun
from the cache takes 30 s.

Measured (Pillow 13, libjpeg-turbo, libwebp 1.6; ΔL1/ΔPSNR: format(X) vs Y minus X vs Y on
[0, 1] images; PSNR fX: format(X) vs X on the real targets, in dB):

  | format     | MiB real/(a)/(c) | ΔFID (a) | ΔFID (b)      | (c)   | (a0)  | ΔL1 (a)  | PSNR fX |
  |------------|------------------|----------|---------------|-------|-------|----------|---------|
  | jpeg90_420 | 31.7/21.2/44.5   | -0.85    | +12.94 +13.74 |       |       | -0.00041 | 36.44   |
  | jpeg95_420 | 42.1/30.1/55.4   | -2.44    | +5.28 +5.66   |       |       | -0.00050 | 40.37   |
  | jpeg97_420 | 49.6/38.6/63.7   | -1.91    | +1.94 +2.42   |       |       | -0.00048 | 43.04   |
  | jpeg90_444 | 35.6/25.8/50.8   | +0.40    | +0.03 +1.14   |       |       | -0.00051 | 37.00   |
  | jpeg95_444 | 48.0/39.5/65.5   | +0.80    | -0.24 +0.30   | -0.60 | -1.02 | -0.00023 | 41.58   |
  | jpeg97_444 | 57.6/59.8/80.1   | +1.09    | -0.16 +0.11   | -0.21 | -0.56 | +0.00055 | 44.81   |
  | webp90     | 29.5/19.2/43.0   | -2.35    | +4.73 +4.91   |       |       | -0.00024 | 39.64   |
  | webp95     | 37.8/29.4/52.6   | -0.90    | +1.81 +2.00   |       |       | -0.00049 | 42.76   |

ΔPSNR (a) is within ±0.1 dB and ΔSSIM (a) within ±0.007 for every format: the pixel metrics do
not care. FID does. Chroma subsampling is what real aerials cannot take: every 4:2:0 format
(lossy WebP is always 4:2:0) moves (b) by ≥ 1.8. No format keeps |ΔFID| < 0.5 on every proxy:
JPEG 4:4:4 at quality ≥ 95 stays within ±0.3 on real photos (b) but moves smooth (a0) and noisy
(a) outputs by 0.56 to 1.09, not monotonically in quality. JPEG quality 97 4:4:4 is the most
faithful and fits only just: 57.6 MiB (59.8 for (a), 80 for (c)) with `optimize=True`, 62.3
without it (quality 95: 48.0 and 50.9). tools/remote_gpu/gpu_suite.py sends lossless WebP when it
fits and otherwise JPEG quality 97 4:4:4, leaving the lossless shards for `--phase=fetch`; FID
and KID from Inception features taken on the GPU machine (1098×2048 float32: 8.6 MiB) would not
depend on the format at all.
"""

import io
import json
import math
import os
import pathlib
import sys
import time

from absl import app
from absl import flags
import numpy as np
from PIL import Image
from PIL import ImageFilter

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))  # For pix2pix_jax.

# pylint: disable=g-import-not-at-top
from pix2pix_jax import metrics
from pix2pix_jax import perceptual
from pix2pix_jax.data import folder
from pix2pix_jax.data import pipeline

# pylint: enable=g-import-not-at-top

# name -> (PIL format, save arguments). JPEG's optimize only re-codes the Huffman tables: the
# decoded pixels are identical, the file a few percent smaller.
FORMATS = {
    'jpeg90_420': ('JPEG', dict(quality=90, subsampling=2, optimize=True)),
    'jpeg95_420': ('JPEG', dict(quality=95, subsampling=2, optimize=True)),
    'jpeg97_420': ('JPEG', dict(quality=97, subsampling=2, optimize=True)),
    'jpeg90_444': ('JPEG', dict(quality=90, subsampling=0, optimize=True)),
    'jpeg95_444': ('JPEG', dict(quality=95, subsampling=0, optimize=True)),
    'jpeg97_444': ('JPEG', dict(quality=97, subsampling=0, optimize=True)),
    'webp90': ('WEBP', dict(quality=90, method=6)),
    'webp95': ('WEBP', dict(quality=95, method=6)),
}
PROXIES = ('degraded', 'real', 'sharp', 'blurred')
LABELS = {'degraded': '(a)', 'real': '(b)', 'sharp': '(c)', 'blurred': '(a0)'}
MIB = 2**20
SHARD_MIB = 15

flags.DEFINE_string(
    'eval_dir',
    '../shared/data/maps_val/val',
    'Side-by-side split folder; the left halves (A) are the targets.',
)
flags.DEFINE_string('cache_dir', '/tmp/output_format', 'Where features and scores are cached.')
flags.DEFINE_list('formats', list(FORMATS), f'Formats to score, of {list(FORMATS)}.')
flags.DEFINE_list('proxies', list(PROXIES), f'Proxies for generated images, of {PROXIES}.')
flags.DEFINE_list(
    'side_proxies',
    ['sharp', 'blurred'],
    'Proxies whose FID is measured for --side_formats only (each encoded set costs '
    'an Inception pass); their sizes and pixel scores are measured for all.',
)
flags.DEFINE_list(
    'side_formats', ['jpeg95_444', 'jpeg97_444'], 'The formats scored by FID on --side_proxies.'
)
flags.DEFINE_integer('image_size', 256, 'Target size (the generator output size).')
flags.DEFINE_integer('num_examples', -1, 'Use the first N images only (-1: all).')
flags.DEFINE_integer('scale_to', 1098, 'Sizes are reported for this many images.')
flags.DEFINE_integer('batch_size', 32, 'Inception batch size.')
flags.DEFINE_float('max_mib', 60, 'Largest total size (MiB, on the real targets) that fits.')
flags.DEFINE_float('max_delta_fid', 0.5, 'Largest |ΔFID| allowed on every proxy.')
FLAGS = flags.FLAGS


def load_targets(eval_dir: str, size: int, limit: int) -> np.ndarray:
  """The left halves (A) of the split, in natural file order, resized as the evaluation does."""
  eval_dir = os.path.abspath(os.path.expanduser(eval_dir))
  source = folder.PairedFolder(os.path.dirname(eval_dir), os.path.basename(eval_dir))
  n = len(source) if limit < 0 else min(limit, len(source))
  return np.stack([pipeline.resize(source[i]['A'], size) for i in range(n)])


def gaussian_noise(images: np.ndarray, sigma: float, seed: int) -> np.ndarray:
  rng = np.random.default_rng(seed)
  noisy = images.astype(np.float32) + rng.normal(0, sigma, images.shape).astype(np.float32)
  return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)


def blurred(targets: np.ndarray) -> np.ndarray:
  """Proxy (a0): bicubic ×2 down and up."""
  size = targets.shape[1]
  return np.stack([pipeline.resize(pipeline.resize(t, size // 2), size) for t in targets])


def degraded(targets: np.ndarray) -> np.ndarray:
  """Proxy (a): bicubic ×2 down and up, plus noise σ = 3."""
  return gaussian_noise(blurred(targets), 3.0, seed=0)


def sharp(targets: np.ndarray) -> np.ndarray:
  """Proxy (c): unsharp mask (radius 2, 200 %, no threshold), no added noise."""
  mask = ImageFilter.UnsharpMask(radius=2, percent=200, threshold=0)
  return np.stack([np.asarray(Image.fromarray(t).filter(mask)) for t in targets])


def encode(images: np.ndarray, fmt: str) -> tuple[np.ndarray, int]:
  """Round trip through `fmt` in memory: (decoded images, total encoded bytes)."""
  kind, kwargs = FORMATS[fmt]
  decoded, total = [], 0
  for image in images:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, kind, **kwargs)
    total += buffer.tell()
    buffer.seek(0)
    with Image.open(buffer) as im:
      decoded.append(np.asarray(im.convert('RGB')))
  return np.stack(decoded), total


class Cache:
  """Inception features and scores of named image sets, as files under one folder."""

  def __init__(self, cache_dir: str, n: int, batch_size: int):
    self.dir = pathlib.Path(cache_dir)
    self.dir.mkdir(parents=True, exist_ok=True)
    self.n = n
    self.batch_size = batch_size
    self._inception = None

  def _path(self, name: str, suffix: str) -> pathlib.Path:
    return self.dir / f'{name}.n{self.n}.{suffix}'

  def features(self, name: str, images_fn) -> np.ndarray:
    """Cached features of the set `name`; `images_fn()` makes its images on a miss."""
    path = self._path(name, 'npy')
    if path.exists():
      return np.load(path)
    if self._inception is None:
      self._inception = perceptual.InceptionFeatures(batch_size=self.batch_size)
    images = images_fn()
    start = time.perf_counter()
    feats = self._inception(images)
    seconds = time.perf_counter() - start
    print(
        f'# features of {name}: {len(images)} images in {seconds:.0f} s '
        f'({len(images) / seconds:.1f}/s)',
        flush=True,
    )
    np.save(path, feats)
    return feats

  def scores(self, name: str, scores_fn) -> dict:
    path = self._path(name, 'json')
    if path.exists():
      return json.loads(path.read_text())
    scores = scores_fn()
    path.write_text(json.dumps(scores))
    return scores


def pixel_scores(x: np.ndarray, y: np.ndarray, batch: int = 64) -> dict:
  """Mean L1, PSNR and SSIM of x against y, on [0, 1] images, with the project's metrics."""
  out = {'l1': [], 'psnr': [], 'ssim': []}
  for i in range(0, len(x), batch):
    a = x[i : i + batch].astype(np.float32) / 255
    b = y[i : i + batch].astype(np.float32) / 255
    out['l1'].append(np.asarray(metrics.l1(a, b)))
    out['psnr'].append(np.asarray(metrics.psnr(a, b)))
    out['ssim'].append(np.asarray(metrics.ssim(a, b)))
  return {k: float(np.mean(np.concatenate(v))) for k, v in out.items()}


def fid(a: np.ndarray, b: np.ndarray) -> float:
  return perceptual.fid(a, b, method='svd')


def main(_):
  start = time.perf_counter()
  unknown = set(FLAGS.formats + FLAGS.side_formats) - set(FORMATS) | set(
      FLAGS.proxies + FLAGS.side_proxies
  ) - set(PROXIES)
  if unknown:
    raise app.UsageError(f'unknown formats or proxies: {sorted(unknown)}')
  targets = load_targets(FLAGS.eval_dir, FLAGS.image_size, FLAGS.num_examples)
  n, half = len(targets), len(targets) // 2
  print(
      f'# {n} targets {targets.shape[1]}×{targets.shape[2]} from {FLAGS.eval_dir} '
      f'({time.perf_counter() - start:.0f} s)',
      flush=True,
  )
  cache = Cache(FLAGS.cache_dir, n, FLAGS.batch_size)
  f_targets = cache.features('targets', lambda: targets)
  makers = {'degraded': degraded, 'sharp': sharp, 'blurred': blurred}
  proxies = {}  # name -> (X, X features, baseline FID(s), baseline pixel scores)
  for proxy in FLAGS.proxies:
    if proxy == 'real':
      proxies[proxy] = (
          targets,
          f_targets,
          [fid(f_targets[:half], f_targets[half:]), fid(f_targets[half:], f_targets[:half])],
          None,
      )
      continue
    x = makers[proxy](targets)
    f_x = cache.features(proxy, lambda x=x: x)
    base = cache.scores(proxy, lambda x=x: pixel_scores(x, targets))
    proxies[proxy] = (x, f_x, [fid(f_x, f_targets)], base)
    print(
        f'# baseline {proxy}: FID(X, Y) = {proxies[proxy][2][0]:.2f}, L1 = {base["l1"]:.4f}, '
        f'PSNR = {base["psnr"]:.2f} dB, SSIM = {base["ssim"]:.4f}',
        flush=True,
    )
  if 'real' in proxies:
    print(
        '# baseline real: FID(1..{0}, {1}..{2}) = {3:.2f}, FID({1}..{2}, 1..{0}) = {4:.2f}'.format(
            half, half + 1, n, *proxies['real'][2]
        ),
        flush=True,
    )

  rows = []
  for fmt in FLAGS.formats:
    row = {'format': fmt}
    for proxy, (x, _, baselines, base) in proxies.items():
      name = f'{proxy}.{fmt}'
      coded = {}

      def coded_images(x=x, coded=coded):
        if 'images' not in coded:
          coded['images'], coded['bytes'] = encode(x, fmt)
        return coded['images']

      def scores(x=x, coded=coded, proxy=proxy):
        images = coded_images()
        out = {'bytes': coded['bytes'], 'vs_x': pixel_scores(images, x)}
        if proxy != 'real':
          out['vs_y'] = pixel_scores(images, targets)
        return out

      s = cache.scores(name, scores)
      row[f'mib_{proxy}'] = s['bytes'] / MIB * FLAGS.scale_to / n
      skip = proxy in FLAGS.side_proxies and fmt not in FLAGS.side_formats
      f_coded = None if skip else cache.features(name, coded_images)
      if proxy == 'real':
        row['dfid_real'] = f_coded is not None and [
            fid(f_coded[:half], f_targets[half:]) - baselines[0],
            fid(f_coded[half:], f_targets[:half]) - baselines[1],
        ]
        row['real_vs_x'] = s['vs_x']
      else:
        row[f'dfid_{proxy}'] = f_coded is not None and [fid(f_coded, f_targets) - baselines[0]]
        row[f'd_{proxy}'] = {k: s['vs_y'][k] - base[k] for k in base}
        row[f'{proxy}_vs_x'] = s['vs_x']
    rows.append(row)
    print(f'# {fmt}: {json.dumps(row)}', flush=True)

  rows.sort(key=lambda r: list(FORMATS).index(r['format']))
  print_table(rows, list(proxies))
  recommend(rows, list(proxies))
  print(f'# total {time.perf_counter() - start:.0f} s', flush=True)


def print_table(rows: list[dict], proxies: list[str]) -> None:
  """One markdown row per format; '—' where a set's features were not computed."""
  others = [p for p in proxies if p != 'real']
  header = (
      ['format', 'MiB real']
      + [f'MiB {LABELS[p]}' for p in others]
      + [f'ΔFID {LABELS[p]}' + (' 1→2, 2→1' if p == 'real' else '') for p in proxies]
      + ['ΔL1 (a)', 'ΔPSNR (a)', 'ΔSSIM (a)', 'L1 vs X (a)', 'L1 vs X real', 'PSNR vs X real']
  )
  print('| ' + ' | '.join(header) + ' |')
  print('|' + '---|' * len(header))
  for r in rows:
    d, vs_x, vs_xa = r.get('d_degraded'), r.get('real_vs_x'), r.get('degraded_vs_x')
    cells = [r['format']] + [
        f'{r[f"mib_{p}"]:.1f}' if f'mib_{p}' in r else '—' for p in ['real'] + others
    ]
    cells += [
        ', '.join(f'{v:+.2f}' for v in r[f'dfid_{p}']) if r.get(f'dfid_{p}') else '—'
        for p in proxies
    ]
    cells += (
        [f'{d["l1"]:+.5f}', f'{d["psnr"]:+.3f}', f'{d["ssim"]:+.4f}', f'{vs_xa["l1"]:.4f}']
        if d
        else ['—'] * 4
    )
    cells += [f'{vs_x["l1"]:.4f}', f'{vs_x["psnr"]:.2f}'] if vs_x else ['—'] * 2
    print('| ' + ' | '.join(cells) + ' |')


def recommend(rows: list[dict], proxies: list[str]) -> None:
  """The most faithful format that fits with |ΔFID| small on every proxy measured for it."""
  size_key = 'mib_real' if 'real' in proxies else f'mib_{proxies[0]}'
  ok = [
      r
      for r in rows
      if r[size_key] <= FLAGS.max_mib
      and all(abs(v) < FLAGS.max_delta_fid for p in proxies for v in r.get(f'dfid_{p}') or [])
  ]
  if not ok:
    worst = {
        r['format']: max(abs(v) for p in proxies for v in r.get(f'dfid_{p}') or [0])
        for r in rows
        if r[size_key] <= FLAGS.max_mib
    }
    print(
        f'# no format fits in {FLAGS.max_mib:g} MiB with every |ΔFID| < '
        f'{FLAGS.max_delta_fid:g}; worst |ΔFID| of those that fit (over the proxies '
        'measured for each): '
        + ', '.join(f'{k} {v:.2f}' for k, v in sorted(worst.items(), key=lambda kv: kv[1])),
        flush=True,
    )
    return
  fidelity = lambda r: r['real_vs_x']['psnr'] if 'real_vs_x' in r else -r[size_key]
  best = max(ok, key=fidelity)
  kind, kwargs = FORMATS[best['format']]
  missing = [LABELS[p] for p in proxies if not best.get(f'dfid_{p}')]
  print(
      f'# qualify: {[r["format"] for r in ok]}; most faithful: {best["format"]} '
      f'(image.save(f, {kind!r}, {", ".join(f"{k}={v}" for k, v in kwargs.items())})), '
      f'{best[size_key]:.1f} MiB = {math.ceil(best[size_key] / SHARD_MIB)} shards of '
      f'{SHARD_MIB} MiB'
      + (f'; ΔFID not measured on {missing}' if missing else ''),
      flush=True,
  )


if __name__ == '__main__':
  app.run(main)
