"""`--mode=score`: the metrics of images generated elsewhere, matched to their targets by name.

Images generated anywhere (another implementation, the PyTorch reference's results folder, an
earlier run) are scored against the config's eval split or a folder of targets, through
`evaluation.ImageScores`, so their numbers and files are those `--mode=evaluate` gives.
"""

import functools
import logging
import os
import pathlib
from typing import Callable, Iterator

import jax
import ml_collections
import numpy as np
from PIL import Image

from pix2pix_jax import evaluation, progress
from pix2pix_jax.data import folder, images, pipeline

# The PyTorch reference's results folder (test.py) holds N_fake_B.png next to N_real_A.png and
# N_real_B.png: the output, and copies of the input and the target.
GENERATED_SUFFIXES = ('_fake_B', '_fake_A', '_fake')
REFERENCE_COPY_SUFFIXES = ('_real_A', '_real_B')
SCORE_TEST_MODE = 'unknown (images generated elsewhere)'


def _absolute(path: str) -> str:
  """metrics.json outlives the working directory it was written from."""
  return str(pathlib.Path(path).expanduser().resolve())


def _stem(name: str) -> str:
  """The name matched on: the base name without extension ('val/12.jpg' -> '12')."""
  return os.path.splitext(os.path.basename(name))[0]


def _generated_by_stem(directory: str) -> dict[str, pathlib.Path]:
  """The generated images of `directory` by the target stem they match.

  'N.png' and the PyTorch reference's 'N_fake_B.png' match target 'N'; the reference's copies of
  the input and target ('N_real_A.png', 'N_real_B.png') are left out.
  """
  by_stem, copies = {}, []
  for path in images.list_images(pathlib.Path(directory).expanduser(), '--input'):
    stem = path.stem
    if stem.endswith(REFERENCE_COPY_SUFFIXES):
      copies.append(path.name)
      continue
    for suffix in GENERATED_SUFFIXES:
      if stem.endswith(suffix):
        stem = stem[: -len(suffix)]
        break
    if stem in by_stem:
      raise ValueError(
          f'{by_stem[stem]} and {path} both match target {stem!r} (generated images '
          'are matched to targets by name without extension and _fake_B/_fake_A/'
          '_fake); keep one'
      )
    by_stem[stem] = path
  if copies:
    logging.info(
        "Ignoring %d *_real_A / *_real_B file(s) in %s (the PyTorch reference's copies "
        'of its inputs and targets): %s',
        len(copies),
        directory,
        folder.listed(copies),
    )
  if not by_stem:
    raise FileNotFoundError(
        f'no generated images in --input {directory}, only *_real_A / *_real_B copies'
    )
  return by_stem


def _is_side_by_side(path: pathlib.Path) -> bool | None:
  """Whether the stored image is exactly twice as wide as high; None if its header is unreadable."""
  try:
    with Image.open(path) as image:  # Reads the header only: no decoding.
      width, height = image.size
  except Exception:  # pylint: disable=broad-except
    return None  # Named when (and if) it is scored.
  return width == 2 * height


def _targets_are_pairs(files: list[pathlib.Path], direction: str) -> bool:
  """True if the --targets files are side-by-side A|B pairs: every readable one is exactly 2:1."""
  shapes = [(path.name, _is_side_by_side(path)) for path in files]
  wide = [name for name, is_wide in shapes if is_wide]
  readable = [name for name, is_wide in shapes if is_wide is not None]
  if readable and len(wide) == len(readable):
    target_side = images.sides(direction)[1]
    half = f'{target_side}, the {"right" if target_side == "B" else "left"} half'
    logging.info(
        '--targets: all %d images are exactly 2:1: read as side-by-side A|B pairs, '
        'target = %s (config.data.direction=%s)',
        len(readable),
        half,
        direction,
    )
    return True
  logging.info(
      '--targets: read as plain target images (%d of %d are 2:1; side-by-side A|B pairs '
      'would need all of them to be)',
      len(wide),
      len(readable),
  )
  if wide:
    # Most likely a folder of pairs with a few stray images: plain targets would score halves
    # of two images against whole outputs.
    logging.warning(
        '--targets: %d image(s) are 2:1 like side-by-side A|B pairs, but not all are, '
        'so every image is read as a whole target: %s',
        len(wide),
        folder.listed(wide),
    )
  return False


def _load_target(
    path: pathlib.Path, *, pairs: bool, data_config
) -> tuple[np.ndarray | None, np.ndarray]:
  """(input or None, target) of a --targets file, resized as evaluation resizes; each with its
  configured channel count (`images.load_image`'s rules, as folder datasets)."""
  size, direction = data_config.image_size, data_config.direction
  keys = pipeline.channel_keys(data_config)
  if not pairs:
    return None, pipeline.resize(
        images.load_image(
            path, pipeline.channels(data_config)[1], keys[images.sides(direction)[1]]
        ),
        size,
    )
  sides = pipeline.side_channels(data_config)
  a, b = images.load_side_by_side(path, (sides['A'], sides['B']), (keys['A'], keys['B']))
  # The eval split's resize, then its choice of input and target by direction.
  pair = {'A': pipeline.resize(a, size), 'B': pipeline.resize(b, size)}
  pair = pipeline.preprocess_pair(pair, None, image_size=size, flip=False, direction=direction)
  return pair['input'], pair['target']


# (name, index, loader of (input or None, target)) of one target.
_Target = tuple[str, int, Callable[[], tuple[np.ndarray | None, np.ndarray]]]


def _folder_targets(files: list[pathlib.Path], pairs: bool, data_config) -> Iterator[_Target]:
  """The --targets files in natural order ('2.jpg' before '10.jpg'), decoded when loaded."""
  load = functools.partial(_load_target, pairs=pairs, data_config=data_config)
  files = sorted(files, key=lambda path: images.natural_key(path.name))
  for index, path in enumerate(files):
    yield path.name, index, functools.partial(load, path)


def _split_targets(config: ml_collections.ConfigDict) -> Iterator[_Target]:
  """The eval examples with their input and target, read exactly as `evaluate` reads them."""
  source = pipeline.create_source(config.data, 'eval', config.seed)
  for batch in pipeline.eval_batches(source, config.data, batch_size=config.eval.batch_size):
    for row in np.flatnonzero(np.asarray(batch['mask']) > 0):
      example = (batch['input'][row], batch['target'][row])
      yield str(batch['file_name'][row]), int(batch['index'][row]), lambda pair=example: pair


class _Matcher:
  """Pairs targets with generated images by name and feeds them to `ImageScores` in batches."""

  def __init__(
      self,
      scores: evaluation.ImageScores,
      generated: dict[str, pathlib.Path],
      size: int,
      batch_size: int,
      *,
      generated_dir: str,
      where: str,
      channels: int = 3,
      wanted: str = '',
  ):
    self._scores, self._size, self._batch_size = scores, size, batch_size
    # Generated images are read with the outputs' channel count; `wanted` names its config key.
    self._channels, self._wanted = channels, wanted
    self._generated_dir, self._where = generated_dir, where
    self.unmatched_generated = dict(generated)  # What is left at the end has no target.
    self.unmatched_targets, self.unreadable, self.resized = [], [], {}
    self.matched, self._seen, self._pending = 0, {}, []

  def add(self, name: str, index: int, load) -> None:
    """Queues target `name` with its generated image, if there is one; scores full batches."""
    stem = _stem(name)
    if stem in self._seen:
      raise ValueError(
          f'{self._where} has two targets named {stem!r} ({self._seen[stem]} and '
          f'{name}): generated images are matched by name, so target names must be '
          'unique'
      )
    self._seen[stem] = name
    path = self.unmatched_generated.pop(stem, None)
    if path is None:
      self.unmatched_targets.append(name)
      return
    self.matched += 1
    try:
      inputs, target = load()
      generated = images.load_image(path, self._channels, self._wanted)
    except images.BadImageError as error:
      self.unreadable.append(str(error))
      return
    if generated.shape[:2] != (self._size, self._size):
      size = f'{generated.shape[1]}×{generated.shape[0]}'
      self.resized[size] = self.resized.get(size, 0) + 1
      generated = pipeline.resize(generated, self._size)
    self._pending.append((name, index, inputs, generated, target))
    if len(self._pending) == self._batch_size:
      self.flush()

  def flush(self) -> None:
    """Scores the queued pairs."""
    if not self._pending:
      return
    names, indices, inputs, generated, targets = zip(*self._pending)
    self._scores.add(
        names,
        images.stack(generated),
        images.stack(targets),
        indices=indices,
        inputs=None if inputs[0] is None else images.stack(inputs),
    )
    self._pending = []

  def warn(self) -> None:
    """One warning per kind of file left out or resized, naming the first few."""
    generated_dir, where = self._generated_dir, self._where
    left = sorted((p.name for p in self.unmatched_generated.values()), key=images.natural_key)
    if left:
      logging.warning(
          '%d generated image(s) in %s have no target in %s (not scored): %s',
          len(left),
          generated_dir,
          where,
          folder.listed(left),
      )
    if self.unmatched_targets:
      logging.warning(
          '%d target(s) in %s have no generated image in %s (not scored): %s',
          len(self.unmatched_targets),
          where,
          generated_dir,
          folder.listed(self.unmatched_targets),
      )
    if self.unreadable:
      more = '; ...' if len(self.unreadable) > 10 else ''
      logging.warning(
          'Skipped %d pair(s) with an unreadable file: %s',
          len(self.unreadable),
          '; '.join(self.unreadable[:10]) + more,
      )
    if self.resized:
      logging.warning(
          'Resized %d generated image(s) to the evaluation size %d×%d (bicubic, as '
          'targets are); sizes seen: %s',
          sum(self.resized.values()),
          self._size,
          self._size,
          ', '.join(f'{s} ({n})' for s, n in sorted(self.resized.items())),
      )


def score(
    config: ml_collections.ConfigDict,
    workdir: str,
    generated_dir: str,
    targets_dir: str | None = None,
) -> dict:
  """Scores images generated elsewhere against targets, as `evaluate` scores the generator.

  Matching: by file name without extension; a generated 'N_fake_B' (or 'N_fake_A', 'N_fake')
  matches target 'N', as in the PyTorch reference's results folder, whose 'N_real_A' and
  'N_real_B' copies are ignored. Eval-split names match by base name ('val/12.jpg' is '12').
  Unmatched files on either side are named in a warning; no match at all is an error.

  Targets: by default the config's eval split, read exactly as `evaluate` reads it (source,
  direction, resize; panels [input | generated | target]). With `targets_dir`: side-by-side A|B
  pairs if every image in it is exactly 2:1 (target = B for AtoB, A for BtoA; the other half is
  the panels' input), else plain target images (panels [generated | target]); the choice is
  logged.

  Sizes: targets get the evaluation resize (bicubic to image_size × image_size); generated
  images of any other size are resized the same way, with one warning giving their count and
  sizes. Files that do not decode are named in a warning and skipped.

  Outputs are `evaluate`'s: WORKDIR/eval/metrics.json (`step` null, `test_mode` unknown, plus
  `generated_dir`, `targets` and `targets_layout`), per_image.csv (named by target), panels/ and
  the log table; no TensorBoard scalars, since there is no step. Runs in a single process:
  `evaluate`'s multi-process sharding is not needed to read files.

  Args:
    config: the run's config (`config.data` for the targets and the size, `config.eval`).
    workdir: where eval/ goes.
    generated_dir: the folder of generated images (or one image file).
    targets_dir: a folder of target images or A|B pairs; None for the config's eval split.

  Returns:
    The contents written to WORKDIR/eval/metrics.json.

  Raises:
    FileNotFoundError: a folder is missing or holds no images.
    ValueError: nothing matched or nothing matched is readable (naming both folders), or two
      files match one name.
  """
  if jax.process_count() > 1:
    raise ValueError('--mode=score runs in a single process; start it without --distributed')
  images.set_max_image_pixels(config.data.max_image_pixels)
  generated = _generated_by_stem(generated_dir)
  if targets_dir is None:
    where = f'the eval split {config.data.eval_split!r} of {config.data.name!r}'
    targets, layout = _split_targets(config), 'eval_split'
  else:
    where = f'--targets {targets_dir}'
    files = images.list_images(pathlib.Path(targets_dir).expanduser(), '--targets')
    pairs = _targets_are_pairs(files, config.data.direction)
    targets = _folder_targets(files, pairs, config.data)
    layout = 'side_by_side' if pairs else 'plain'
  logging.info(
      'Scoring %d generated image(s) in %s against %s', len(generated), generated_dir, where
  )
  scores = evaluation.ImageScores(
      config,
      progress_log=progress.ProgressLog('Scoring', len(generated), rest='reading and matching'),
  )
  matcher = _Matcher(
      scores,
      generated,
      config.data.image_size,
      config.eval.batch_size,
      generated_dir=generated_dir,
      where=where,
      channels=pipeline.channels(config.data)[1],
      wanted=pipeline.channel_keys(config.data)[images.sides(config.data.direction)[1]],
  )
  for name, index, load in targets:
    matcher.add(name, index, load)
  matcher.flush()
  matcher.warn()
  if not matcher.matched:
    raise ValueError(
        f'no generated image in {generated_dir} matches a target in {where}; names are matched '
        'without extension, and N_fake_B.png matches N.jpg. Generated: '
        f'{folder.listed(sorted(p.name for p in generated.values()))}; targets: '
        f'{folder.listed(matcher.unmatched_targets)}'
    )
  if not scores.per_image:
    raise ValueError(
        f'none of the {matcher.matched} matched pairs of {generated_dir} and {where} '
        'could be read (see the warning above)'
    )
  from_split = targets_dir is None
  facts = {
      'step': None,
      'split': config.data.eval_split if from_split else None,
      'direction': config.data.direction,
      'dataset': config.data.name if from_split else None,
      'test_mode': SCORE_TEST_MODE,
      'generated_dir': _absolute(generated_dir),
      'targets': _absolute(targets_dir) if targets_dir else where,
      'targets_layout': layout,
  }
  return scores.finish(workdir, facts, f'Scores of {generated_dir}')
