"""Paired images from a folder of your own: a random-access source for the input pipeline.

`PairedFolder(root, split, channels=(C_A, C_B))` has `len()` and `[i] -> {'A': (H, W, C_A),
'B': (H, W, C_B), 'file_name': str}` (uint8, or uint16 from 16-bit files) like the other sources;
the pipeline resizes, crops, flips and picks the direction. A and B may have any size (not
necessarily square) but are equal in size within a pair.

Two layouts are recognised, independently for each split:

1. Side by side (the pix2pix format, what the reference's `datasets/combine_A_and_B.py` writes):
   each image is A (left half) | B (right half), so its width must be even::

     ROOT/
     ├── train/
     │   ├── 1.jpg          # 512×256 -> A = left 256×256, B = right 256×256
     │   └── 2.jpg
     ├── val/
     └── test/              # optional

2. Two folders with matching file names, either way round::

     ROOT/                          ROOT/
     ├── A/                         ├── train/
     │   ├── train/1.jpg            │   ├── A/1.jpg
     │   └── val/...                │   └── B/1.png
     └── B/                         └── val/
         ├── train/1.png                ├── A/...
         └── val/...                    └── B/...

   (the left one is the input layout of the reference's `combine_A_and_B.py`). Files are matched
   by *stem*, the name without its extension, so `1.jpg` in A pairs with `1.png` in B (photos as
   JPEG, masks or labels as PNG). Two files with the same stem in one folder are an error.
   `file_name` is the A file's path relative to ROOT (`A/train/1.jpg`, `train/A/1.jpg`).

A split matching more than one layout (say `ROOT/A/train/` and `ROOT/train/*.jpg`) is an error
rather than a silent pick. Folders are not searched recursively. Pairs are in natural order by
name (`2.jpg` before `10.jpg`), so the order is the same on every machine.

How inputs are handled:

* Listing, extensions and name matching are checked in the constructor, without opening any image
  (10k files take milliseconds); problems raise `FolderLayoutError` naming the folder.
* Hidden entries (`.DS_Store`, `._1.jpg`, `.git/`) and OS thumbnail files (`Thumbs.db`,
  `desktop.ini`) are ignored silently. Other non-image files and subfolders are skipped with one
  logged warning per `PairedFolder` giving their count and the first few names.
* Every file is decoded once before training: `check()`, which the pipeline runs whenever it
  builds a folder source, so a run checks the train and eval splits it uses before anything is
  compiled or written to the workdir (`config.data.num_threads` threads; maps' 1096 train pairs
  take 1 CPU-second, the 1200×600 originals 5.5). A file that does not decode (corrupt,
  truncated, not really an image), an odd-width side-by-side image, a pair of different sizes or,
  with `preprocess='patches'`, a pair smaller than `image_size` is a bad file: one
  `BadImageError` lists them all, each with its reason (`config.data.on_bad_file='error'`), or
  their pairs are left out of the split with one warning listing them (`'skip'`). Side-by-side
  images that are not 2:1 (A and B not square: they get stretched to squares) and pairs smaller
  than `config.data.image_size` (upsampled) are allowed, with one warning per kind listing them.
  PIL's `ImageFile.LOAD_TRUNCATED_IMAGES` must stay False (the default) for truncated files to
  fail instead of being padded with grey; the constructor warns if something set it.
* Access (`[i]`) decodes the pair again (the pipeline caches it after that, and keeps what the
  check decoded when it needs no resizing); a file that went bad since raises `BadImageError`
  naming it then.
* EXIF orientation is applied (`ImageOps.exif_transpose`): phone photos come out the way a viewer
  shows them, and the same way `cv2.imread` reads them in the reference's `combine_A_and_B.py`.
* Each side gets its configured channel count (`images.load_image`; 3 by default). For 3, every
  8-bit mode becomes RGB (`to_rgb_uint8`): gray and 1-bit are replicated to three channels,
  palette images are looked up, alpha is dropped (pixels keep their stored colour, as the
  reference's `.convert('RGB')`), CMYK/YCbCr/LAB are converted by PIL. For 1, gray files as they
  are (1-bit, gray+alpha and all-gray palettes converted); a colour file is a bad file, never
  averaged to gray silently. Other counts (4-band imagery, say) need files of that many channels
  (multi-band TIFFs are read with tifffile, the `tiff` extra). A file of another channel count is
  a bad file naming the config key that sets the count.
* Bit depth: 16-bit files (gray PNG, TIFF) stay 16-bit (uint16, replicated for 3-channel sides),
  so the network gets their full precision; a side with any 16-bit file holds all its images at
  16 bits after `check()` (`dtypes`; 8-bit files promoted exactly, 255 -> 65535).
"""

import concurrent.futures
import logging
import operator
import os

from PIL import ImageFile

from pix2pix_jax import progress
from pix2pix_jax.data import images

# Files the OS drops into image folders; skipping them is not worth a warning.
_OS_JUNK = frozenset({'thumbs.db', 'ehthumbs.db', 'desktop.ini'})
_MAX_LISTED = 10  # names shown per list in an error or warning
_MAX_WARNED = 100  # names shown in a warning about allowed but suspect images
ON_BAD_FILE = ('error', 'skip')  # What `PairedFolder.check` does with files it cannot use.

SIDE_BY_SIDE, A_B_SPLIT, SPLIT_A_B = 'side_by_side', 'A|B/split', 'split/A|B'
LAYOUT_HELP = (
    'expected ROOT/SPLIT/*.jpg (A | B side by side), ROOT/A/SPLIT/ + ROOT/B/SPLIT/, or '
    'ROOT/SPLIT/A/ + ROOT/SPLIT/B/ (A and B files matched by name without extension); image '
    f'extensions: {" ".join(images.IMAGE_EXTENSIONS)}'
)

_log = logging.getLogger(__name__)


class FolderLayoutError(ValueError):
  """The folder does not hold a split in a recognised layout (raised on construction)."""


def listed(names, limit: int = _MAX_LISTED) -> str:
  """'a, b, c' with at most `limit` names and '...' after them."""
  names = list(names)
  return ', '.join(names[:limit]) + (', ...' if len(names) > limit else '')


def _is_image(name: str) -> bool:
  return images.is_image_name(name)


def _ignored(name: str) -> bool:
  return name.startswith('.') or name.lower() in _OS_JUNK


def _is_dir(entry: os.DirEntry) -> bool:
  """`entry.is_dir()`, following links; a link that loops or dangles is no folder.

  Such an entry is then listed with the other non-image entries (skipped with a warning), or, if
  its name is an image's, named as a bad file when it does not decode: never a raw OSError.
  """
  try:
    return entry.is_dir()
  except OSError:  # ELOOP: "Too many levels of symbolic links".
    return False


def _entries(folder: str) -> list[os.DirEntry]:
  """The entries of `folder`; a folder that cannot be listed (permissions, I/O) is named."""
  try:
    with os.scandir(folder) as entries:
      return list(entries)
  except OSError as error:
    raise FolderLayoutError(
        f'cannot list the folder {folder}: {error.strerror or error}'
    ) from error


def _scan(folder: str) -> tuple[list[str], list[str], list[str]]:
  """Lists one folder (not recursively).

  Returns:
    (image file names, subfolder names, other file names), hidden and OS junk entries left out.
  """
  image_names, subdirs, others = [], [], []
  for entry in _entries(folder):
    if _ignored(entry.name):
      continue
    if _is_dir(entry):
      subdirs.append(entry.name)
    elif _is_image(entry.name):
      image_names.append(entry.name)
    else:
      others.append(entry.name)
  return image_names, subdirs, others


def _has_image(folder: str) -> bool:
  entries = _entries(folder)
  return any(_is_image(e.name) and not _ignored(e.name) and not _is_dir(e) for e in entries)


def _visible_subdirs(folder: str) -> list[str]:
  return [e.name for e in _entries(folder) if _is_dir(e) and not e.name.startswith('.')]


def _check_root(root: str) -> str:
  root = os.path.expanduser(os.fspath(root))
  if not os.path.isdir(root):
    what = 'is not a folder' if os.path.exists(root) else 'does not exist'
    raise FolderLayoutError(f'dataset root {root} {what}; {LAYOUT_HELP}')
  return root


def _has_ab_folders(path: str) -> bool:
  return os.path.isdir(os.path.join(path, 'A')) and os.path.isdir(os.path.join(path, 'B'))


def available_splits(root: str) -> list[str]:
  """Splits of `root` in any recognised layout, in natural order.

  Only folder names are looked at (plus, for the side-by-side layout, whether the folder holds
  an image), so a split listed here can still fail `PairedFolder` (e.g. mismatched names).

  Args:
    root: dataset folder.

  Returns:
    Split names such as ['test', 'train', 'val'].

  Raises:
    FolderLayoutError: if `root` is not a folder.
  """
  root = _check_root(root)
  splits = set()
  top_ab = _has_ab_folders(root)
  if top_ab:
    splits.update(
        set(_visible_subdirs(os.path.join(root, 'A')))
        & set(_visible_subdirs(os.path.join(root, 'B')))
    )
  for name in _visible_subdirs(root):
    if top_ab and name in ('A', 'B'):
      continue  # ROOT/A and ROOT/B are the two halves, not splits
    path = os.path.join(root, name)
    if _has_ab_folders(path) or _has_image(path):
      splits.add(name)
  return sorted(splits, key=images.natural_key)


def _stems(folder: str, names: list[str], rel: str) -> dict[str, str]:
  """Maps stem -> file name; two files with one stem would make the pairing ambiguous."""
  stems = {}
  for name in names:
    stem = os.path.splitext(name)[0]
    if stem in stems:
      raise FolderLayoutError(
          f'{folder} has both {stems[stem]} and {name}: A and B files are matched by name without '
          f'extension, so {rel}/{stem}.* must be unique'
      )
    stems[stem] = name
  return stems


def _mismatch_message(dir_a: str, dir_b: str, only_a: list[str], only_b: list[str]) -> str:
  lines = [
      f'A and B files do not match (matched by name without extension) in {dir_a} and {dir_b}:'
  ]
  if only_a:
    lines.append(f'  {len(only_a)} only in A: {listed(only_a)}')
  if only_b:
    lines.append(f'  {len(only_b)} only in B: {listed(only_b)}')
  return '\n'.join(lines)


class PairedFolder:
  """Random-access (A, B) pairs from a folder in one of the layouts of the module docstring.

  Attributes:
    root: the dataset folder.
    split: the split, e.g. 'train'.
    layout: SIDE_BY_SIDE, A_B_SPLIT (ROOT/A/SPLIT/) or SPLIT_A_B (ROOT/SPLIT/A/).
    channels: (A's, B's) channel count.
    dtypes: {'A': dtype, 'B': dtype} after `check()`: uint16 for a side with any 16-bit file,
      else uint8; None before.
  """

  def __init__(
      self,
      root: str,
      split: str,
      channels: tuple[int, int] = (3, 3),
      wanted: tuple[str, str] = ('', ''),
  ):
    """Lists and pairs the files of `split`; no image is opened.

    Args:
      root: dataset folder ('~' is expanded).
      split: split folder name, e.g. 'train', 'val' or 'test'.
      channels: the channel counts of A and B (see the module docstring for conversions).
      wanted: for the error about a file of another channel count: what sets A's and B's count
        (e.g. 'config.data.input_channels=4 (side A: the input, ...)').

    Raises:
      FolderLayoutError: naming the folder, if the split is missing, empty, ambiguous, or its A
        and B names do not match.
    """
    self.root, self.split = _check_root(root), split
    self.channels, self._wanted = tuple(channels), tuple(
        w or f'side {side}' for side, w in zip('AB', wanted)
    )
    self.dtypes = None
    self.layout = self._detect_layout()
    skipped = []
    if self.layout == SIDE_BY_SIDE:
      self._items = self._list_side_by_side(skipped)
    else:
      self._items = self._list_two_folders(skipped)
    if skipped:
      _log.warning(
          '%r: skipped %d non-image entries (image extensions: %s): %s',
          self,
          len(skipped),
          ' '.join(images.IMAGE_EXTENSIONS),
          listed(skipped, 5),
      )
    if ImageFile.LOAD_TRUNCATED_IMAGES:
      _log.warning(
          'PIL.ImageFile.LOAD_TRUNCATED_IMAGES is True (set by some other code): '
          'truncated images in %s will be padded with grey instead of raising',
          self.root,
      )

  def _dirs(self, layout: str) -> tuple[str, ...]:
    """The folder(s) a layout reads for this split: (SPLIT,) or (A folder, B folder)."""
    join = os.path.join
    if layout == SIDE_BY_SIDE:
      return (join(self.root, self.split),)
    if layout == A_B_SPLIT:
      return join(self.root, 'A', self.split), join(self.root, 'B', self.split)
    return join(self.root, self.split, 'A'), join(self.root, self.split, 'B')

  def _detect_layout(self) -> str:
    split_dir = os.path.join(self.root, self.split)
    found = [
        layout for layout in (A_B_SPLIT, SPLIT_A_B) if all(map(os.path.isdir, self._dirs(layout)))
    ]
    if os.path.isdir(split_dir) and _has_image(split_dir):
      found.append(SIDE_BY_SIDE)
    if len(found) > 1:
      dirs = '; '.join(' + '.join(self._dirs(layout)) for layout in found)
      raise FolderLayoutError(
          f'split {self.split!r} of {self.root} is ambiguous: it exists in '
          f'{len(found)} layouts ({dirs}); keep one'
      )
    if not found:
      raise FolderLayoutError(self._not_found_message())
    return found[0]

  def _not_found_message(self) -> str:
    """Says what is missing, preferring the layout the folder seems to be in."""
    for layout in (A_B_SPLIT, SPLIT_A_B):
      dir_a, dir_b = self._dirs(layout)
      if os.path.isdir(dir_a) != os.path.isdir(dir_b):
        present, missing = (dir_a, dir_b) if os.path.isdir(dir_a) else (dir_b, dir_a)
        return f'found {present} but not {missing}; {LAYOUT_HELP}'
    if _has_ab_folders(self.root) and _has_image(os.path.join(self.root, 'A')):
      return (
          f'{self.root}/A holds images directly, without split folders: move them into '
          f'{self.root}/A/{self.split}/ (and B likewise); {LAYOUT_HELP}'
      )
    split_dir = os.path.join(self.root, self.split)
    if os.path.isdir(split_dir):
      _, subdirs, others = _scan(split_dir)
      found = sorted(others + [d + '/' for d in subdirs], key=images.natural_key)
      return (
          f'no image files in {split_dir} (found {len(found)} other entries'
          f'{": " + listed(found) if found else ""}); {LAYOUT_HELP}'
      )
    try:
      available = available_splits(self.root)
    except OSError:
      available = []
    top = sorted(_visible_subdirs(self.root), key=images.natural_key)
    return (
        f'split {self.split!r} not found in {self.root} (available splits: {available}; '
        f'folders there: {listed(top)}); {LAYOUT_HELP}'
    )

  def _rel(self, path: str) -> str:
    return os.path.relpath(path, self.root).replace(os.sep, '/')

  def _list_images(self, folder: str, skipped: list[str]) -> list[str]:
    """Image names in `folder`; adds the other entries, relative to the root, to `skipped`."""
    image_names, subdirs, others = _scan(folder)
    rel = self._rel(folder)
    skipped.extend(
        f'{rel}/{name}'
        for name in sorted(others + [d + '/' for d in subdirs], key=images.natural_key)
    )
    return image_names

  def _list_side_by_side(self, skipped: list[str]) -> list[tuple[str, ...]]:
    (folder,) = self._dirs(SIDE_BY_SIDE)
    names = sorted(self._list_images(folder, skipped), key=images.natural_key)
    return [(os.path.join(folder, name),) for name in names]

  def _list_two_folders(self, skipped: list[str]) -> list[tuple[str, ...]]:
    dir_a, dir_b = self._dirs(self.layout)
    names_a, names_b = self._list_images(dir_a, skipped), self._list_images(dir_b, skipped)
    if not names_a and not names_b:
      raise FolderLayoutError(f'no image files in {dir_a} or {dir_b}; {LAYOUT_HELP}')
    stems_a = _stems(dir_a, names_a, self._rel(dir_a))
    stems_b = _stems(dir_b, names_b, self._rel(dir_b))
    only_a = sorted((stems_a[s] for s in stems_a.keys() - stems_b.keys()), key=images.natural_key)
    only_b = sorted((stems_b[s] for s in stems_b.keys() - stems_a.keys()), key=images.natural_key)
    if only_a or only_b:
      raise FolderLayoutError(_mismatch_message(dir_a, dir_b, only_a, only_b))
    return [
        (os.path.join(dir_a, stems_a[s]), os.path.join(dir_b, stems_b[s]))
        for s in sorted(stems_a, key=images.natural_key)
    ]

  def __len__(self) -> int:
    return len(self._items)

  def __getitem__(self, index) -> dict:
    """Decodes pair `index` (python or numpy int; negatives wrap).

    Returns:
      {'A': (H, W, C_A), 'B': (H, W, C_B), 'file_name': str}, each side uint8 or uint16 as its
      file is (not yet promoted to `dtypes`); `file_name` is relative to the root: the image for
      side by side, the A file otherwise.

    Raises:
      images.BadImageError: naming the file(s), if one does not decode, has a channel count that
        does not convert to its side's, a side-by-side image has an odd width or A and B differ in size.
      images.MissingTiffReader: a TIFF needs tifffile, which is not installed.
    """
    i = operator.index(index)
    if i < 0:
      i += len(self._items)
    if not 0 <= i < len(self._items):
      raise IndexError(f'index {index} out of range for {len(self._items)} pairs in {self!r}')
    paths = self._items[i]
    if len(paths) == 1:
      a, b = images.load_side_by_side(paths[0], self.channels, self._wanted)
    else:
      a = images.load_image(paths[0], self.channels[0], self._wanted[0])
      b = images.load_image(paths[1], self.channels[1], self._wanted[1])
      if a.shape[:2] != b.shape[:2]:
        raise images.BadImageError(
            f'A and B differ in size: {paths[0]} is '
            f'{images.describe_size(a)}, {paths[1]} is '
            f'{images.describe_size(b)}',
            *paths,
        )
    return {'A': a, 'B': b, 'file_name': self._rel(paths[0])}

  def check(
      self,
      *,
      num_threads: int = 1,
      on_bad_file: str = 'error',
      image_size: int = 0,
      required_size: int = 0,
      transform=None,
  ) -> list | None:
    """Reads every pair once, in threads, and reports all problems together.

    Bad files (see the module docstring) are collected, not raised one by one, so that a user
    fixes them all in one go. Allowed but suspect images get one warning per kind.

    Args:
      num_threads: decoding threads (PIL decodes with the GIL released).
      on_bad_file: 'error': raise, listing every bad file; 'skip': drop the pairs they belong to
        from this split, with one warning listing them.
      image_size: pairs smaller than this on either side are listed in one warning (upsampled).
      required_size: pairs smaller than this on either side are bad files (0: no minimum).
      transform: a function of an example (`self[i]`), run in the reading thread on each good
        pair; its results are returned, so that a caller keeping decoded pairs (the pipeline's
        cache) does not decode them again.

    Returns:
      `transform`'s results for the pairs kept, in order; None without `transform`. Sets
      `dtypes` from the pairs kept.

    Raises:
      images.BadImageError: with on_bad_file='error', one error listing every bad file with its
        reason (`paths`: all of them); with 'skip', if no pair is left.
    """
    if on_bad_file not in ON_BAD_FILE:
      raise ValueError(f'on_bad_file={on_bad_file!r} is not one of {list(ON_BAD_FILE)}')

    def read(index):
      try:
        example = self[index]
        height, width = example['A'].shape[:2]
        if min(height, width) < required_size:
          raise images.BadImageError(
              f'{self._items[index][0]}: A and B are {width}×{height}, smaller than the '
              f'{required_size}×{required_size} this run needs',
              *self._items[index],
          )
      except images.BadImageError as error:
        return error, None, None
      dtypes.add((example['A'].dtype, example['B'].dtype))
      return None, (width, height), transform(example) if transform else None

    dtypes = set()  # set.add is atomic under the GIL.
    log = progress.ProgressLog(
        f'Checking the {self.split} pairs of {self.root}',
        len(self._items),
        unit='pairs',
        rest='decoding',
    )
    results = []
    with concurrent.futures.ThreadPoolExecutor(max(1, num_threads)) as pool:
      for result in pool.map(read, range(len(self._items))):
        results.append(result)
        log.update(len(results), quiet_end=True)
    good = [i for i, (error, _, _) in enumerate(results) if error is None]
    self.dtypes = {
        side: images.common_dtype(pair[k] for pair in dtypes) for k, side in enumerate(('A', 'B'))
    }
    self._warn_sizes([(self._rel(self._items[i][0]), results[i][1]) for i in good], image_size)
    errors = [error for error, _, _ in results if error is not None]
    if errors:
      self._bad_files(errors, on_bad_file, kept=len(good))
      self._items = [self._items[i] for i in good]
    return [results[i][2] for i in good] if transform else None

  def _bad_files(self, errors: list[images.BadImageError], on_bad_file: str, kept: int) -> None:
    """Raises the one error listing every bad file, or (on_bad_file='skip') warns about them."""
    reasons = '\n'.join(f'  {error}' for error in errors)
    what = f'{len(errors)} of {len(self._items)} pairs of {self!r} have a bad file'
    if on_bad_file == 'error' or not kept:
      advice = (
          "fix or remove them, or set config.data.on_bad_file='skip' to leave them out"
          if kept
          else 'no pair is left'
      )
      raise images.BadImageError(
          f'{what}; {advice}:\n{reasons}', *(path for error in errors for path in error.paths)
      )
    _log.warning("%s, left out (config.data.on_bad_file='skip'):\n%s", what, reasons)

  def _warn_sizes(self, sizes: list[tuple[str, tuple[int, int]]], image_size: int) -> None:
    """One warning for side-by-side images that are not 2:1, one for pairs below image_size."""
    if self.layout == SIDE_BY_SIDE:
      wide = [
          f'{name} ({2 * width}×{height})' for name, (width, height) in sizes if width != height
      ]
      if wide:
        # A quarter turn by a stale EXIF tag makes an upright 2:1 pair 1:2: say so, by name.
        turned = [
            name
            for name, (width, height) in sizes
            if width != height and images.exif_orientation(os.path.join(self.root, name)) != 1
        ]
        exif = (
            f'. {len(turned)} of them carry an EXIF Orientation tag, applied as viewers apply '
            f'it ({listed(turned)}): if those files are stored upright the tag is stale; remove '
            'it (e.g. exiftool -Orientation= FILE) or re-save the images without EXIF'
            if turned
            else ''
        )
        _log.warning(
            '%r: %d side-by-side images are not 2:1, so A and B (their halves) are not '
            'square and get stretched to squares: %s%s',
            self,
            len(wide),
            listed(wide, _MAX_WARNED),
            exif,
        )
    small = [
        f'{name} ({width}×{height})'
        for name, (width, height) in sizes
        if min(width, height) < image_size
    ]
    if small:
      _log.warning(
          '%r: %d pairs have A and B smaller than config.data.image_size=%d, so they get '
          'upsampled (blurry): %s',
          self,
          len(small),
          image_size,
          listed(small, _MAX_WARNED),
      )

  def __repr__(self) -> str:
    return f'PairedFolder({self.root!r}, {self.split!r})'
