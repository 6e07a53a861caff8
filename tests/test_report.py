"""The run report: event files read without TensorFlow, the page's content, and a real browser."""

import fcntl
import json
import math
import os
import re
import select
import shutil
import subprocess
import tempfile
import time

import numpy as np
import pytest
import tensorboardX
from PIL import Image

from pix2pix_jax import report

LOSS_TAGS = ('train_g_total', 'train_g_gan', 'train_g_l1', 'train_d_total', 'train_d_real',
             'train_d_fake', 'train_d_real_output', 'train_d_fake_output')
# The known panel's thirds: colours nothing else on the page uses, looked for in the screenshot.
PANEL_COLORS = ((255, 0, 255), (0, 200, 255), (255, 140, 0))
WEIRD_NAME = 'val/<b>odd</b> & "quoted" \'name\'.jpg'


def value(tag, step, run):
  """A deterministic, tag- and run-dependent value (run 1 is the resumed run)."""
  return (LOSS_TAGS.index(tag) + 1) * (1.0 + 0.5 * math.cos(step / 300)) + 10 * run


def write_events(workdir):
  """Event files as after a resume and an evaluation.

  Training writes steps 0..1000, is resumed from the checkpoint at 500 and writes 600..1500 into
  a second file; the evaluation then logs its metrics at step 1500 into a third.

  Returns:
    {tag: {step: value}} of what the last write of each step logged.
  """
  expected = {}

  def log(writer, tag, step, v):
    writer.add_scalar(tag, v, step)
    expected.setdefault(tag, {})[step] = float(np.float32(v))  # simple_value is a float32.

  for run, steps in ((0, range(0, 1001, 100)), (1, range(600, 1501, 100))):
    # The suffix keeps the names distinct (and in order) when both files start in the same second.
    writer = tensorboardX.SummaryWriter(str(workdir), filename_suffix=f'.{run}')
    for step in steps:
      for tag in LOSS_TAGS:
        log(writer, tag, step, value(tag, step, run))
      log(writer, 'train_learning_rate', step, 2e-4 * (1 - step / 1500))
      log(writer, 'steps_per_second', step, 5.0 + run)
      if step % 500 == 0:
        log(writer, 'eval_l1', step, 0.2 - step / 10000 + run / 100)
        writer.add_image('eval_panel', np.zeros((8, 24, 3), np.uint8), step, dataformats='HWC')
        writer.add_text('note', f'step {step}', step)
    writer.close()
    time.sleep(0.05)  # Distinct wall times of the files' first events.
  writer = tensorboardX.SummaryWriter(str(workdir), filename_suffix='.2')
  log(writer, 'eval_l1', 1500, 0.125)
  log(writer, 'eval_psnr', 1500, 22.5)
  writer.close()
  assert len(report.event_files(workdir)) == 3
  return expected


def save_panel(path, colors, size=32):
  """A [input | generated | target] panel of three solid squares."""
  path.parent.mkdir(parents=True, exist_ok=True)
  Image.fromarray(np.concatenate([np.full((size, size, 3), c, np.uint8) for c in colors],
                                 axis=1)).save(path)


def write_eval(workdir):
  """eval/metrics.json with every metric and three panel groups, and the panels' PNGs."""
  eval_dir = workdir / 'eval'
  rng = np.random.default_rng(0)
  save_panel(eval_dir / 'panels/fixed_0.png', PANEL_COLORS, size=64)
  for name in ('fixed_1', 'best_0', 'worst_0'):
    save_panel(eval_dir / f'panels/{name}.png', rng.integers(0, 256, (3, 3)))
  data = {
      'step': 1500, 'num_images': 1098, 'split': 'val', 'direction': 'BtoA',
      'test_mode': 'paper (dropout on, per-image batch statistics)',
      'metrics': {
          'l1': {'mean': 0.1234, 'min': 0.0512, 'max': 0.2468, 'std': 0.0201},
          'psnr': {'mean': 22.3456, 'min': 15.5, 'max': 30.25, 'std': 2.5},
          'ssim': {'mean': 0.4567, 'min': 0.2, 'max': 0.8, 'std': 0.1},
          'hp_l1': {'mean': 0.0789, 'min': 0.03, 'max': 0.15, 'std': 0.02},
          'lpips': {'mean': 0.3111, 'min': 0.1, 'max': 0.5, 'std': 0.05},
          'fid': 42.1718, 'kid': {'mean': 0.0123, 'std': 0.0011}},
      'panels': {
          'fixed': [{'file': 'panels/fixed_0.png', 'name': 'val/1.jpg', 'l1': 0.1101},
                    {'file': 'panels/fixed_1.png', 'name': WEIRD_NAME, 'l1': 0.1202}],
          'best': [{'file': 'panels/best_0.png', 'name': 'val/7.jpg', 'l1': 0.0512}],
          'worst': [{'file': 'panels/worst_0.png', 'name': 'val/9.jpg', 'l1': 0.2468}]}}
  (eval_dir / 'metrics.json').write_text(json.dumps(data))
  (eval_dir / 'per_image.csv').write_text('file_name,index,l1\nval/1.jpg,0,0.1101\n')
  return data


ABLATION = """Patch size ablation (BtoA, 200 epochs):

| patch | L1 | PSNR | notes |
|:---|---:|---|---|
| 1×1 | 0.145 | 20.1 | PixelGAN <colourful> |
| 70×70 | 0.123 | 22.3 | the paper's **default** |
"""


@pytest.fixture(scope='module')
def run_dir(tmp_path_factory):
  """A workdir as a run and its evaluation leave it, with the report written."""
  workdir = tmp_path_factory.mktemp('run')
  expected = write_events(workdir)
  data = write_eval(workdir)
  path = report.write_report(workdir, extra_sections={'Ablation: patch size': ABLATION})
  return workdir, expected, data, path


def same(a, b):
  return a == b or (math.isnan(a) and math.isnan(b))


# ----------------------------------------------------------------------------------------------
# Event files


def test_read_scalars_later_file_wins(run_dir):
  workdir, expected, _, _ = run_dir
  scalars = report.read_scalars(workdir)
  assert set(scalars) == set(expected)
  for tag, points in scalars.items():
    assert points == sorted(expected[tag].items()), tag
  # The resumed run's values replace the first run's from step 600 on.
  g_total = dict(scalars['train_g_total'])
  assert g_total[500] == pytest.approx(value('train_g_total', 500, 0))
  assert g_total[600] == pytest.approx(value('train_g_total', 600, 1))
  assert scalars['eval_l1'] == [(0, pytest.approx(0.2)), (500, pytest.approx(0.15)),
                                (1000, pytest.approx(0.11)), (1500, 0.125)]


def test_read_scalars_agrees_with_tensorboard(run_dir):
  from tensorboard.backend.event_processing import event_accumulator
  workdir = run_dir[0]
  accumulator = event_accumulator.EventAccumulator(str(workdir), size_guidance={'scalars': 0})
  accumulator.Reload()
  ours = report.read_scalars(workdir)
  assert set(accumulator.Tags()['scalars']) == set(ours)
  for tag in ours:
    # TensorBoard keeps both copies of a re-logged step (tensorboardX writes no SessionLog.START
    # to purge by); the last one read is the resumed run's.
    last = {}
    for event in accumulator.Scalars(tag):
      last[event.step] = event.value
    assert ours[tag] == sorted(last.items()), tag


def test_read_scalars_no_event_files(tmp_path):
  assert report.read_scalars(tmp_path) == {}


def test_read_scalars_torn_and_corrupt_files(tmp_path):
  writer = tensorboardX.SummaryWriter(str(tmp_path))
  for step in range(5):
    writer.add_scalar('loss', float(step), step)
  writer.close()
  (path,) = report.event_files(tmp_path)
  records = list(report.read_records(path))
  assert len(records) == 6  # The file-version event, then one per scalar.
  raw = bytearray(path.read_bytes())
  # Flip a byte of the last record's data: that record is skipped, the others are read.
  last_data_start = len(raw) - 4 - len(records[-1])
  raw[last_data_start + 2] ^= 0xff
  path.write_bytes(bytes(raw))
  assert report.read_scalars(tmp_path) == {'loss': [(0, 0.0), (1, 1.0), (2, 2.0), (3, 3.0)]}
  # A writer killed mid-record leaves a torn tail: everything before it is read.
  path.write_bytes(bytes(raw[:-7]))
  assert report.read_scalars(tmp_path) == {'loss': [(0, 0.0), (1, 1.0), (2, 2.0), (3, 3.0)]}


def test_tensor_scalars(tmp_path):
  """TF2-style scalars (a 0-d float tensor) are read too; other tensors are not."""
  from tensorboardX.proto import summary_pb2, tensor_pb2, tensor_shape_pb2, types_pb2
  metadata = summary_pb2.SummaryMetadata(
      plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name='scalars'))
  values = [
      summary_pb2.Summary.Value(tag='f32', metadata=metadata, tensor=tensor_pb2.TensorProto(
          dtype=types_pb2.DT_FLOAT, float_val=[1.5])),
      summary_pb2.Summary.Value(tag='f64', metadata=metadata, tensor=tensor_pb2.TensorProto(
          dtype=types_pb2.DT_DOUBLE, tensor_content=np.float64(2.5).tobytes())),
      summary_pb2.Summary.Value(tag='vector', metadata=metadata, tensor=tensor_pb2.TensorProto(
          dtype=types_pb2.DT_FLOAT, float_val=[3.5], tensor_shape=tensor_shape_pb2.TensorShapeProto(
              dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=4)]))),
  ]
  writer = tensorboardX.SummaryWriter(str(tmp_path))
  file_writer = writer._get_file_writer()  # pylint: disable=protected-access
  file_writer.add_summary(summary_pb2.Summary(value=values), 3)
  writer.close()
  assert report.read_scalars(tmp_path) == {'f32': [(3, 1.5)], 'f64': [(3, 2.5)]}


def test_non_finite_and_single_point_series(tmp_path):
  writer = tensorboardX.SummaryWriter(str(tmp_path))
  for step, v in enumerate([1.0, float('nan'), 2.0, float('inf'), 3.0]):
    writer.add_scalar('train_g_total', v, step)
  writer.add_scalar('eval_l1', 0.25, 7)  # A single point.
  writer.add_scalar('custom_metric', float('nan'), 3)  # Nothing finite to draw.
  writer.add_scalar('custom_metric', float('-inf'), 4)
  writer.add_scalar('logged_once', float('nan'), 5)
  writer.close()
  scalars = report.read_scalars(tmp_path)
  assert all(same(a, b) for (_, a), b in zip(scalars['train_g_total'],
                                             [1.0, math.nan, 2.0, math.inf, 3.0]))
  page = report.write_report(tmp_path).read_text()
  assert '2 non-finite values skipped' in page
  assert '2 non-finite values skipped)</span></figcaption><p class="muted">no finite values' in page
  assert '<tr><th>logged_once</th><td>5</td><td>nan</td></tr>' in page
  assert 'nan' not in ' '.join(re.findall(r'<path d="([^"]*)"', page)).lower()
  # The single eval point has a marker and a non-degenerate axis.
  assert re.search(r'<circle cx="[\d.]+" cy="[\d.]+" r="2.6" fill="#ff7f0e"/>', page)


def test_chart_axes():
  svg, skipped = report.line_chart_svg(
      [('a', [(0, 0.1), (50000, 0.5)]), ('b', [(0, 100.0), (50000, 3.0)])], allow_log=True)
  assert skipped == 0
  labels = re.findall(r'>([^<>]+)</text>', svg)
  assert {'0', '10k', '50k', 'log scale', 'a', 'b', 'step'} <= set(labels)
  assert {'0.1', '1', '10', '100'} <= set(labels)  # Decades of the log axis.
  svg, _ = report.line_chart_svg([('lr', [(0, 2e-4), (100, 1e-4), (200, 0.0)])])
  labels = re.findall(r'>([^<>]+)</text>', svg)
  assert {'0.0', '1.0', '2.0', '×10⁻⁴'} <= set(labels)
  assert report.line_chart_svg([('x', [(0, math.nan)])]) == ('', 1)


def test_long_series_keep_their_envelope():
  points = [(step, 1.0 + (step % 7) / 100) for step in range(100_000)]
  points[54_321] = (54_321, 9.0)
  kept = report._decimate(points)  # pylint: disable=protected-access
  assert len(kept) <= 1202 and kept == sorted(kept)
  assert {(0, 1.0), (54_321, 9.0), points[-1]} <= set(kept)
  svg, _ = report.line_chart_svg([('x', points)])
  assert svg.count(' L') < 1202 and '>0</text>' in svg and '>80k</text>' in svg


# ----------------------------------------------------------------------------------------------
# The page


def test_report_content(run_dir):
  workdir, _, _, path = run_dir
  assert path == workdir / 'report' / 'index.html'
  page = path.read_text()
  for text in ('0.1234', '0.0512', '0.2468', '0.0201', '22.35', '0.4567', '0.0789', '0.3111',
               '42.17', '0.0123 ± 0.0011', '1,098', 'BtoA', 'val', '1,500',
               'paper (dropout on, per-image batch statistics)', 'PSNR (dB)', 'LPIPS', 'FID',
               'KID'):
    assert text in page, text
  assert re.search(r'<th>mean</th><th>min</th><th>max</th><th>std</th>', page)
  assert page.count('<svg class="chart"') == 6
  for title in ('Generator losses', 'Discriminator losses', 'L1, images in [0, 1]',
                'Discriminator outputs', 'Learning rate', 'Throughput'):
    assert f'<figcaption>{title}' in page
  assert '3 event files, last logged step 1,500' in page
  # A tag logged once is a table row, not a chart.
  assert '<tr><th>eval_psnr</th><td>1,500</td><td>22.50</td></tr>' in page
  assert '<a href="per_image.csv">' in page and (path.parent / 'per_image.csv').is_file()


def test_report_images_are_self_contained(run_dir):
  workdir, _, _, path = run_dir
  page = path.read_text()
  sources = re.findall(r'<img src="([^"]+)"', page)
  assert len(sources) == 4
  for source in sources:
    assert source.startswith('images/')
    assert (path.parent / source).is_file()
    assert (path.parent / source).read_bytes() == (
        workdir / 'eval' / 'panels' / source.split('_', 1)[1]).read_bytes()
  for file in path.parent.rglob('*'):
    if file.suffix in ('.html', '.svg', '.css', '.js'):
      text = file.read_text()
      assert 'http://' not in text and 'https://' not in text and '<script' not in text
  assert 'L1 0.1101' in page and 'Best (lowest L1)' in page and 'Worst (highest L1)' in page


def test_report_escapes_names(run_dir):
  page = run_dir[3].read_text()
  assert '<b>odd</b>' not in page
  assert 'val/&lt;b&gt;odd&lt;/b&gt; &amp; &quot;quoted&quot; &#x27;name&#x27;.jpg' in page


def test_markdown_tables():
  out = report.render_markdown(ABLATION + '\n- one `a|b`\n- two\n\n## More\nplain <i>text</i>')
  assert '<p>Patch size ablation (BtoA, 200 epochs):</p>' in out
  assert ('<thead><tr><th style="text-align:left">patch</th><th style="text-align:right">L1</th>'
          '<th style="text-align:right">PSNR</th><th>notes</th></tr></thead>') in out
  assert '<td style="text-align:right">0.145</td>' in out
  assert '<td>PixelGAN &lt;colourful&gt;</td>' in out
  assert "<td>the paper&#x27;s <strong>default</strong></td>" in out
  assert '<ul><li>one <code>a|b</code></li><li>two</li></ul>' in out
  assert '<h4>More</h4>' in out and '<p>plain &lt;i&gt;text&lt;/i&gt;</p>' in out
  # Ragged rows are padded to the header; an escaped bar stays in its cell; no header row.
  out = report.render_markdown('| a | b |\n|---|---|\n| 1 |\n| x \\| y | 2 | 3 |')
  assert '<tr><td>1</td><td style="text-align:right"></td></tr>' in out
  assert '<td>x | y</td>' in out and '>3<' not in out
  assert report.render_markdown('| a | b |\n| c | d |').count('<th') == 0


def test_extra_section_in_report(run_dir):
  page = run_dir[3].read_text()
  assert '<h2>Ablation: patch size</h2>' in page
  assert '<table class="md">' in page


def test_no_evaluation_yet(tmp_path):
  page = report.write_report(tmp_path).read_text()
  assert report.NO_EVAL_MESSAGE in page
  assert 'no training curves' in page
  assert '<img' not in page


def test_folder_of_runs(tmp_path):
  """The ablation's root has no run of its own: only its sections, no misleading notices."""
  page = report.write_report(tmp_path, extra_sections={'PatchGAN': ABLATION}).read_text()
  assert report.NO_EVAL_MESSAGE not in page and 'no training curves' not in page
  assert '<h2>PatchGAN</h2>' in page and '<td style="text-align:right">0.145</td>' in page


def test_missing_panel_and_bad_json(tmp_path):
  (tmp_path / 'eval').mkdir()
  (tmp_path / 'eval' / 'metrics.json').write_text(json.dumps(
      {'step': 3, 'metrics': {'l1': {'mean': 0.5}},
       'panels': {'fixed': [{'file': 'panels/<gone>.png', 'name': 'x', 'l1': 0.5}]}}))
  (tmp_path / 'report' / 'images').mkdir(parents=True)
  (tmp_path / 'report' / 'images' / 'stale.png').write_bytes(b'old')
  page = report.write_report(tmp_path).read_text()
  assert 'image missing: panels/&lt;gone&gt;.png' in page
  assert '0.5000' in page
  assert not (tmp_path / 'report' / 'images' / 'stale.png').exists()
  (tmp_path / 'eval' / 'metrics.json').write_text('{"step": ')
  page = report.write_report(tmp_path).read_text()
  assert 'could not read eval/metrics.json' in page


# ----------------------------------------------------------------------------------------------
# A real browser


def find_chromium():
  """The Chromium binary, or skip (fail on CI, which installs it)."""
  for name in ('chromium', 'chromium-browser', 'google-chrome'):
    path = shutil.which(name)
    if path:
      return path
  if os.environ.get('CI') == 'true':
    pytest.fail('chromium is not installed; CI installs it (apt-get install -y chromium)')
  pytest.skip('chromium is not installed (apt-get install -y chromium)')


def chromium_args(binary, profile):
  # Headless, and nothing that would reach for the network (updates, sync, QUIC probes).
  return [binary, '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic',
          '--no-first-run', '--disable-background-networking', '--disable-component-update',
          '--disable-sync', '--hide-scrollbars', '--force-device-scale-factor=1',
          f'--user-data-dir={profile}']


class DevTools:
  """A minimal Chrome DevTools Protocol client over --remote-debugging-pipe.

  Chromium reads NUL-terminated JSON commands from fd 3 and writes replies and events to fd 4.
  This reports console errors as structured events (Runtime.consoleAPICalled,
  Runtime.exceptionThrown, Log.entryAdded for failed loads and CSP violations) instead of
  scraping the log format of stderr, which changes between versions.
  """

  def __init__(self, binary, profile):
    to_child, self._to_browser = os.pipe()
    self._from_browser, from_child = os.pipe()
    # bash moves the child's ends to fds 3 and 4, then becomes Chromium. They are first moved to
    # fds >= 5, so that neither redirection overwrites the other's source (dash, Debian's sh,
    # takes single-digit fds only, hence bash).
    to_child, from_child = (self._move_above_4(fd) for fd in (to_child, from_child))
    self.process = subprocess.Popen(
        ['bash', '-c', f'exec "$0" "$@" 3<&{to_child} 4>&{from_child}',
         *chromium_args(binary, profile), '--remote-debugging-pipe'],
        pass_fds=(to_child, from_child), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(to_child)
    os.close(from_child)
    self._buffer = b''
    self._id = 0
    self.events = []

  @staticmethod
  def _move_above_4(fd):
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 5)
    os.close(fd)
    return moved

  def send(self, method, params=None, session=None):
    self._id += 1
    message = {'id': self._id, 'method': method, 'params': params or {}}
    if session:
      message['sessionId'] = session
    os.write(self._to_browser, json.dumps(message).encode() + b'\0')
    return self._id

  def wait_for(self, predicate, timeout=30):
    """Reads messages until one satisfies `predicate`; all are kept in `events`."""
    deadline = time.monotonic() + timeout
    while True:
      while b'\0' in self._buffer:
        raw, self._buffer = self._buffer.split(b'\0', 1)
        message = json.loads(raw)
        self.events.append(message)
        if predicate(message):
          return message
      ready, _, _ = select.select([self._from_browser], [], [],
                                  max(0.0, deadline - time.monotonic()))
      if not ready:
        raise TimeoutError('no answer from chromium')
      chunk = os.read(self._from_browser, 1 << 16)
      if not chunk:
        raise EOFError('chromium closed the DevTools pipe')
      self._buffer += chunk

  def call(self, method, params=None, session=None, check=True):
    call_id = self.send(method, params, session)
    reply = self.wait_for(lambda m: m.get('id') == call_id)
    if check and 'error' in reply:
      raise RuntimeError(f'DevTools {method}: {reply["error"]}')
    return reply

  def close(self):
    try:
      self.send('Browser.close')
      self.process.wait(timeout=20)
    except (OSError, subprocess.TimeoutExpired):
      self.process.kill()
      self.process.wait()
    finally:
      os.close(self._to_browser)
      os.close(self._from_browser)


def console_errors(binary, url):
  """The console errors of loading `url`: console.error, uncaught exceptions, failed loads."""
  with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as profile:
    browser = DevTools(binary, profile)
    try:
      target = browser.call('Target.createTarget', {'url': 'about:blank'})['result']['targetId']
      session = browser.call('Target.attachToTarget', {'targetId': target, 'flatten': True}
                             )['result']['sessionId']
      for method in ('Page.enable', 'Runtime.enable', 'Log.enable'):
        browser.call(method, session=session)
      browser.call('Page.navigate', {'url': url}, session=session)
      # Loaded means: this document (not the about:blank before it) has fired its load event.
      # Polling the page, rather than waiting for Page.loadEventFired, cannot take about:blank's
      # event for ours, and each answer comes after the messages the page sent before it.
      deadline = time.monotonic() + 30
      while True:
        reply = browser.call('Runtime.evaluate', {
            'expression': 'document.readyState === "complete" && location.href !== "about:blank"',
            'returnByValue': True}, session=session, check=False)  # Fails mid-navigation.
        if reply.get('result', {}).get('result', {}).get('value') is True:
          break
        assert time.monotonic() < deadline, f'{url} did not load: {reply}'
        time.sleep(0.05)
    finally:
      browser.close()
  errors = []
  for message in browser.events:
    method, params = message.get('method'), message.get('params', {})
    if method == 'Runtime.consoleAPICalled' and params['type'] in ('error', 'assert'):
      errors.append(' '.join(str(a.get('value', a.get('description'))) for a in params['args']))
    elif method == 'Runtime.exceptionThrown':
      details = params['exceptionDetails']
      errors.append(details.get('exception', {}).get('description', details['text']))
    elif method == 'Log.entryAdded' and params['entry']['level'] == 'error':
      errors.append(f'{params["entry"]["text"]} {params["entry"].get("url", "")}')
  return errors


def test_report_in_chromium(run_dir, tmp_path):
  binary = find_chromium()
  path = run_dir[3]

  # The capture itself must work: a page with a broken image, a console.error, an uncaught
  # exception and a CSP-blocked remote image reports all four.
  control = tmp_path / 'control.html'
  control.write_text(
      '<!doctype html><meta http-equiv="Content-Security-Policy" content="img-src \'self\'">'
      '<img src="missing.png"><img src="https://example.invalid/x.png">'
      '<script>console.error("logged"); throw new Error("thrown");</script>')
  errors = console_errors(binary, control.as_uri())
  assert len(errors) == 4, errors
  assert any('logged' in e for e in errors) and any('thrown' in e for e in errors)
  assert any('ERR_FILE_NOT_FOUND' in e for e in errors)
  assert any('Content Security Policy' in e for e in errors)

  assert console_errors(binary, path.as_uri()) == []

  screenshot = tmp_path / 'report.png'
  with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as profile:
    subprocess.run([*chromium_args(binary, profile), f'--screenshot={screenshot}',
                    '--window-size=1280,2600', path.as_uri()],
                   check=True, timeout=120, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  if os.environ.get('REPORT_SCREENSHOT'):  # To look at it: REPORT_SCREENSHOT=/tmp/report.png
    shutil.copyfile(screenshot, os.environ['REPORT_SCREENSHOT'])
  pixels = np.asarray(Image.open(screenshot).convert('RGB')).astype(np.int32)
  assert pixels.shape == (2600, 1280, 3)
  assert pixels.std() > 20, 'blank screenshot'
  # The known panel is drawn: ~128×128 screen pixels of each of its colours (its 64×64 thirds
  # scaled to the panel's width), away from the smoothed edges.
  for color in PANEL_COLORS:
    matches = np.all(np.abs(pixels - np.array(color)) <= 6, axis=-1).sum()
    assert matches > 3000, (color, matches)
