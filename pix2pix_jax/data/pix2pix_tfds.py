"""TFDS builder `pix2pix`: the paired datasets of the pix2pix authors, readable without TensorFlow.

Each published dataset is a `{name}.tar.gz` of side-by-side JPEGs (`{split}/{file}.jpg`). The
builder splits every image at width // 2 into `A` (left half) and `B` (right half) at their
native size; the input pipeline resizes and picks the direction, so one prepared copy serves
both directions. For maps, A is the aerial photo and B the map.

Decisions:
- Halves are stored as **PNG** (compression level 1): they are the decoded JPEG pixels, and a
  second lossy JPEG pass would add its own artifacts to the training targets. The price is size
  (~1 MB per maps pair instead of ~115 KB of JPEG) and decoding time (~20 ms per 600²
  maps pair with PIL, ~4.5 ms at 286²; ~4× the JPEG's).
- Written as `array_record` only (`file_format='array_record'`), read with
  `builder.as_data_source()`: the tfrecord path needs TensorFlow. Examples are stored in natural
  file order (`val/1.jpg`, `val/2.jpg`, ..., `val/10.jpg`), so item i of a split is stable and
  meaningful (e.g. the first 100 val items are the files of a `val/1..100` resized copy).
- maps is checked against the SHA-256 manifest shipped in `checksums/maps_sha256.txt`; see
  `VERIFY_MODES`. Verification runs on the source files before TFDS writes a single example, and
  TFDS generates into `incomplete.*` and renames it only on success, so a failed check leaves no
  prepared (or half-prepared) dataset behind. How a copy was prepared (source, verify mode) is
  recorded in its `metadata.json`, and a copy prepared with a weaker check is refused when a
  stronger one is asked for.

Offline first: `manual_dir` (see `locate_source`) may be the extracted archive, a folder holding
it, the `.tar.gz` itself or a folder holding that, or a resized copy in the same layout. Without
it the builder looks in TFDS's default manual dir (`<download_dir>/manual`), then downloads.

Multi-host runs: prepare the data before the run (e.g. `load_pix2pix(...)` in one process), or
prepare on every host into a host-local `data_dir`. Two processes preparing into the same
`data_dir` at once race on TFDS's final rename. This module does not import JAX.
"""

import dataclasses
import hashlib
import io
import pathlib
import socket
import tarfile
import time
import urllib.parse
from typing import Iterator, Sequence

from absl import logging
import numpy as np
from PIL import Image
import tensorflow_datasets as tfds

from pix2pix_jax.data import images

# 'full': every manifest file of the config's splits is present and matches, and every image
#   present is in the manifest. 'present': every image present is in the manifest and matches;
#   missing files are allowed (partial copies). 'off': nothing is checked (resized copies).
# In 'full' and 'present', an image that is not in the manifest is an error: it would silently
# turn the official dataset into something else, and results would no longer be comparable.
VERIFY_MODES = images.VERIFY_MODES
_VERIFY_STRENGTH = {'off': 0, 'present': 1, 'full': 2}

URL_TEMPLATE = 'http://efrosgans.eecs.berkeley.edu/pix2pix/datasets/{}.tar.gz'
_MANIFEST_DIR = pathlib.Path(__file__).resolve().parent / 'checksums'
_ARCHIVE_SUFFIXES = ('.tar.gz', '.tgz', '.tar')
# Level 1 encodes a 600² maps half ~3× faster than PIL's default level 6 at about the same size
# (measured: 1.05 vs 1.09 MB per pair); decoding speed is the same.
_PNG_COMPRESS_LEVEL = 1
_MAX_LISTED = 10  # Offending files named in an error message.

_CITATION = """\
@inproceedings{isola2017image,
  title={Image-to-Image Translation with Conditional Adversarial Networks},
  author={Isola, Phillip and Zhu, Jun-Yan and Zhou, Tinghui and Efros, Alexei A},
  booktitle={CVPR},
  year={2017}
}"""


class VerificationError(ValueError):
  """Source files do not match the dataset's SHA-256 manifest."""


class SourceNotFoundError(FileNotFoundError):
  """The dataset's files are neither in `manual_dir` nor downloadable."""


@dataclasses.dataclass(eq=False)
class Pix2pixConfig(tfds.core.BuilderConfig):
  """One published pix2pix dataset.

  Attributes:
    splits: the archive's split folders.
    manifest: SHA-256 manifest file name in `checksums/`, or None when none is shipped.
  """

  splits: tuple[str, ...] = ('train', 'val')
  manifest: str | None = None

  @property
  def url(self) -> str:
    return URL_TEMPLATE.format(self.name)


_CONFIGS = (
    Pix2pixConfig(
        name='maps',
        manifest='maps_sha256.txt',
        description=(
            'Google Maps, New York: 1096 train / 1098 val pairs of 600×600 '
            'halves. A: aerial photo, B: map.'
        ),
    ),
    Pix2pixConfig(
        name='facades',
        splits=('train', 'val', 'test'),
        description='CMP Facades: building photos and facade label maps.',
    ),
    Pix2pixConfig(name='cityscapes', description='Cityscapes: street photos and label maps.'),
    Pix2pixConfig(name='edges2shoes', description='Shoe photos and their HED edge maps.'),
    Pix2pixConfig(name='edges2handbags', description='Handbag photos and their HED edge maps.'),
    Pix2pixConfig(
        name='night2day',
        splits=('train', 'val', 'test'),
        description='Day and night photos of the same webcam scenes.',
    ),
)
CONFIG_NAMES = tuple(c.name for c in _CONFIGS)


def _accepted_layouts(name: str, splits: Sequence[str]) -> str:
  split_dirs = ', '.join(f'{s}/' for s in splits)
  return (
      f'  - the archive itself: DIR = .../{name}.tar.gz\n'
      f'  - a folder holding it: DIR/{name}.tar.gz\n'
      f'  - the extracted archive: DIR/{{{split_dirs}}} holding the side-by-side images\n'
      f'  - a folder holding the extracted archive: DIR/{name}/{{{split_dirs}}}\n'
      '  - a resized copy in either folder layout (any size, each image exactly 2:1; '
      "for maps with verify='off')"
  )


@dataclasses.dataclass(frozen=True)
class Source:
  """Where a dataset's side-by-side images are: an extracted folder or a tar archive.

  Attributes:
    kind: 'dir' (holds the split folders) or 'tar'.
    path: the folder or the archive.
    name: the dataset name (an archive's top folder must be this name, or absent).
    splits: the split folders to read.
  """

  kind: str
  path: pathlib.Path
  name: str
  splits: tuple[str, ...]

  def iter_files(self, only: frozenset[str] | None = None) -> Iterator[tuple[str, bytes]]:
    """Yields (file_name, encoded bytes), file_name like 'train/1.jpg', for the splits' images.

    Args:
      only: if given, only these file names.
    """
    files = self._iter_tar() if self.kind == 'tar' else self._iter_dir()
    for file_name, read in files:
      if only is None or file_name in only:
        yield file_name, read()

  def _iter_dir(self):
    for split in self.splits:
      split_dir = self.path / split
      if not split_dir.is_dir():
        continue
      for path in sorted(split_dir.iterdir(), key=lambda p: images.natural_key(p.name)):
        if images.is_image_name(path.name) and path.is_file():
          yield f'{split}/{path.name}', path.read_bytes

  def _iter_tar(self):
    # Streaming mode: one sequential pass, no seeks in the .gz and nothing extracted to disk.
    with tarfile.open(self.path, mode='r|*') as archive:
      for member in archive:
        file_name = self._archive_file_name(member.name) if member.isfile() else None
        if file_name:
          yield file_name, archive.extractfile(member).read

  def _archive_file_name(self, member_name: str) -> str | None:
    parts = [p for p in member_name.split('/') if p not in ('', '.')]
    if len(parts) == 3 and parts[0] == self.name:
      parts = parts[1:]
    if len(parts) == 2 and parts[0] in self.splits and images.is_image_name(parts[1]):
      return '/'.join(parts)
    return None

  def __str__(self) -> str:
    return f'{self.path}' + (' (archive)' if self.kind == 'tar' else '')


def _has_split_dirs(path: pathlib.Path, splits: Sequence[str]) -> bool:
  return any((path / s).is_dir() for s in splits)


def locate_source(
    manual_dir: str | pathlib.Path, name: str, splits: Sequence[str], *, required: bool = True
) -> Source | None:
  """Finds dataset `name` in `manual_dir`, trying the accepted layouts in this order.

  1. `manual_dir` is a tar archive (e.g. `maps.tar.gz`).
  2. `manual_dir` has split folders (`train/`, `val/`, ...): the extracted archive or a copy.
  3. `manual_dir/{name}/` has split folders.
  4. `manual_dir/{name}.tar.gz` (or `.tgz`, `.tar`) exists.

  Args:
    manual_dir: the path given by the user.
    name: the dataset (config) name.
    splits: the dataset's split folder names.
    required: raise if nothing is found (else return None).

  Returns:
    The source, or None if not `required` and nothing was found.

  Raises:
    SourceNotFoundError: if `required` and no layout matches; names what the folder holds.
  """
  root = pathlib.Path(manual_dir).expanduser()
  splits = tuple(splits)
  if root.is_file():
    if tarfile.is_tarfile(root):
      return Source('tar', root, name, splits)
    problem = 'is a file but not a tar archive'
  elif root.is_dir():
    for path in (root, root / name):
      if _has_split_dirs(path, splits):
        return Source('dir', path, name, splits)
    for suffix in _ARCHIVE_SUFFIXES:
      if (root / f'{name}{suffix}').is_file():
        return Source('tar', root / f'{name}{suffix}', name, splits)
    entries = sorted(p.name + ('/' if p.is_dir() else '') for p in root.iterdir())
    shown = ', '.join(entries[:_MAX_LISTED]) + (', ...' if len(entries) > _MAX_LISTED else '')
    problem = f'holds none of the accepted layouts (it holds: {shown or "nothing"})'
  else:
    problem = 'does not exist'
  if not required:
    return None
  raise SourceNotFoundError(
      f'manual_dir {root} {problem}. For pix2pix/{name}, manual_dir (--config.data.manual_dir) '
      f'may be:\n{_accepted_layouts(name, splits)}'
  )


def check_reachable(url: str, timeout_s: float = 10.0) -> None:
  """Raises OSError fast if `url`'s host cannot be reached.

  Without it an offline machine waits ~3.5 minutes for TFDS's download retries before the error
  that says how to work offline.
  """
  parsed = urllib.parse.urlsplit(url)
  port = parsed.port or (443 if parsed.scheme == 'https' else 80)
  socket.create_connection((parsed.hostname, port), timeout=timeout_s).close()


def default_manifest_path(name: str) -> pathlib.Path | None:
  """The SHA-256 manifest shipped for dataset `name`, or None (tests monkeypatch this)."""
  config = next((c for c in _CONFIGS if c.name == name), None)
  return _MANIFEST_DIR / config.manifest if config and config.manifest else None


def read_manifest(path: pathlib.Path) -> dict[str, str]:
  """Reads `sha256sum` output ('HEX  split/file.jpg' lines) into {file_name: hex}."""
  manifest = {}
  for line_no, line in enumerate(pathlib.Path(path).read_text().splitlines(), 1):
    if not line.strip():
      continue
    digest, sep, file_name = line.strip().partition(' ')
    file_name = file_name.strip().lstrip('*')  # '*' marks binary mode in sha256sum output.
    if not sep or len(digest) != 64 or not file_name:
      raise ValueError(f'{path}:{line_no}: not a "SHA256  split/file" line: {line!r}')
    manifest[file_name] = digest.lower()
  return manifest


def _listing(title: str, items: Sequence[str]) -> str:
  lines = [f'  {title} ({len(items)}):'] + [f'    {item}' for item in items[:_MAX_LISTED]]
  if len(items) > _MAX_LISTED:
    lines.append(f'    ... and {len(items) - _MAX_LISTED} more')
  return '\n'.join(lines)


def split_pair(image: Image.Image, file_name: str) -> tuple[Image.Image, Image.Image]:
  """Splits a side-by-side image into its (left, right) halves = (A, B), as folder datasets do.

  Raises:
    ValueError: naming `file_name` if the image is not exactly twice as wide as high (the
      authors' datasets are pairs of square halves).
  """
  check_pair_size(image.size, file_name)
  return tuple(
      Image.fromarray(half) for half in images.split_side_by_side(np.asarray(image), file_name)
  )


def check_pair_size(size: tuple[int, int], file_name: str) -> None:
  """Raises ValueError naming `file_name` unless (width, height) is exactly 2:1."""
  width, height = size
  if width != 2 * height or height == 0:
    raise ValueError(
        f'{file_name}: {width}×{height} is not a side-by-side pair: the width must be '
        'exactly twice the height (two square halves)'
    )


def _pair_problem(data: bytes, file_name: str) -> str | None:
  """What is wrong with an encoded side-by-side image (reading its header only), or None."""
  try:
    size = Image.open(io.BytesIO(data)).size
  except Exception as e:  # pylint: disable=broad-except  # PIL raises several kinds.
    return f'{file_name}: not a readable image ({type(e).__name__})'
  try:
    check_pair_size(size, file_name)
  except ValueError as e:
    return str(e)
  return None


def _encode_png(image: Image.Image) -> bytes:
  buffer = io.BytesIO()
  image.save(buffer, format='png', compress_level=_PNG_COMPRESS_LEVEL)
  return buffer.getvalue()


class Pix2pix(tfds.core.GeneratorBasedBuilder):
  """The pix2pix authors' paired datasets; see the module docstring."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Native-size PNG halves A (left) and B (right), natural file order.'}
  BUILDER_CONFIGS = list(_CONFIGS)
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      'Optional. Put the dataset in manual_dir in one of these layouts (DIR = manual_dir):\n'
      + _accepted_layouts('NAME', ('train', 'val', 'test'))
  )

  def __init__(
      self, *, verify: str = 'full', manifest_path: str | pathlib.Path | None = None, **kwargs
  ):
    """A TFDS builder that also takes the verification settings.

    Args:
      verify: one of VERIFY_MODES: how the source files are checked against the manifest.
      manifest_path: a SHA-256 manifest to use instead of the shipped one (tests).
      **kwargs: `data_dir`, `config`, `version`, as for any TFDS builder.
    """
    if verify not in VERIFY_MODES:
      raise ValueError(f'verify={verify!r} (config.data.verify) is not one of {VERIFY_MODES}')
    self._verify = verify
    self._manifest_path = manifest_path
    self._explicit_manual_dir = None
    super().__init__(**kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    image = tfds.features.Image(shape=(None, None, 3), encoding_format='png')
    return tfds.core.DatasetInfo(
        builder=self,
        description=(
            f'{self.builder_config.description} Side-by-side images split into A '
            '(left half) and B (right half), native size, lossless PNG.'
        ),
        features=tfds.features.FeaturesDict(
            {'A': image, 'B': image, 'file_name': tfds.features.Text()}
        ),
        homepage='https://phillipi.github.io/pix2pix/',
        citation=_CITATION,
        disable_shuffling=True,  # Natural file order; keys are ranks in that order.
        metadata=tfds.core.MetadataDict(),
    )

  @property
  def manifest_path(self) -> pathlib.Path | None:
    if self._manifest_path is not None:
      return pathlib.Path(self._manifest_path)
    return default_manifest_path(self.builder_config.name)

  def _download_and_prepare(self, dl_manager, download_config):
    # `_split_generators` only gets the download manager; keep the user's manual_dir apart from
    # TFDS's default one, which may legitimately hold nothing for this dataset.
    self._explicit_manual_dir = download_config.manual_dir
    return super()._download_and_prepare(dl_manager, download_config)

  def _find_source(self, dl_manager) -> Source:
    config = self.builder_config
    if self._explicit_manual_dir:
      return locate_source(self._explicit_manual_dir, config.name, config.splits)
    default_manual = pathlib.Path(dl_manager.download_dir) / 'manual'
    source = locate_source(default_manual, config.name, config.splits, required=False)
    if source:
      return source
    try:
      check_reachable(config.url)
      archive = dl_manager.download(config.url)
    except Exception as e:  # pylint: disable=broad-except  # Any failure: tell what to do offline.
      raise SourceNotFoundError(
          f'could not download pix2pix/{config.name} from {config.url} ({type(e).__name__}: {e}).'
          f'\nDownload that file yourself and pass its location as manual_dir '
          f'(--config.data.manual_dir=DIR, or load_pix2pix(..., manual_dir=DIR)), where DIR is '
          f"any of:\n{_accepted_layouts(config.name, config.splits)}\n(Or put it into TFDS's "
          f'default manual dir {default_manual}.)'
      ) from e
    return Source('tar', pathlib.Path(archive), config.name, config.splits)

  def _split_generators(self, dl_manager):
    source = self._find_source(dl_manager)
    logging.info('pix2pix/%s: reading %s', self.builder_config.name, source)
    files = self._scan_and_verify(source)
    self.info.metadata.update(
        source=str(source.path),
        verify=self._recorded_verify(),
        manifest=self.manifest_path.name if self.manifest_path else None,
    )
    return {split: self._generate_examples(source, names) for split, names in files.items()}

  def _recorded_verify(self) -> str:
    return self._verify if self.manifest_path else 'none'

  def _scan_and_verify(self, source: Source) -> dict[str, list[str]]:
    """Reads every source image once: checks hashes and 2:1 sizes, before anything is written.

    Returns:
      {split: file names in natural order}.

    Raises:
      VerificationError: files missing, corrupted or unknown (per `verify`), all named.
      ValueError: images that are not 2:1, or a split without images.
    """
    name = self.builder_config.name
    manifest = self._load_manifest()
    mismatched, unknown, bad_size, found = [], [], [], []
    for file_name, data in source.iter_files():
      found.append(file_name)
      if manifest is not None:
        expected = manifest.get(file_name)
        if expected is None:
          unknown.append(file_name)
          continue
        digest = hashlib.sha256(data).hexdigest()
        if digest != expected:
          mismatched.append(f'{file_name}: sha256 {digest}, expected {expected}')
          continue
      problem = _pair_problem(data, file_name)
      if problem:
        bad_size.append(problem)
    missing = []
    if manifest is not None and self._verify == 'full':
      missing = sorted(set(manifest) - set(found), key=images.natural_key)
    if mismatched or unknown or missing:
      raise self._verification_error(source, missing, mismatched, unknown)
    if bad_size:
      raise ValueError(
          f'pix2pix/{name}: {source} has files that are not side-by-side pairs:\n'
          + _listing('bad', bad_size)
      )
    self._log_verification(source, manifest, found)
    by_split = {split: [] for split in self.builder_config.splits}
    for file_name in found:
      by_split[file_name.split('/')[0]].append(file_name)
    empty = [split for split, names in by_split.items() if not names]
    if empty:
      raise SourceNotFoundError(
          f'pix2pix/{name}: {source} has no images for split(s) {empty}; this dataset has splits '
          f'{list(self.builder_config.splits)}. Accepted layouts:\n'
          f'{_accepted_layouts(name, self.builder_config.splits)}'
      )
    return {split: sorted(names, key=images.natural_key) for split, names in by_split.items()}

  def _verification_error(self, source, missing, mismatched, unknown) -> VerificationError:
    problems = [
        _listing(title, items)
        for title, items in (
            ('missing', missing),
            ('content differs (corrupted or not an original)', mismatched),
            ('not in the manifest', unknown),
        )
        if items
    ]
    return VerificationError(
        f'pix2pix/{self.builder_config.name}: {source} failed verification against '
        f"{self.manifest_path} (verify='{self._verify}'):\n"
        + '\n'.join(problems)
        + '\n'
        f'Nothing was prepared. Re-download {self.builder_config.url}, or choose a weaker check '
        "with --config.data.verify: 'present' for a partial copy of the original files, 'off' "
        'for a resized or otherwise modified copy.'
    )

  def _load_manifest(self) -> dict[str, str] | None:
    name = self.builder_config.name
    if self._verify == 'off':
      logging.warning(
          "pix2pix/%s: verify='off': source files are not checked against the SHA-256 manifest.",
          name,
      )
      return None
    if self.manifest_path is None:
      logging.info(
          'pix2pix/%s: no SHA-256 manifest is shipped for this dataset; nothing to verify.', name
      )
      return None
    splits = self.builder_config.splits
    return {f: h for f, h in read_manifest(self.manifest_path).items() if f.split('/')[0] in splits}

  def _log_verification(self, source, manifest, found) -> None:
    if manifest is None:
      return
    logging.info(
        "pix2pix/%s: verification passed (verify='%s'): all %d files in %s match %s "
        '(%d files listed for these splits).',
        self.builder_config.name,
        self._verify,
        len(found),
        source,
        self.manifest_path.name,
        len(manifest),
    )

  def _generate_examples(self, source: Source, file_names: list[str]):
    """Yields (rank in natural order, example): the key fixes the stored order."""
    rank = {file_name: i for i, file_name in enumerate(file_names)}
    for file_name, data in source.iter_files(only=frozenset(file_names)):
      try:
        image = Image.open(io.BytesIO(data)).convert('RGB')
      except Exception as e:  # pylint: disable=broad-except
        raise ValueError(
            f'pix2pix/{source.name}: cannot decode {file_name} in {source}: {e}'
        ) from e
      a, b = split_pair(image, file_name)
      yield rank[file_name], {'A': _encode_png(a), 'B': _encode_png(b), 'file_name': file_name}


class PairSource:
  """Random access to one prepared split: items {'A', 'B': uint8 (H, W, 3), 'file_name': str}.

  Wraps the TFDS array_record data source (read with the halves' decoding skipped) and decodes
  the PNG halves with PIL. Picklable, for grain worker processes.
  """

  def __init__(self, tfds_source, name: str):
    self._source = tfds_source
    self.name = name

  def __len__(self) -> int:
    return len(self._source)

  def __getitem__(self, index: int) -> dict:
    return self._decode(self._source[index])

  def __getitems__(self, indices: Sequence[int]) -> list[dict]:
    # One batched array_record read.
    return [self._decode(record) for record in self._source.__getitems__(indices)]

  def __repr__(self) -> str:
    return f'PairSource({self.name}, {len(self)} pairs)'

  @staticmethod
  def _decode(record: dict) -> dict:
    return {
        'A': _decode_png(record['A']),
        'B': _decode_png(record['B']),
        'file_name': record['file_name'].decode('utf-8'),
    }


def _decode_png(data: bytes) -> np.ndarray:
  with Image.open(io.BytesIO(data)) as image:
    # np.array, not asarray: a writable copy (asarray of a PIL image is read-only), ~1% of the
    # decoding time.
    return np.array(image.convert('RGB') if image.mode != 'RGB' else image)


def load_pix2pix(
    name: str,
    split: str,
    *,
    data_dir: str | None = None,
    manual_dir: str | None = None,
    verify: str = 'full',
) -> PairSource:
  """Prepares `pix2pix/{name}` once (if not yet in data_dir) and returns the split's data source.

  Args:
    name: the dataset, one of CONFIG_NAMES (config.data.name).
    split: a split of that dataset ('train', 'val', ...); TFDS slices like 'train[:10]' work.
    data_dir: TFDS data dir; None: TFDS's default (~/tensorflow_datasets or $TFDS_DATA_DIR).
    manual_dir: an offline copy (see `locate_source`); None: TFDS's default manual dir, then the
      official URL. Ignored once the dataset is prepared in data_dir.
    verify: one of VERIFY_MODES. A copy prepared with a weaker check than `verify` is refused.

  Returns:
    A random-access source: items {'A': uint8 (H, W, 3), 'B': uint8 (H, W, 3), 'file_name': str}.

  Raises:
    ValueError: unknown dataset or split (naming the available ones), bad verify mode, images
      that are not 2:1, or a prepared copy that was checked less strictly than `verify` asks.
    VerificationError: source files failing the SHA-256 check.
    SourceNotFoundError: no usable manual_dir and the download failed.
  """
  if name not in CONFIG_NAMES:
    raise ValueError(
        f'unknown pix2pix dataset {name!r} (config.data.name); available: {list(CONFIG_NAMES)}'
    )
  builder = Pix2pix(config=name, data_dir=data_dir, verify=verify)
  splits = builder.builder_config.splits
  if split.split('[')[0] not in splits:
    raise ValueError(f'pix2pix/{name} has no split {split!r}; available: {list(splits)}')
  # Not `builder.is_prepared()`: it logs a warning for a dataset that is simply not there yet.
  if (builder.data_path / 'dataset_info.json').exists():
    _check_prepared(builder, verify, manual_dir)
  else:
    _prepare(builder, manual_dir)
  # Raw PNG bytes out of TFDS (without TF, its own decoding is also PIL, after a warning that
  # OpenCV is missing); PairSource decodes them.
  skip = tfds.decode.SkipDecoding()
  source = builder.as_data_source(split=split, decoders={'A': skip, 'B': skip})
  return PairSource(source, f'pix2pix/{name}:{split}')


def _prepare(builder: Pix2pix, manual_dir: str | None) -> None:
  if manual_dir:
    # A wrong manual_dir is named here, before TFDS announces "Downloading and preparing" and
    # creates the dataset's folders.
    locate_source(manual_dir, builder.builder_config.name, builder.builder_config.splits)
  start = time.perf_counter()
  logging.info('Preparing pix2pix/%s into %s', builder.builder_config.name, builder.data_dir)
  builder.download_and_prepare(
      file_format='array_record',
      # Never look for a prepared copy on TFDS's GCS bucket: pix2pix is not there.
      download_config=tfds.download.DownloadConfig(manual_dir=manual_dir, try_download_gcs=False),
  )
  counts = {s: info.num_examples for s, info in builder.info.splits.items()}
  logging.info(
      'Prepared pix2pix/%s in %.1f s: %s pairs per split, %s',
      builder.builder_config.name,
      time.perf_counter() - start,
      counts,
      builder.data_dir,
  )


def _check_prepared(builder: Pix2pix, verify: str, manual_dir: str | None) -> None:
  """Refuses a prepared copy checked less strictly than `verify`; logs what is reused."""
  name = builder.builder_config.name
  metadata = dict(builder.info.metadata or {})
  recorded = metadata.get('verify')
  counts = {s: info.num_examples for s, info in builder.info.splits.items()}
  logging.info(
      'Reusing pix2pix/%s in %s (prepared from %s, verify=%r): %s pairs per split',
      name,
      builder.data_dir,
      metadata.get('source', '?'),
      recorded,
      counts,
  )
  if (
      builder.manifest_path
      and recorded in _VERIFY_STRENGTH
      and _VERIFY_STRENGTH[recorded] < _VERIFY_STRENGTH[verify]
  ):
    raise ValueError(
        f"pix2pix/{name} in {builder.data_dir} was prepared from {metadata.get('source')} with "
        f"verify='{recorded}', weaker than the requested verify='{verify}' "
        '(config.data.verify). Use that verify mode to read it, or prepare the original files '
        'into another data_dir (config.data.data_dir), or delete this copy.'
    )
  if (
      manual_dir
      and metadata.get('source')
      and pathlib.Path(manual_dir).expanduser().resolve()
      not in {
          pathlib.Path(metadata['source']).resolve(),
          pathlib.Path(metadata['source']).resolve().parent,
      }
  ):
    logging.warning(
        'pix2pix/%s is already prepared in %s (from %s); manual_dir %s is ignored.',
        name,
        builder.data_dir,
        metadata.get('source'),
        manual_dir,
    )
