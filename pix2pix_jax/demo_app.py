"""`--mode=serve`: a browser demo of the generator (Gradio), for a checkpoint or an export.

  python main.py --config=configs/maps.py --workdir=/tmp/run --mode=serve [--step=N|best]
  python main.py --config=configs/maps.py --workdir=/tmp/run/export --mode=serve  # an export

An upload is read as --mode=predict reads its inputs (`images.load_image`) and translated by
predict's own function (`predict.create_image_translator`) with the key predict gives its first
input (`predict.image_key(seed, 0)`), so with config.seed=SEED the output equals
`--mode=predict --input=FILE` bit for bit. A folder with `signature.json` is an export
(`--mode=export`, format 'jax'): it is loaded with `serving.load_generator`, at the model size and
in the test mode it was exported with. Gradio is the `demo` extra; the app binds to localhost
unless given a host, sends no analytics and makes no share link.
"""

import dataclasses
import json
import logging
import os
import pathlib
import shutil
import tempfile
import time
from typing import Callable

import ml_collections
import numpy as np

from pix2pix_jax import checkpointing, inference, predict, serving
from pix2pix_jax.data import images as image_lib
from pix2pix_jax.data import pipeline

INSTALL_HINT = "pip install -e '.[demo]'"
# The test modes offered, by name: inference.generate's `train_mode`.
TEST_MODES = {'paper': True, 'deterministic': False}
# Uploads with a side under this are refused: a 1×1 or 3-pixel-wide file is a mistake, not a
# picture, and reflect-padding needs at least 2 pixels on a side.
MIN_IMAGE_SIDE = 8
NUM_EXAMPLES = 4  # Examples taken from the eval split or from --input's folder.
IMAGE_HEIGHT = 320  # Of the page's input and output, in CSS pixels; the download is full size.
# Small images (a 256² model's inputs) fill the frames, their pixels shown as they are.
_CSS = (
    '#input img, #output img {width: 100%; height: 100%; object-fit: contain; '
    'image-rendering: pixelated}'
)


@dataclasses.dataclass(frozen=True)
class ServedModel:
  """What the app serves: the translation and what the page says about it."""

  # (image uint8/uint16 (H, W, C_in), resolution, test mode, seed, max_pixels)
  # -> uint8 (H, W, C_out).
  translate: Callable[[np.ndarray, str, str, int, int], np.ndarray]
  input_channels: int
  resolutions: tuple[str, ...]  # Of predict.RESOLUTIONS.
  test_modes: tuple[str, ...]  # Of TEST_MODES; the first is the default.
  description: str  # Markdown: which checkpoint or export, step, direction, test mode.


def _input_output(direction: str) -> str:
  source, target = image_lib.sides(direction)
  return f'{direction} ({source} → {target})'


def load_checkpoint(
    config: ml_collections.ConfigDict, workdir: str, step: int | str | None = None
) -> ServedModel:
  """The generator of `workdir`'s checkpoint `step` (default: the latest; 'best'), both test modes.

  The default test mode is config.eval.train_mode's, as --mode=predict uses.
  """
  generator, network, step, best = inference.restore_trained_generator(config, workdir, step)
  translators = {
      name: predict.create_image_translator(
          generator, network, train_mode=train_mode, image_size=config.data.image_size
      )
      for name, train_mode in TEST_MODES.items()
  }

  def translate(image, resolution, test_mode, seed, max_pixels):
    return translators[test_mode](image, predict.image_key(seed, 0), resolution, max_pixels)

  default = 'paper' if config.eval.train_mode else 'deterministic'
  best_text = f", the best by {best['metric']} ({best['value']:.6g})" if best else ''
  description = (
      f'**Checkpoint** `{pathlib.Path(workdir).resolve()}`, **step {step}**{best_text} '
      f'({config.model.generator} generator, {config.data.image_size}×{config.data.image_size}, '
      f'{checkpointing.generator_weights(config)} weights) · **direction** '
      f'{_input_output(config.data.direction)} · **test mode** as configured: '
      f'{inference.test_mode_description(TEST_MODES[default])}'
  )
  return ServedModel(
      translate,
      pipeline.channels(config.data)[0],
      predict.RESOLUTIONS,
      (default, *(name for name in TEST_MODES if name != default)),
      description,
  )


def load_export(export_dir: str) -> ServedModel:
  """An export of `--mode=export` (format 'jax'), loaded with `serving.load_generator` alone.

  It takes size×size inputs only (its compiled shape): uploads are translated at the model size,
  in the test mode it was exported with; uint16 inputs are rounded to 8 bits, as export does.
  """
  path = pathlib.Path(export_dir)
  signature_file = path / 'signature.json'
  signature = json.loads(signature_file.read_text())
  if signature.get('format', 'jax') != 'jax':
    raise ValueError(
        f"{signature_file}: format {signature['format']!r}; the demo serves 'jax' exports "
        '(serving.py). Serve the checkpoint instead (--workdir=the training workdir).'
    )
  translate_export = serving.load_generator(str(path))
  size = signature['image_size']
  paper = signature['test_mode'] == inference.test_mode_description(True)

  def translate(image, resolution, test_mode, seed, max_pixels):
    del resolution, test_mode, max_pixels  # One of each: checked by translate_file.
    image = image_lib.to_8_bits(image)  # As export's translate takes 16-bit data.
    return predict.translate_at_model_size(
        lambda x: translate_export(x, call_seed=seed), image, size
    )

  mode = 'paper' if paper else 'deterministic'
  description = (
      f'**Export** `{path.resolve()}`, **step {signature["step"]}** (format jax, '
      f'{size}×{size}, {signature.get("weights", "raw")} weights) · **direction** '
      f'{_input_output(signature["direction"])} · **test mode** as exported: '
      f'{signature["test_mode"]}'
  )
  return ServedModel(
      translate,
      signature.get('input_channels', signature['channels']),
      ('model',),
      (mode,),
      description,
  )


def is_export(workdir: str) -> bool:
  return (pathlib.Path(workdir) / 'signature.json').is_file()


def translate_file(
    model: ServedModel,
    path: str,
    *,
    resolution: str = 'model',
    test_mode: str | None = None,
    seed: int = 0,
    max_pixels: int = predict.NATIVE_MAX_PIXELS,
) -> tuple[np.ndarray, np.ndarray, str]:
  """Reads and translates one uploaded file: the app's translation, as a plain function.

  Args:
    model: what is served.
    path: the uploaded file.
    resolution: one of `model.resolutions` ('model' or 'native').
    test_mode: one of `model.test_modes` (default: its first).
    seed: the dropout seed of the paper's test mode, an integer in [0, 2**31).
    max_pixels: 'native': larger (padded) images are translated in tiles (predict's rule).

  Returns:
    (the input as read, the output uint8 (H, W, C_out), a line saying what was done and how long
    it took).

  Raises:
    ValueError (`images.BadImageError` for the file): naming the culprit.
  """
  test_mode = test_mode or model.test_modes[0]
  if resolution not in model.resolutions:
    raise ValueError(f'resolution {resolution!r}: this model offers {model.resolutions}')
  if test_mode not in model.test_modes:
    raise ValueError(f'test mode {test_mode!r}: this model offers {model.test_modes}')
  if not _is_seed(seed):
    raise ValueError(f'seed {seed!r}: expected an integer from 0 to {2**31 - 1}')
  name = pathlib.Path(path).name
  if not os.path.getsize(path):
    raise image_lib.BadImageError(f'{name} is empty (0 bytes): upload an image file', path)
  image = image_lib.load_image(path, model.input_channels, 'the model')
  if min(image.shape[:2]) < MIN_IMAGE_SIDE:
    raise image_lib.BadImageError(
        f'{name} is {image_lib.describe_size(image)}: too small to translate (the demo takes '
        f'images of at least {MIN_IMAGE_SIDE}×{MIN_IMAGE_SIDE} pixels)',
        path,
    )
  start = time.perf_counter()
  out = model.translate(image, resolution, test_mode, int(seed), max_pixels)
  seconds = time.perf_counter() - start
  info = (
      f'{name}: {image_lib.describe_size(image)}, translated at the {resolution} resolution in '
      f'the {test_mode} test mode'
      + (f', seed {int(seed)}' if TEST_MODES[test_mode] else '')
      + f', in {seconds:.2f} s'
  )
  logging.info('%s', info)
  return image, out, info


def _is_seed(value) -> bool:
  """Whether `value` is a whole number in [0, 2**31) (the page's number box gives floats)."""
  try:
    return float(value).is_integer() and 0 <= float(value) < 2**31 and not isinstance(value, str)
  except (TypeError, ValueError):
    return False


def example_inputs(
    config: ml_collections.ConfigDict, folder: str | None, destination: pathlib.Path
) -> list[pathlib.Path]:
  """Up to NUM_EXAMPLES example inputs: the first images of `folder`, or of the eval split.

  The eval split's inputs (the config's input side, at the model size) are written as image files
  to `destination`. An unreadable eval split (data not prepared here) leaves the app without
  examples, with a warning; a bad `folder` is an error.
  """
  if folder:
    return image_lib.list_images(pathlib.Path(folder).expanduser(), '--input')[:NUM_EXAMPLES]
  input_side = image_lib.sides(config.data.direction)[0]
  try:
    source = pipeline.create_source(config.data, 'eval', config.seed)
    examples = [source[index] for index in range(min(NUM_EXAMPLES, len(source)))]
  except Exception as error:  # pylint: disable=broad-except
    logging.warning(
        'No examples: the eval split of config.data.name=%s could not be read (%s: %s); pass '
        '--input=DIR for examples from a folder',
        config.data.name,
        type(error).__name__,
        error,
    )
    return []
  destination.mkdir(parents=True, exist_ok=True)
  return [
      image_lib.save_image(example[input_side], destination / f'eval_{index}')
      for index, example in enumerate(examples)
  ]


def _require_gradio():
  # Nothing leaves the machine: Gradio's own checks read this variable, not only Blocks' option.
  os.environ['GRADIO_ANALYTICS_ENABLED'] = 'False'
  try:
    import gradio  # pylint: disable=g-import-not-at-top
  except ImportError as error:
    raise ImportError(f'--mode=serve needs Gradio, the `demo` extra: {INSTALL_HINT}') from error
  return gradio


def build_app(
    model: ServedModel, examples: list[pathlib.Path], output_root: pathlib.Path, seed: int = 0
):
  """The Gradio page: upload | settings, input | output side by side, download, examples."""
  gr = _require_gradio()

  def respond(path, resolution, test_mode, seed_value):
    if not path:
      raise gr.Error('Upload an image first.')
    try:
      image, out, info = translate_file(
          model, path, resolution=resolution, test_mode=test_mode, seed=seed_value
      )
    except (ValueError, ImportError) as error:  # Bad files, settings, a missing tifffile.
      logging.warning('Refused %s: %s', path, error)
      # The upload's name as the user knows it, not the server's copy of it.
      message = str(error).replace(str(pathlib.Path(path).parent) + os.sep, '')
      raise gr.Error(message, duration=None) from error  # Shown until closed: they can be long.
    folder = pathlib.Path(tempfile.mkdtemp(dir=output_root))
    written = image_lib.save_image(out, folder / f'{pathlib.Path(path).stem}_translated')
    return image_lib.to_display(image), image_lib.to_display(out), str(written), info

  with gr.Blocks(title='pix2pix_jax demo', analytics_enabled=False) as app:
    gr.Markdown(f'## pix2pix_jax: translate an image\n{model.description}')
    with gr.Row():
      upload = gr.File(label='Input image (any size)', type='filepath', elem_id='upload')
      with gr.Column():
        resolution = gr.Radio(
            list(model.resolutions),
            value=model.resolutions[0],
            label='Resolution: model size (resized and back) or the image’s own (tiled if large)',
        )
        test_mode = gr.Radio(
            list(model.test_modes),
            value=model.test_modes[0],
            label='Test mode: paper (dropout on, a sample per seed) or deterministic',
        )
        seed_box = gr.Number(value=seed, precision=0, label='Seed (paper mode)', minimum=0)
        button = gr.Button('Translate', variant='primary', elem_id='translate')
    with gr.Row():
      shown_input = gr.Image(
          label='Input', format='png', interactive=False, height=IMAGE_HEIGHT, elem_id='input'
      )
      shown_output = gr.Image(
          label='Output', format='png', interactive=False, height=IMAGE_HEIGHT, elem_id='output'
      )
    download = gr.File(label='Download the output', elem_id='download')
    info = gr.Markdown(elem_id='info')
    if examples:
      gr.Examples([[str(p)] for p in examples], inputs=[upload], label='Examples')
    button.click(
        respond,
        [upload, resolution, test_mode, seed_box],
        [shown_input, shown_output, download, info],
        api_name='translate',
    )
  return app


def serve(
    config: ml_collections.ConfigDict,
    workdir: str,
    *,
    step: int | str | None = None,
    examples_dir: str | None = None,
    host: str = '127.0.0.1',
    port: int = 7860,
    block: bool = True,
):
  """Serves the demo of `workdir`'s checkpoint (or of the export `workdir` is) until stopped.

  Args:
    config: the run's config (an export's own signature decides its model).
    workdir: the training workdir, or an export folder (it has signature.json).
    step: checkpoint step, 'best', or None for the latest; not for an export.
    examples_dir: a folder of example inputs (default: the first of the eval split).
    host: the address to bind: localhost by default; '0.0.0.0' exposes the app to the network.
    port: the port.
    block: wait until the app is stopped (False: return the running app, for tests).

  Returns:
    The Gradio app (`.close()` stops it).
  """
  gr = _require_gradio()  # Before the restore: a missing extra is the first thing to know.
  image_lib.set_max_image_pixels(config.data.max_image_pixels)
  if is_export(workdir):
    if step is not None:
      raise ValueError(f'--step={step}: {workdir} is an export, which holds one step')
    model = load_export(workdir)
  else:
    model = load_checkpoint(config, workdir, step)
  scratch = pathlib.Path(tempfile.mkdtemp(prefix='pix2pix_demo_'))
  examples = example_inputs(config, examples_dir, scratch / 'examples')
  (scratch / 'outputs').mkdir()
  app = build_app(model, examples, scratch / 'outputs', seed=config.seed)
  # System fonts: the default theme's come from a font service, which the app must not reach.
  theme = gr.themes.Default(
      font=['ui-sans-serif', 'system-ui', 'sans-serif'], font_mono=['ui-monospace', 'monospace']
  )
  logging.getLogger('httpx').setLevel(logging.WARNING)  # Gradio's own requests to itself.
  app.queue(default_concurrency_limit=1)  # One translation at a time: JAX uses every core.
  app.launch(
      server_name=host,
      server_port=port,
      share=False,
      show_error=True,
      ssr_mode=False,
      prevent_thread_lock=True,
      allowed_paths=[str(scratch)] + ([examples_dir] if examples_dir else []),
      theme=theme,
      css=_CSS,
      quiet=True,
  )
  logging.info('Serving %s at http://%s:%d', workdir, host, port)
  if block:
    try:
      app.block_thread()  # Until Ctrl-C, which closes the app.
    finally:
      shutil.rmtree(scratch, ignore_errors=True)  # The examples and outputs written here.
  return app
