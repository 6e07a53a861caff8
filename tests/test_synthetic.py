"""Tests for the procedural paired maps dataset (pix2pix_jax.data.synthetic)."""

import hashlib

import numpy as np
import pytest

from pix2pix_jax.data import synthetic as syn
from pix2pix_jax.data.synthetic import SyntheticMaps, render_pair

SIZE = 64


def _luma(rgb: np.ndarray) -> np.ndarray:
  return rgb.astype(np.float64) @ np.array([0.299, 0.587, 0.114])


@pytest.fixture(scope="module")
def batch():
  """16 pairs at 64 px with their decoded map classes, pixels flattened."""
  pairs = [render_pair(0, i, SIZE) for i in range(16)]
  aerial = np.stack([a for a, _ in pairs])
  maps = np.stack([m for _, m in pairs])
  classes = np.stack([syn.map_classes(m) for m in maps])
  return aerial, maps, classes


@pytest.mark.parametrize("size", [8, 33, 64, 128])
def test_shapes_and_dtypes(size):
  aerial, map_img = render_pair(3, 7, size)
  for img in (aerial, map_img):
    assert img.shape == (size, size, 3)
    assert img.dtype == np.uint8


def test_deterministic_and_index_dependent():
  a1, m1 = render_pair(1, 2, 48)
  a2, m2 = render_pair(np.int64(1), np.int32(2), 48)
  assert a1.tobytes() == a2.tobytes() and m1.tobytes() == m2.tobytes()
  a3, m3 = render_pair(1, 3, 48)
  assert not np.array_equal(a1, a3) and not np.array_equal(m1, m3)
  a4, _ = render_pair(2, 2, 48)
  assert not np.array_equal(a1, a4)


def test_golden_digest():
  # Guards the cross-machine promise: only IEEE-exact numpy ops and the
  # PCG64 stream are used, so this digest must hold on every platform.
  aerial, map_img = render_pair(0, 0, 32)
  digest = hashlib.sha256(aerial.tobytes() + map_img.tobytes()).hexdigest()
  assert digest == "b0bfc9b24f04607ad6c243369a25c1005c2f3b0db0b5bc252cf4cc55064673dd"


def test_layout_is_resolution_independent():
  # Same index at two sizes: the map classes agree on most pixels
  # (disagreement only along edges, from pixel rounding).
  for index in range(4):
    small = syn.map_classes(render_pair(0, index, 32)[1])
    large = syn.map_classes(render_pair(0, index, 128)[1])
    assert (large[1::4, 1::4] == small).mean() > 0.7


def test_map_is_flat_palette_aerial_is_textured(batch):
  aerial, maps, classes = batch
  # Every map pixel is exactly one palette colour: crisp, no anti-aliasing.
  assert (classes >= 0).all()
  for a, m in zip(aerial, maps):
    assert len(np.unique(m.reshape(-1, 3), axis=0)) <= len(syn.MAP_PALETTE)
    assert len(np.unique(a.reshape(-1, 3), axis=0)) > 300
  # Within one class the map is constant while the aerial varies.
  same = classes[:, :, 1:] == classes[:, :, :-1]
  map_diff = np.abs(np.diff(maps.astype(int), axis=2)).sum(-1)[same]
  aerial_diff = np.abs(np.diff(aerial.astype(int), axis=2)).sum(-1)[same]
  assert map_diff.max() == 0
  assert aerial_diff.mean() > 10


def test_aerial_colours_follow_map_classes(batch):
  aerial, _, classes = batch
  mean = {c: aerial[classes == c].astype(float).mean(0) for c in range(syn.NUM_CLASSES)}
  r, g, b = mean[syn.WATER]
  assert b > r + 15 and g > r  # dark blue-green water
  r, g, b = mean[syn.PARK]
  assert g > r + 10 and g > b + 10  # trees and grass
  land = _luma(mean[syn.LAND])
  assert _luma(mean[syn.ROAD]) < land - 15  # asphalt darker than ground
  assert _luma(mean[syn.HIGHWAY]) < land - 5
  assert _luma(mean[syn.ROAD_EDGE]) > _luma(mean[syn.ROAD]) + 30  # kerbs
  # The aerial is darker overall than the bright flat map.
  assert aerial.mean() < 0.6 * batch[1].mean()


def test_aerial_is_mostly_predictable_from_classes(batch):
  # A per-class mean colour alone explains a large share of the variance;
  # a conv net also sees shadows/neighbourhoods, so it can do better still.
  aerial, _, classes = batch
  pix = aerial.reshape(-1, 3).astype(float)
  cls = classes.ravel()
  pred = np.zeros_like(pix)
  for c in np.unique(cls):
    pred[cls == c] = pix[cls == c].mean(0)
  r2 = 1 - ((pix - pred) ** 2).sum() / ((pix - pix.mean(0)) ** 2).sum()
  assert r2 > 0.35


def test_buildings_cast_shadows_down_right(batch):
  aerial, _, classes = batch
  s = max(1, SIZE // 64)
  build = classes == syn.BUILDING
  land = classes == syn.LAND
  lit_from = np.zeros_like(build)
  lit_from[:, s:, s:] = build[:, :-s, :-s]  # building up-left of the pixel
  luma = _luma(aerial)
  shadowed = luma[land & lit_from].mean()
  open_land = luma[land & ~lit_from].mean()
  assert shadowed < 0.8 * open_land


def test_source_items_and_splits():
  train = SyntheticMaps("train", num_examples=5, size=32, seed=0)
  assert len(train) == 5
  item = train[np.int64(2)]
  assert set(item) == {"A", "B", "file_name"}
  assert item["file_name"] == "synthetic/train/2.png"
  assert item["A"].shape == item["B"].shape == (32, 32, 3)
  aerial, map_img = render_pair(syn.split_seed(0, "train"), 2, 32)
  assert np.array_equal(item["A"], aerial) and np.array_equal(item["B"], map_img)
  # Negative indices wrap like a list.
  assert np.array_equal(train[-1]["B"], train[4]["B"])
  assert train[-1]["file_name"] == "synthetic/train/4.png"

  evals = SyntheticMaps("eval", num_examples=5, size=32, seed=0)
  assert not np.array_equal(evals[0]["B"], train[0]["B"])
  assert np.array_equal(SyntheticMaps("val", 5, 32)[0]["B"], evals[0]["B"])
  assert not np.array_equal(SyntheticMaps("test", 5, 32)[0]["B"], evals[0]["B"])
  assert not np.array_equal(SyntheticMaps("train", 5, 32, seed=1)[0]["B"], train[0]["B"])
  assert len({syn.split_seed(s, sp) for s in range(4) for sp in ("train", "eval", "test")}) == 12


def test_index_errors():
  ds = SyntheticMaps("train", num_examples=3, size=16)
  for bad in (3, 100, -4, np.int64(3)):
    with pytest.raises(IndexError):
      ds[bad]
  with pytest.raises(TypeError):
    ds[1.0]
  assert [item["file_name"] for item in ds] == [f"synthetic/train/{i}.png" for i in range(3)]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(split="train", num_examples=4, size=7), "size"),
        (dict(split="train", num_examples=0, size=16), "num_examples"),
        (dict(split="bogus", num_examples=4, size=16), "split"),
        (dict(split="train", num_examples=4, size=16, seed=-1), "seed"),
    ],
)
def test_constructor_validation(kwargs, match):
  with pytest.raises(ValueError, match=match):
    SyntheticMaps(**kwargs)


def test_render_pair_validation():
  with pytest.raises(ValueError, match="size"):
    render_pair(0, 0, 4)
  with pytest.raises(ValueError, match="index"):
    render_pair(0, -1, 16)
  with pytest.raises(ValueError, match="seed"):
    render_pair(-1, 0, 16)
