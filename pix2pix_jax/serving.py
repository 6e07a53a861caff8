"""Loads a generator exported by `--mode=export`: needs jax and numpy only, not this project's
model code (no Flax, no configs).

  from pix2pix_jax.serving import load_generator
  translate = load_generator('/tmp/run/export')
  outputs = translate(images)  # uint8 (N, S, S, 3) -> uint8 (N, S, S, 3); S = signature['image_size']

This file can be copied next to an export and used on its own.
"""

import json
import pathlib

import jax
from jax import export
import numpy as np

# What `--mode=export` writes (config.export.format): 'jax' (StableHLO, loaded here), 'onnx', or
# 'pytorch' (the PyTorch reference's latest_net_G.pth / latest_net_D.pth, pix2pix_jax/torch_weights.py).
FORMATS = ('jax', 'onnx', 'pytorch')


def load_generator(export_dir: str, seed: int = 0):
  """Returns translate(images uint8 (N, S, S, C_in)) -> uint8 (N, S, S, C_out) and its signature.

  Args:
    export_dir: the folder `--mode=export` wrote (generator.jaxexport, weights.npz,
      signature.json).
    seed: dropout seed, used when the export is in the paper's test mode (dropout on).

  Returns:
    translate(images, call_seed=None), with a `signature` attribute (dict: image_size,
    input_channels, output_channels, direction, step, ...; exports from before input_channels have
    only `channels`, both ways).
  """
  path = pathlib.Path(export_dir)
  signature = json.loads((path / 'signature.json').read_text())
  exported = export.deserialize(bytearray((path / 'generator.jaxexport').read_bytes()))
  with np.load(path / 'weights.npz') as archive:
    weights = [archive[f'w{i}'] for i in range(len(archive.files))]
  weights = jax.device_put(weights)
  counter = iter(range(2**31))

  def translate(images: np.ndarray, call_seed: int | None = None) -> np.ndarray:
    """`call_seed`: this call's dropout key is (call_seed, 0), so a seed repeats its sample (the
    browser demo's seed field); default: (seed, n) at the n-th call, a new sample each call."""
    images = np.asarray(images)
    size, channels = signature['image_size'], signature.get('input_channels', signature['channels'])
    if images.ndim != 4 or images.shape[1:] != (size, size, channels) or images.dtype != np.uint8:
      raise ValueError(
          f'expected uint8 images of shape (N, {size}, {size}, {channels}), got '
          f'{images.dtype} {images.shape}'
      )
    key = np.array([seed, next(counter)] if call_seed is None else [call_seed, 0], np.uint32)
    return np.asarray(exported.call(weights, images, key))

  translate.signature = signature
  return translate
