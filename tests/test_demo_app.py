"""--mode=serve: the browser demo's translation (as predict's), its refusals, and the app itself."""

import base64
import logging
import os
import pathlib
import re
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
import zlib

import numpy as np
from PIL import Image
import pytest

from configs import test as test_config
from pix2pix_jax import demo_app, export, predict, serving
from pix2pix_jax.data import images as image_lib
from pix2pix_jax.data import synthetic
from tests.test_report import DevTools, console_errors, find_chromium

ROOT = pathlib.Path(__file__).resolve().parents[1]


def write_image(path, size, value=0):
  rng = np.random.default_rng(value)
  Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), np.uint8)).save(path)
  return path


def predicted(config, workdir, image_path, output, **kwargs):
  """--mode=predict's output for one file, read back."""
  (written,) = predict.predict(config, str(workdir), str(image_path), str(output), **kwargs)
  return np.asarray(Image.open(written))


def png_header_only(path, width, height):
  """A PNG that declares width×height and holds no pixels: what a huge upload looks like to a
  reader that checks the size before decoding (no 400-megapixel file is made)."""

  def chunk(kind, data):
    return struct.pack('>I', len(data)) + kind + data + struct.pack('>I', zlib.crc32(kind + data))

  header = struct.pack('>IIBBBBB', width, height, 8, 2, 0, 0, 0)
  path.write_bytes(b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', header) + chunk(b'IEND', b''))
  return path


def bad_uploads(folder):
  """The uploads the app must refuse with a message: {file: what the message says}."""
  folder.mkdir(exist_ok=True)
  text = folder / 'notes.txt'
  text.write_text('not an image')
  empty = folder / 'empty.png'
  empty.write_bytes(b'')
  tiny = write_image(folder / 'tiny.png', (1, 1))
  huge = png_header_only(folder / 'huge.png', 20000, 20000)
  return {
      text: 'cannot decode image',
      empty: 'is empty (0 bytes)',
      tiny: 'is 1×1: too small',
      huge: 'config.data.max_image_pixels',
  }


@pytest.fixture(scope='module')
def served(trained_workdir):
  return demo_app.load_checkpoint(test_config.get_config(), str(trained_workdir))


@pytest.mark.parametrize('resolution', ['model', 'native'])
def test_translation_is_predicts(served, trained_workdir, tmp_path, resolution):
  """The app's translation of a file is --mode=predict's for the same seed, bit for bit."""
  path = write_image(tmp_path / 'a.png', (50, 40))
  config = test_config.get_config()
  config.seed = 3
  image, out, info = demo_app.translate_file(
      served, str(path), resolution=resolution, test_mode='paper', seed=3
  )
  assert image.shape == (40, 50, 3) and out.shape == (40, 50, 3) and out.dtype == np.uint8
  expected = predicted(config, trained_workdir, path, tmp_path / 'out', resolution=resolution)
  np.testing.assert_array_equal(out, expected)
  assert f'at the {resolution} resolution in the paper test mode, seed 3' in info


def test_seeds_and_test_modes(served, tmp_path):
  path = str(write_image(tmp_path / 'a.png', (32, 32)))

  def run(test_mode, seed):
    return demo_app.translate_file(served, path, test_mode=test_mode, seed=seed)[1]

  np.testing.assert_array_equal(run('paper', 5), run('paper', 5))  # A seed repeats its sample.
  assert not np.array_equal(run('paper', 5), run('paper', 6))  # Dropout on: seeds differ.
  # Deterministic: running averages, no dropout; the seed plays no part.
  np.testing.assert_array_equal(run('deterministic', 5), run('deterministic', 6))
  assert not np.array_equal(run('deterministic', 5), run('paper', 5))


def test_large_image_goes_through_the_tiled_path(served, trained_workdir, tmp_path, caplog):
  caplog.set_level(logging.INFO)
  path = write_image(tmp_path / 'big.png', (100, 70))
  config = test_config.get_config()
  _, out, _ = demo_app.translate_file(
      served, str(path), resolution='native', test_mode='paper', max_pixels=32 * 32
  )
  assert 'in overlapping 64×64 tiles' in caplog.text  # The least tile: 2 × 32.
  expected = predicted(
      config, trained_workdir, path, tmp_path / 'out', resolution='native', max_pixels=32 * 32
  )
  np.testing.assert_array_equal(out, expected)


def test_bad_inputs_are_refused_and_the_model_still_serves(served, tmp_path):
  image_lib.set_max_image_pixels(None)  # As serve() sets it: Pillow's limit, with our message.
  for path, message in bad_uploads(tmp_path).items():
    with pytest.raises(image_lib.BadImageError, match=re.escape(message)):
      demo_app.translate_file(served, str(path))
  good = str(write_image(tmp_path / 'good.png', (32, 32)))
  for settings, message in [
      ({'seed': -1}, 'seed -1: expected an integer'),
      ({'seed': 1.5}, 'seed 1.5'),
      ({'seed': None}, 'seed None'),
      ({'seed': '3'}, "seed '3'"),
      ({'resolution': 'huge'}, "resolution 'huge'"),
      ({'test_mode': 'train'}, "test mode 'train'"),
  ]:
    with pytest.raises(ValueError, match=re.escape(message)):
      demo_app.translate_file(served, good, **settings)
  assert demo_app.translate_file(served, good)[1].shape == (32, 32, 3)


def test_examples_from_the_eval_split_or_a_folder(tmp_path, caplog):
  config = test_config.get_config()
  written = demo_app.example_inputs(config, None, tmp_path / 'eval')
  source = synthetic.SyntheticMaps('eval', config.data.synthetic_eval_examples, 32, config.seed)
  assert len(written) == demo_app.NUM_EXAMPLES
  for index, path in enumerate(written):  # The input side: B, as configs/test.py is BtoA.
    np.testing.assert_array_equal(np.asarray(Image.open(path)), source[index]['B'])
  folder = tmp_path / 'mine'
  folder.mkdir()
  for index in range(demo_app.NUM_EXAMPLES + 2):
    write_image(folder / f'{index}.png', (40, 40))
  assert [p.name for p in demo_app.example_inputs(config, str(folder), tmp_path)] == [
      f'{index}.png' for index in range(demo_app.NUM_EXAMPLES)
  ]
  with pytest.raises(FileNotFoundError, match='--input .*missing does not exist'):
    demo_app.example_inputs(config, str(tmp_path / 'missing'), tmp_path)
  config.data.name, config.data.folder_dir = 'folder', str(tmp_path / 'no_data')
  assert demo_app.example_inputs(config, None, tmp_path / 'none') == []
  assert 'No examples: the eval split of config.data.name=folder could not be read' in caplog.text


@pytest.fixture(scope='module')
def exported(trained_workdir, tmp_path_factory):
  """An export (format jax) of the trained checkpoint, in the paper's test mode."""
  return export.export_generator(
      test_config.get_config(), str(trained_workdir), str(tmp_path_factory.mktemp('export'))
  )


def test_export_is_served_at_the_model_size_in_its_test_mode(exported, trained_workdir, tmp_path):
  out = exported
  assert demo_app.is_export(str(out)) and not demo_app.is_export(str(trained_workdir))
  model = demo_app.load_export(str(out))
  assert model.resolutions == ('model',) and model.test_modes == ('paper',)
  assert 'Export' in model.description and 'step 2' in model.description
  path = write_image(tmp_path / 'a.png', (50, 40))
  _, first, _ = demo_app.translate_file(model, str(path), seed=7)
  _, again, _ = demo_app.translate_file(model, str(path), seed=7)
  np.testing.assert_array_equal(first, again)
  # What serving.py itself gives: its first call with seed 7 uses the key (7, 0).
  image = np.asarray(Image.open(path))
  direct = serving.load_generator(str(out), seed=7)(predict.pipeline.resize(image, 32)[None])[0]
  np.testing.assert_array_equal(first, image_lib.resize(direct, 50, 40))
  with pytest.raises(ValueError, match="resolution 'native': this model offers"):
    demo_app.translate_file(model, str(path), resolution='native')


# ----------------------------------------------------------------------------------------------
# The app, end to end: main.py --mode=serve, Gradio's client and headless Chromium


def require_demo_extra():
  try:
    import gradio_client  # pylint: disable=g-import-not-at-top
  except ImportError:
    if os.environ.get('CI') == 'true':
      pytest.fail(f'gradio is not installed; CI installs the demo extra: {demo_app.INSTALL_HINT}')
    pytest.skip(f'gradio is not installed: {demo_app.INSTALL_HINT}')
  return gradio_client


def test_serve_without_gradio_names_the_install_command(monkeypatch, tmp_path):
  monkeypatch.setitem(sys.modules, 'gradio', None)  # `import gradio` raises ImportError.
  with pytest.raises(ImportError, match=re.escape("the `demo` extra: pip install -e '.[demo]'")):
    demo_app.serve(test_config.get_config(), str(tmp_path), block=False)


def free_port():
  with socket.socket() as probe:
    probe.bind(('127.0.0.1', 0))
    return probe.getsockname()[1]


def wait_until_serving(process, url, timeout=180):
  deadline = time.monotonic() + timeout
  while time.monotonic() < deadline:
    assert process.poll() is None, f'--mode=serve exited with {process.returncode}'
    try:
      with urllib.request.urlopen(url, timeout=5) as reply:
        if reply.status == 200:
          return
    except OSError:
      time.sleep(0.5)
  raise TimeoutError(f'{url} did not answer in {timeout} s')


def evaluate(browser, session, expression):
  reply = browser.call(
      'Runtime.evaluate', {'expression': expression, 'returnByValue': True}, session=session
  )
  return reply['result']['result'].get('value')


def wait_in_page(browser, session, expression, timeout=60):
  deadline = time.monotonic() + timeout
  while not evaluate(browser, session, expression):
    assert time.monotonic() < deadline, f'timed out waiting in the page for: {expression}'
    time.sleep(0.2)


def upload_in_page(browser, session, path):
  """Gives `path` to the page's upload box (clearing what it holds) and presses Translate."""
  evaluate(browser, session, 'document.querySelector("#upload button[aria-label=Clear]")?.click()')
  file_input = '#upload input[type=file]'
  wait_in_page(browser, session, f'document.querySelector("{file_input}") !== null')
  browser.call('DOM.getDocument', session=session)
  handle = browser.call(
      'Runtime.evaluate', {'expression': f'document.querySelector("{file_input}")'}, session
  )['result']['result']['objectId']
  browser.call('DOM.setFileInputFiles', {'files': [str(path)], 'objectId': handle}, session=session)
  wait_in_page(browser, session, f'document.body.innerText.includes("{path.name}")')
  evaluate(browser, session, 'document.querySelector("#translate").click()')


def translate_in_chromium(binary, url, bad, image, screenshot):
  """In the page: uploads `bad` and waits for the message, then translates `image`, waits for the
  output and screenshots the page.

  Returns (the page's text with the message, with the output).
  """
  with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as profile:
    browser = DevTools(binary, profile)
    try:
      session = browser.new_page()
      browser.call(
          'Emulation.setDeviceMetricsOverride',
          {'width': 1280, 'height': 1100, 'deviceScaleFactor': 1, 'mobile': False},
          session=session,
      )
      browser.call('Page.navigate', {'url': url}, session=session)
      upload_in_page(browser, session, bad)
      wait_in_page(browser, session, 'document.body.innerText.includes("cannot decode image")')
      message = evaluate(browser, session, 'document.body.innerText')
      upload_in_page(browser, session, image)
      wait_in_page(browser, session, 'document.querySelector("#output img") !== null')
      wait_in_page(browser, session, 'document.querySelector("#info").innerText.includes(" s")')
      info = evaluate(browser, session, 'document.body.innerText')
      # The message stays until closed; the screenshot is of the translation.
      assert 'cannot decode image' in evaluate(browser, session, 'document.body.innerText')
      evaluate(browser, session, 'document.querySelector(".toast-close").click()')
      wait_in_page(browser, session, '!document.body.innerText.includes("cannot decode image")')
      data = browser.call('Page.captureScreenshot', {'format': 'png'}, session=session)
      screenshot.write_bytes(base64.b64decode(data['result']['data']))
    finally:
      browser.close()
  return message, info


def test_app_end_to_end(trained_workdir, tmp_path):
  client_lib = require_demo_extra()
  port = free_port()
  url = f'http://127.0.0.1:{port}/'
  env = dict(os.environ, GRADIO_ANALYTICS_ENABLED='False')
  process = subprocess.Popen(
      [
          sys.executable,
          str(ROOT / 'main.py'),
          f'--config={ROOT / "configs" / "test.py"}',
          f'--workdir={trained_workdir}',
          '--mode=serve',
          f'--port={port}',
          '--config.seed=3',
      ],
      cwd=tmp_path,
      env=env,
      stdout=subprocess.PIPE,
      stderr=subprocess.STDOUT,
      text=True,
  )
  try:
    wait_until_serving(process, url)
    client = client_lib.Client(url, verbose=False)
    # A map, the input of configs/test.py (BtoA), cut to 60×48: not the model's size.
    aerial = synthetic.SyntheticMaps('eval', 1, 64)[0]['B'][:48, :60]
    path = tmp_path / 'upload.png'
    Image.fromarray(aerial).save(path)
    shown_input, shown_output, download, info = client.predict(
        client_lib.handle_file(str(path)), 'model', 'paper', 3, api_name='/translate'
    )
    config = test_config.get_config()
    config.seed = 3
    expected = predicted(config, trained_workdir, path, tmp_path / 'out')
    np.testing.assert_array_equal(np.asarray(Image.open(download)), expected)
    np.testing.assert_array_equal(np.asarray(Image.open(shown_output)), expected)
    np.testing.assert_array_equal(np.asarray(Image.open(shown_input)), np.asarray(Image.open(path)))
    assert 'seed 3' in info
    for bad, message in bad_uploads(tmp_path / 'bad').items():
      with pytest.raises(client_lib.exceptions.AppError, match=re.escape(message)):
        client.predict(client_lib.handle_file(str(bad)), 'model', 'paper', 3, api_name='/translate')
    # Still serving, in the page too: a browser uploads, translates and takes the screenshot.
    binary = find_chromium()
    # The page renders offline: nothing it loads fails (fonts, scripts) and nothing it runs throws.
    assert console_errors(binary, url) == []
    screenshot = tmp_path / 'demo.png'
    message, info = translate_in_chromium(
        binary, url, tmp_path / 'bad' / 'notes.txt', path, screenshot
    )
    assert 'cannot decode image notes.txt' in message  # The upload's name, not the server's path.
    assert 'upload.png: 60×48' in info and 'eval_3.png' in info  # The eval split's examples.
    if os.environ.get('DEMO_SCREENSHOT'):  # To refresh the README's: DEMO_SCREENSHOT=docs/demo.png
      shutil.copyfile(screenshot, os.environ['DEMO_SCREENSHOT'])
    pixels = np.asarray(Image.open(screenshot).convert('RGB'))
    assert pixels.shape == (1100, 1280, 3) and pixels.std() > 20, 'blank screenshot'
  finally:
    process.terminate()
    try:
      log, _ = process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
      process.kill()
      log, _ = process.communicate()
  assert 'Serving' in log and 'Refused' in log, log[-3000:]


def test_app_serves_an_export_with_examples_from_a_folder(exported, tmp_path):
  client_lib = require_demo_extra()
  examples = tmp_path / 'examples'
  examples.mkdir()
  path = write_image(examples / 'a.png', (50, 40))
  config = test_config.get_config()
  with pytest.raises(ValueError, match='is an export, which holds one step'):
    demo_app.serve(config, str(exported), step=2, block=False)
  app = demo_app.serve(
      config, str(exported), examples_dir=str(examples), port=free_port(), block=False
  )
  try:
    client = client_lib.Client(app.local_url, verbose=False)
    _, _, download, info = client.predict(
        client_lib.handle_file(str(path)), 'model', 'paper', 7, api_name='/translate'
    )
    expected = demo_app.translate_file(demo_app.load_export(str(exported)), str(path), seed=7)[1]
    np.testing.assert_array_equal(np.asarray(Image.open(download)), expected)
    assert 'a.png: 50×40' in info
    with pytest.raises(client_lib.exceptions.AppError, match=re.escape("'native'") + '.* choices'):
      client.predict(client_lib.handle_file(str(path)), 'native', 'paper', 7, api_name='/translate')
  finally:
    app.close()
