"""Config validation (config_checks.py): every rule in one place, run by main.py for every mode
before anything is read or written; each bad value is named by its config key."""

import importlib
import os
import pathlib
import subprocess
import sys

import pytest

from configs import test as test_config
from pix2pix_jax import checkpointing, config_checks

ROOT = pathlib.Path(__file__).resolve().parents[1]


def choice(key, value):
  """An unknown choice: its error names the key, the value and the choices."""
  return key, value, rf'config.{key}={value!r} is not one of \['


@pytest.mark.parametrize(
    'key, value, message',
    [
        *(
            choice(key, value)
            for key, value in [
                ('data.name', 'facade'),
                ('data.direction', 'AtoC'),
                ('data.verify', 'some'),
                ('model.generator', 'resnet_7blocks'),
                ('model.patch_size', 34),
                ('model.norm', 'layer'),
                ('model.conv_impl', 'fft'),
                ('optim.schedule', 'cosine'),
                ('loss.gan_mode', 'wgan'),
                ('export.format', 'tflite'),
                ('on_nonfinite', 'ignore'),
            ]
        ),
        ('data.image_size', 48, 'config.data.image_size: image size 48'),
        ('batch_size', 0, 'config.batch_size=0'),
        ('model.matmul_max_pixels', -1, 'config.model.matmul_max_pixels=-1'),
        ('steps_per_call', 0, 'config.steps_per_call=0'),
        ('steps_per_call', 'fast', "config.steps_per_call='fast'"),
        ('steps_per_call', 2.5, 'config.steps_per_call=2.5'),
        ('data.on_device', 'yes', "config.data.on_device='yes'"),
        ('data.on_device', 1, 'config.data.on_device=1'),
        ('model.matmul_max_pixels', 'none', "config.model.matmul_max_pixels='none'"),
        ('model.upsample_impl', 'fft', "config.model.upsample_impl='fft'"),
        ('data.max_image_pixels', 0, 'config.data.max_image_pixels=0'),
    ],
)
def test_bad_values_are_named(key, value, message):
  config = test_config.get_config()
  section, _, field = key.rpartition('.')
  (config[section] if section else config)[field] = value
  with pytest.raises(ValueError, match=message):
    config_checks.validate_config(config, 1, training=True)


def test_image_size_must_suit_the_resnet_and_need_not_be_a_power_of_two():
  config = test_config.get_config()
  config.model.generator = 'resnet_6blocks'
  config.data.image_size, config.data.load_size = 40, 44
  config_checks.validate_config(config, 1)  # 40 is no U-Net size, but the ResNet takes it.
  config.data.image_size = 42
  with pytest.raises(
      ValueError,
      match=r'config.data.image_size=42 does not suit '
      r"config.model.generator='resnet_6blocks'.*multiple of 4",
  ):
    config_checks.validate_config(config, 1)


def test_non_folder_datasets_are_rgb():
  config = test_config.get_config()
  config.data.output_channels = 1
  with pytest.raises(
      ValueError,
      match=r'config.data.input_channels/output_channels resolve to '
      r"\(3, 1\).*config.data.name='synthetic' is RGB",
  ):
    config_checks.validate_config(config, 1)
  config.data.output_channels, config.data.channels = None, 1
  with pytest.raises(ValueError, match=r'\(1, 1\) \(config.data.channels=1\)'):
    config_checks.validate_config(config, 1)


def test_perceptual_best_metric_needs_perceptual_eval():
  config = test_config.get_config()
  config.eval.best_metric = 'fid'
  with pytest.raises(ValueError, match=r"config.eval.best_metric='fid' .*config.eval.perceptual"):
    config_checks.validate_config(config, 1, training=True)
  config_checks.validate_config(config, 1)  # Evaluating does not keep a best: no error there.
  config.eval.best_metric = 'fdi'
  with pytest.raises(ValueError, match=r"config.eval.best_metric='fdi' is not one of"):
    config_checks.validate_config(config, 1)
  config.eval.best_metric = 'None'  # As --config.eval.best_metric=None arrives.
  config_checks.validate_config(config, 1, training=True)
  assert checkpointing.best_metric(config) is None


@pytest.mark.parametrize(
    'mode, flags',
    [
        ('predict', ['--input=in', '--output=out']),  # Two of the modes that were never checked.
        ('export', []),
    ],
)
def test_main_checks_the_config_in_every_mode(tmp_path, mode, flags):
  """Before anything is read or written: the workdir need not exist, nor the inputs. (main.py
  runs the one check before dispatching on the mode.)"""
  result = subprocess.run(
      [
          sys.executable,
          'main.py',
          '--config=configs/test.py',
          f'--workdir={tmp_path / "run"}',
          f'--mode={mode}',
          *flags,
          '--config.export.format=tflite',
      ],
      cwd=ROOT,
      capture_output=True,
      text=True,
      timeout=300,
      env=os.environ,
  )
  assert result.returncode != 0
  assert "config.export.format='tflite' is not one of ['jax', 'onnx', 'pytorch']" in result.stderr
  assert not (tmp_path / 'run').exists()


@pytest.mark.parametrize(
    'name',
    sorted(
        p.stem for p in (ROOT / 'configs').glob('*.py') if p.stem not in ('__init__', 'default')
    ),
)
def test_every_config_file_is_valid(name):
  """As `--config=configs/NAME.py` gives it, for training on one device."""
  config = importlib.import_module(f'configs.{name}').get_config()
  config_checks.validate_config(config, 1, training=True)
