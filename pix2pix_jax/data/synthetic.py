"""Procedural paired stand-in for the pix2pix "maps" dataset.

Each example is a random city layout (street grid, building lots, parks, a
river or lake) drawn twice: once as a flat Google-Maps-style tile (``map``)
and once as an aerial photo would show it (``aerial``: darker materials,
textures, building shadows, lighting variation and pixel noise).  The map
fixes the material class of every aerial pixel, so map <-> aerial is a
learnable translation, which is what a quick CPU pix2pix demo needs.

Everything is pure numpy.  Rasterisation uses only slicing, comparisons and
IEEE-exact arithmetic (no BLAS, no transcendental ufuncs), so a given
(seed, index, size) yields byte-identical arrays on any machine running the
same numpy version.  The layout is defined in relative coordinates and drawn
from its own random stream, so one index looks alike at every size.
"""

from __future__ import annotations

import functools
import math
import operator

import numpy as np

# Map classes.  BUILDING must stay last: building k is drawn as material
# BUILDING + k, so ``np.minimum(material, BUILDING)`` recovers the class.
LAND, WATER, PARK, ROAD_EDGE, ROAD, HIGHWAY, BUILDING = range(7)
NUM_CLASSES = 7
CLASS_NAMES = ("land", "water", "park", "road_edge", "road", "highway", "building")

# Flat map colours, one row per class (Google-Maps-like).
MAP_PALETTE = np.array(
    [
        (236, 232, 226),  # land
        (170, 210, 240),  # water
        (200, 230, 190),  # park
        (190, 188, 186),  # road outline
        (255, 255, 255),  # minor road
        (252, 222, 140),  # major road
        (214, 210, 205),  # building
    ],
    dtype=np.uint8,
)

# Aerial base colours for the non-building classes (rows 0..5 of the LUT).
_AERIAL_BASE = np.array(
    [
        (122, 116, 100),  # bare ground / lots: dusty brown-grey
        (34, 60, 72),  # water: dark blue-green
        (88, 106, 60),  # grass between park trees
        (148, 145, 138),  # kerb / sidewalk
        (76, 76, 79),  # asphalt
        (88, 87, 86),  # wider, more worn asphalt
    ],
    dtype=np.float32,
)
_TREE_COLOR = np.array([(44, 64, 36)], dtype=np.float32)
# Roof palette: greys, terracotta, tar, pale concrete.
_ROOF_COLORS = np.array(
    [
        (150, 146, 140),
        (118, 116, 114),
        (160, 96, 78),
        (70, 70, 74),
        (182, 178, 168),
        (128, 110, 96),
    ],
    dtype=np.float32,
)

# Per-material luma texture amplitude (land, water, grass, edge, road, hwy).
_TEX_AMP = np.array([26, 6, 30, 10, 8, 10], dtype=np.float32)
_ROOF_TEX_AMP = 12.0
_TREE_TEX_AMP = 46.0

_SPLIT_IDS = {"train": 0, "eval": 1, "val": 1, "validation": 1, "test": 2}
_SPLIT_SLOTS = 8  # per-split seed = seed * _SPLIT_SLOTS + split id

_MINOR_HALF = 0.016  # half road widths, relative to the tile side
_MAJOR_HALF = 0.028
_EDGE = 0.006  # outline thickness, relative
_LOT_MARGIN = 0.012  # gap between a road outline and the buildings


# --------------------------------------------------------------------------
# Small geometry helpers (relative coordinates -> pixels).
# --------------------------------------------------------------------------


def _px(v: float, size: int) -> int:
  """Rounds a relative coordinate to a pixel boundary, clamped to the tile."""
  return min(max(math.floor(v * size + 0.5), 0), size)


def _span(lo: float, hi: float, size: int) -> slice:
  """Pixel slice for a relative interval, at least one pixel wide if on-tile."""
  a, b = _px(lo, size), _px(hi, size)
  if b <= a and lo < 1.0 and hi > 0.0:
    # Thin features must not vanish at small sizes.
    a = min(a, size - 1)
    b = a + 1
  return slice(a, b)


def _band(center: float, half: float, size: int) -> slice:
  """Pixel slice for a band of relative half width around ``center``."""
  return _span(center - half, center + half, size)


@functools.lru_cache(maxsize=32)
def _centers(size: int) -> np.ndarray:
  """Relative pixel-centre coordinates, shape (size,), float32."""
  c = (np.arange(size, dtype=np.float32) + np.float32(0.5)) / np.float32(size)
  c.setflags(write=False)
  return c


@functools.lru_cache(maxsize=64)
def _lerp_coords(cells: int, size: int) -> tuple[np.ndarray, np.ndarray]:
  """Grid index and smoothstep weight for upsampling ``cells`` to ``size``."""
  u = _centers(size) * np.float32(cells)
  i0 = np.minimum(u.astype(np.int64), cells - 1)
  f = u - i0.astype(np.float32)
  f = f * f * (np.float32(3) - np.float32(2) * f)  # smoothstep: no grid seams
  i0.setflags(write=False)
  f.setflags(write=False)
  return i0, f


def _value_noise(rng: np.random.Generator, cells: int, size: int) -> np.ndarray:
  """Smooth noise in [0, 1], ``cells`` features across the tile.

  Separable smoothstep interpolation of a random lattice, written with
  elementwise ops only so the result is bit-exact across CPUs.
  """
  grid = rng.random((cells + 1, cells + 1), dtype=np.float32)
  i0, f = _lerp_coords(cells, size)
  g = 1 - f
  rows = grid[i0] * g[:, None] + grid[i0 + 1] * f[:, None]
  # np.take is much faster than fancy indexing for this full-size gather.
  out = np.take(rows, i0, axis=1)
  out *= g
  out += np.take(rows, i0 + 1, axis=1) * f
  return out


def _smooth_curve(rng: np.random.Generator, t: np.ndarray, knots: int) -> np.ndarray:
  """Smooth 1-D random curve in [-1, 1] sampled at relative positions ``t``."""
  vals = rng.uniform(-1.0, 1.0, knots + 1).astype(np.float32)
  u = t * np.float32(knots)
  i0 = np.minimum(u.astype(np.int64), knots - 1)
  f = u - i0.astype(np.float32)
  f = f * f * (np.float32(3) - np.float32(2) * f)
  return vals[i0] * (1 - f) + vals[i0 + 1] * f


# --------------------------------------------------------------------------
# Layout: draws material ids into ``mat`` (int32) plus roof shading.
# --------------------------------------------------------------------------


class _Canvas:
  """Material image under construction plus per-building roof attributes."""

  def __init__(self, size: int):
    self.size = size
    self.mat = np.full((size, size), LAND, dtype=np.int32)
    self.shade = np.ones((size, size), dtype=np.float32)  # roof halves
    self.roof_kind: list[int] = []  # row of _ROOF_COLORS
    self.roof_bright: list[float] = []  # per-building brightness factor

  def add_building(
      self, y0: int, y1: int, x0: int, x1: int, kind: int, bright: float, gable: int
  ) -> None:
    """Draws one building; ``gable`` 0 flat, 1 split rows, 2 split cols."""
    self.mat[y0:y1, x0:x1] = BUILDING + len(self.roof_kind)
    self.roof_kind.append(kind)
    self.roof_bright.append(bright)
    if gable == 1 and y1 - y0 >= 2:
      self.shade[(y0 + y1) // 2 : y1, x0:x1] = 0.8  # slope facing away
    elif gable == 2 and x1 - x0 >= 2:
      self.shade[y0:y1, (x0 + x1) // 2 : x1] = 0.8

  def roof_colors(self) -> np.ndarray:
    """Aerial roof colour per building, float32 (num_buildings, 3)."""
    bright = np.asarray(self.roof_bright, np.float32)[:, None]
    return _ROOF_COLORS[np.asarray(self.roof_kind, np.int64)] * bright


def _pixel_bounds(lo: np.ndarray, hi: np.ndarray, size: int) -> tuple:
  """Vectorised ``_span``: pixel [a, b) per relative interval, and validity."""
  a = np.clip(np.floor(lo * size + 0.5), 0, size).astype(np.int64)
  b = np.clip(np.floor(hi * size + 0.5), 0, size).astype(np.int64)
  thin = b <= a
  a = np.where(thin, np.minimum(a, size - 1), a)
  b = np.where(thin, a + 1, b)  # thin features must not vanish when small
  return a, b, (lo < 1.0) & (hi > 0.0)


def _axis_roads(rng: np.random.Generator) -> list[tuple[float, float]]:
  """Road centres along one axis as (position, half width) pairs."""
  roads = []
  p = rng.uniform(-0.14, 0.1)
  while True:
    p += rng.uniform(0.19, 0.34)
    if p > 0.95:
      return roads
    half = _MAJOR_HALF if rng.random() < 0.3 else _MINOR_HALF
    roads.append((float(p), half))


def _block_bounds(roads: list[tuple[float, float]]) -> np.ndarray:
  """Relative (lo, hi) extents of the blocks between consecutive roads."""
  edges = [(-0.1, 0.0)] + roads + [(1.1, 0.0)]
  out = []
  for (p0, h0), (p1, h1) in zip(edges[:-1], edges[1:]):
    lo = p0 + h0 + _EDGE + _LOT_MARGIN
    hi = p1 - h1 - _EDGE - _LOT_MARGIN
    if hi - lo > 0.02:
      out.append((lo, hi))
  return np.array(out, dtype=np.float64).reshape(-1, 2)


def _fill_blocks(rng: np.random.Generator, cv: _Canvas, rows, cols) -> None:
  """Makes every block a park (15%), a vacant lot (7%) or a building grid.

  Vectorised over all blocks and buildings at once, because per-building
  Python work would dominate the cost of a small tile.
  """
  ys, xs = _block_bounds(rows), _block_bounds(cols)
  ylo, yhi = np.repeat(ys[:, 0], len(xs)), np.repeat(ys[:, 1], len(xs))
  xlo, xhi = np.tile(xs[:, 0], len(ys)), np.tile(xs[:, 1], len(ys))
  kind, cell_w, cell_h, gap = rng.random((4, len(ylo)))
  for k in np.flatnonzero(kind < 0.15).tolist():
    cv.mat[_span(ylo[k], yhi[k], cv.size), _span(xlo[k], xhi[k], cv.size)] = PARK
  # Building grid per block: nx x ny cells, 0.045-0.11 of the tile wide.
  nx = np.maximum(1, np.rint((xhi - xlo) / (0.045 + 0.065 * cell_w))).astype(np.int64)
  ny = np.maximum(1, np.rint((yhi - ylo) / (0.045 + 0.065 * cell_h))).astype(np.int64)
  count = np.where(kind >= 0.22, nx * ny, 0)
  block = np.repeat(np.arange(len(count)), count)
  local = np.arange(block.size) - np.repeat(np.cumsum(count) - count, count)
  nx, ny, gap = nx[block], ny[block], (0.003 + 0.007 * gap)[block]
  j, i = local // nx, local % nx
  skip, inset, tone, gable = rng.random((4, block.size))
  y0 = ylo[block] + (yhi - ylo)[block] * j / ny + gap + 0.01 * inset
  y1 = ylo[block] + (yhi - ylo)[block] * (j + 1) / ny - gap
  x0 = xlo[block] + (xhi - xlo)[block] * i / nx + gap
  x1 = xlo[block] + (xhi - xlo)[block] * (i + 1) / nx - gap - 0.01 * inset
  ya, yb, yok = _pixel_bounds(y0, y1, cv.size)
  xa, xb, xok = _pixel_bounds(x0, x1, cv.size)
  roof = (tone * len(_ROOF_COLORS)).astype(np.int64)
  bright = 0.9 + 0.2 * inset
  # Gable ridge along the long side; the slope split runs across the short one.
  gable_kind = np.where(gable < 0.45, 0, np.where(y1 - y0 < x1 - x0, 1, 2))
  keep = (skip >= 0.12) & yok & xok
  for args in zip(*(c[keep].tolist() for c in (ya, yb, xa, xb, roof, bright, gable_kind))):
    cv.add_building(*args)


def _draw_grid_roads(cv: _Canvas, rows, cols, major: bool) -> None:
  """Draws outlines then cores of axis-aligned roads of one kind."""
  size = cv.size
  sel_r = [r for r in rows if (r[1] == _MAJOR_HALF) == major]
  sel_c = [c for c in cols if (c[1] == _MAJOR_HALF) == major]
  core = HIGHWAY if major else ROAD
  for value, extra in ((ROAD_EDGE, _EDGE), (core, 0.0)):
    for p, h in sel_r:
      cv.mat[_band(p, h + extra, size), :] = value
    for p, h in sel_c:
      cv.mat[:, _band(p, h + extra, size)] = value


def _diagonal_road(rng: np.random.Generator, size: int) -> np.ndarray:
  """Distance field (relative units) of a random diagonal avenue."""
  a, b = rng.uniform(0.35, 1.0, 2)
  b = b if rng.random() < 0.5 else -b
  norm = math.sqrt(a * a + b * b)  # sqrt is correctly rounded everywhere
  a, b = np.float32(a / norm), np.float32(b / norm)
  cx, cy = rng.uniform(0.3, 0.7, 2)
  c = np.float32(-(a * cx + b * cy))
  t = _centers(size)
  return np.abs((a * t)[None, :] + (b * t + c)[:, None])


def _px_half(half: float, size: int) -> np.float32:
  """Relative half width, at least half a pixel so lines never vanish."""
  return np.float32(max(half, 0.5 / size))


def _water_mask(rng: np.random.Generator, size: int) -> np.ndarray | None:
  """Boolean mask of a meandering river, a lake, or None."""
  kind = rng.random()
  t = _centers(size)
  if kind < 0.42:
    base, slope = rng.uniform(0.25, 0.75), rng.uniform(-0.3, 0.3)
    half = rng.uniform(0.04, 0.085)
    vertical = rng.random() < 0.5
    center = (
        np.float32(base)
        + np.float32(slope) * (t - np.float32(0.5))
        + np.float32(0.1) * _smooth_curve(rng, t, 3)
    )
    d = np.abs(t[:, None] - center[None, :])
    mask = d < _px_half(half, size)
    return mask.T if vertical else mask
  if kind < 0.68:
    mask = np.zeros((size, size), dtype=bool)
    cx, cy = rng.uniform(0.2, 0.8, 2)
    for _ in range(3):  # union of ellipses reads as an irregular lake
      ex, ey = cx + rng.uniform(-0.1, 0.1), cy + rng.uniform(-0.1, 0.1)
      rx, ry = rng.uniform(0.07, 0.2, 2)
      dx = ((t - np.float32(ex)) / np.float32(rx)) ** 2
      dy = ((t - np.float32(ey)) / np.float32(ry)) ** 2
      mask |= (dy[:, None] + dx[None, :]) < 1
    return mask
  return None


def _layout(rng: np.random.Generator, size: int) -> _Canvas:
  """Draws a full random city layout.

  The random draws never depend on ``size``, so one seed gives the same
  city (up to pixel rounding) at every resolution.
  """
  cv = _Canvas(size)
  rows, cols = _axis_roads(rng), _axis_roads(rng)
  _fill_blocks(rng, cv, rows, cols)
  diag = _diagonal_road(rng, size) if rng.random() < 0.3 else None
  water = _water_mask(rng, size)
  if diag is not None:
    # Clear the lots the avenue cuts through so buildings keep a margin.
    cv.mat[diag < _px_half(_MAJOR_HALF + _EDGE + _LOT_MARGIN, size)] = LAND
  _draw_grid_roads(cv, rows, cols, major=False)
  if water is not None:
    cv.mat[water] = WATER  # minor streets end at the shore ...
  if diag is not None:
    cv.mat[diag < _px_half(_MAJOR_HALF + _EDGE, size)] = ROAD_EDGE
  _draw_grid_roads(cv, rows, cols, major=True)  # ... major ones bridge it
  if diag is not None:
    cv.mat[diag < _px_half(_MAJOR_HALF, size)] = HIGHWAY
  return cv


# --------------------------------------------------------------------------
# Renderers.
# --------------------------------------------------------------------------


def _shifted(mask: np.ndarray, s: int) -> np.ndarray:
  """``mask`` moved ``s`` pixels down and right (sun at the top-left)."""
  out = np.zeros_like(mask)
  if s < mask.shape[0]:
    out[s:, s:] = mask[: mask.shape[0] - s, : mask.shape[1] - s]
  return out


def _render_aerial(rng: np.random.Generator, cv: _Canvas, labels: np.ndarray) -> np.ndarray:
  """Renders the aerial photo for a drawn layout.

  Colour = material colour x (roof shading x shadows x low-frequency
  light) + material texture + pixel noise; all but the noise and the
  lighting field follow from the map classes and the layout.  Multiplies
  shadows into ``cv.shade`` in place (the canvas is single-use).
  """
  size = cv.size
  light = _value_noise(rng, 3, size)
  tex = _value_noise(rng, 24, size)
  tint = rng.uniform(0.93, 1.07, 3).astype(np.float32)
  noise = rng.random((size, size), dtype=np.float32)

  # Park pixels become tree crowns where the texture field peaks.
  tree_idx = BUILDING + len(cv.roof_kind)
  trees = (labels == PARK) & (tex > np.float32(0.5))
  mat = np.where(trees, tree_idx, cv.mat)

  roofs = cv.roof_colors()
  lut = np.concatenate([_AERIAL_BASE, roofs, _TREE_COLOR]) * tint
  amp = np.concatenate(
      [_TEX_AMP, np.full(len(roofs), _ROOF_TEX_AMP, np.float32), np.float32([_TREE_TEX_AMP])]
  )

  # Shadows (sun at the top-left): buildings cast long ones, trees short.
  shade = cv.shade
  buildings = labels == BUILDING
  shade[_shifted(buildings, max(1, size // 64)) & ~buildings] *= np.float32(0.55)
  shade[_shifted(trees, max(1, size // 128)) & ~trees] *= np.float32(0.7)
  shade *= np.float32(0.36) * light + np.float32(0.82)

  offset = np.take(amp, mat)
  offset *= tex - np.float32(0.5)
  offset += np.float32(24) * noise - np.float32(12)
  water = labels == WATER
  if water.any():
    # Ripples: a warped parabolic wave (no sin, so bit-exact everywhere).
    w = _centers(size)[:, None] * np.float32(min(size / 3.0, 60.0)) + (
        np.float32(3) * light + np.float32(1.5) * tex
    )
    w -= np.floor(w)
    offset[water] += (np.float32(40) * w * (1 - w) - np.float32(5))[water]

  # Planar per-channel work: np.take on a 1-D LUT and (H, W) arithmetic
  # are several times faster than gathers/broadcasts over a length-3 axis.
  out = np.empty((size, size, 3), dtype=np.uint8)
  for c in range(3):
    plane = np.take(np.ascontiguousarray(lut[:, c]), mat)
    plane *= shade
    plane += offset
    np.clip(plane, 0, 255, out=plane)
    plane += np.float32(0.5)
    out[..., c] = plane  # truncating cast == round half up
  return out


def _check_int(name: str, value, minimum: int) -> int:
  """Returns ``value`` as an int, raising ValueError below ``minimum``."""
  try:
    value = operator.index(value)
  except TypeError:
    raise TypeError(f"{name} must be an integer, got {value!r}") from None
  if value < minimum:
    raise ValueError(f"{name} must be >= {minimum}, got {value}")
  return value


def render_pair(seed: int, index: int, size: int) -> tuple[np.ndarray, np.ndarray]:
  """Renders one synthetic (aerial, map) pair.

  Args:
    seed: non-negative base seed.
    index: non-negative example index; pairs with distinct indices differ.
    size: side length in pixels (>= 8); the layout is resolution independent.

  Returns:
    (aerial, map): uint8 arrays of shape (size, size, 3).  Identical
    arguments always give byte-identical arrays.
  """
  seed = _check_int("seed", seed, 0)
  index = _check_int("index", index, 0)
  size = _check_int("size", size, 8)
  # Separate streams: the layout must not depend on how much pixel noise
  # a given size consumes.
  layout_rng = np.random.default_rng(np.random.SeedSequence([seed, index, 0]))
  texture_rng = np.random.default_rng(np.random.SeedSequence([seed, index, 1]))
  cv = _layout(layout_rng, size)
  labels = np.minimum(cv.mat, BUILDING)
  map_img = np.take(MAP_PALETTE, labels, axis=0)
  aerial = _render_aerial(texture_rng, cv, labels)
  return aerial, map_img


def map_classes(map_img: np.ndarray) -> np.ndarray:
  """Decodes a rendered map back to class ids.

  Args:
    map_img: uint8 (H, W, 3) map from ``render_pair``.

  Returns:
    int array (H, W) of class ids (see ``CLASS_NAMES``); -1 where the
    colour is not in ``MAP_PALETTE``.
  """
  key = map_img.astype(np.int32) @ np.array([65536, 256, 1], np.int32)
  pal = MAP_PALETTE.astype(np.int32) @ np.array([65536, 256, 1], np.int32)
  out = np.full(key.shape, -1, dtype=np.int32)
  for cls, k in enumerate(pal):
    out[key == k] = cls
  return out


def split_seed(seed: int, split: str) -> int:
  """Seed for one split; 'eval', 'val' and 'validation' are aliases.

  Args:
    seed: non-negative base seed.
    split: one of 'train', 'eval', 'val', 'validation', 'test'.

  Returns:
    A stable non-negative int, distinct for every (seed, split) pair.
  """
  if split not in _SPLIT_IDS:
    raise ValueError(f"unknown split {split!r}; expected one of {sorted(_SPLIT_IDS)}")
  return _check_int("seed", seed, 0) * _SPLIT_SLOTS + _SPLIT_IDS[split]


class SyntheticMaps:
  """Random-access paired source: len() and [i] like a TFDS/grain data source.

  Items are dicts {'A': aerial uint8 (size,size,3), 'B': map uint8 (size,size,3),
  'file_name': f'synthetic/{split}/{index}.png'}  — A = aerial as in the real
  maps data, whose left half is the aerial photo.
  """

  def __init__(self, split: str, num_examples: int, size: int, seed: int = 0):
    """Creates the source.

    Args:
      split: 'train', 'eval'/'val'/'validation' (aliases) or 'test'.
      num_examples: number of items, >= 1.
      size: image side in pixels, >= 8.
      seed: non-negative base seed; each split derives its own from it.
    """
    self.seed_for_split = split_seed(seed, split)
    self.split = split
    self.num_examples = _check_int("num_examples", num_examples, 1)
    self.size = _check_int("size", size, 8)
    self.seed = seed

  def __len__(self) -> int:
    return self.num_examples

  def __getitem__(self, index) -> dict:
    """Renders item ``index`` (python or numpy int; negatives wrap).

    Returns:
      {'A': aerial, 'B': map, 'file_name': str}.
    """
    i = operator.index(index)
    if i < 0:
      i += self.num_examples
    if not 0 <= i < self.num_examples:
      raise IndexError(f"index {index} out of range for {self.num_examples} examples")
    aerial, map_img = render_pair(self.seed_for_split, i, self.size)
    return {"A": aerial, "B": map_img, "file_name": f"synthetic/{self.split}/{i}.png"}

  def __repr__(self) -> str:
    return (
        f"SyntheticMaps(split={self.split!r}, num_examples={self.num_examples}, "
        f"size={self.size}, seed={self.seed})"
    )
