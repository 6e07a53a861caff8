"""Step equivalence with the PyTorch reference: the same weights and batches give the same losses.

  python reference/step_equivalence.py          # the tested cases, 5 steps, both forms, float64
  python reference/step_equivalence.py --cases=unet_instance_286 --steps=8 --forms=auto

For each case our train step (`train.create_train_functions`, jitted as training jits it, on
`configs/test.py` with the case's overrides) and the PyTorch peer (`reference/pytorch_peer.py`: the
reference's networks, losses, Adam and update order) start from the same weights (ours, copied
into the peer by `pytorch_peer.load_jax_variables`) and train on the same fixed sequence of random
uint8 batches, dropout off on both (it is the only randomness in a step). Each step's six losses are
compared as the reference computes them (its `loss_G_L1` is λ·L1, ours `g_l1` the plain L1).

Step 1's losses are one forward pass of the same weights (D's losses, the L1) or meet D after one
Adam step (G's GAN loss): they agree to float32 rounding. Later steps drift apart by float rounding
compounded by training, as two float32 runs of the peer itself do. The table prints, per step, the
largest relative difference over the six losses, |a - b| / |b|, of: ours against the peer (on 1
torch thread), for our speed forms as users run them ('auto': on CPU the Winograd, adjoint and
matmul forms) and XLA's own forms ('xla': `model.conv_impl=xla`, `model.upsample_impl=
conv_transpose`, `model.matmul_max_pixels=0`); the peer on 2 threads against 1 (its self-drift);
and the peer against its own float64 run (how far float32 rounding alone takes it).
tests/test_step_equivalence.py asserts the CASES' figures against bounds; PATCH_286_CASES show
where rounding is amplified so much that no two float32 runs agree for long, so the 286² PatchGAN
is also compared alone (its logits and gradients, `compare_discriminator`).
"""

import argparse
import dataclasses
import pathlib
import sys

import jax
import numpy as np
import torch

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # For configs/, reference/ and pix2pix_jax when run from anywhere.

from configs import test as test_config  # pylint: disable=g-import-not-at-top
from pix2pix_jax import losses, models, train, train_state  # pylint: disable=g-import-not-at-top
from reference import pytorch_peer  # pylint: disable=g-import-not-at-top

LOSS_NAMES = train.LOSS_NAMES  # g_total, g_gan, g_l1, d_total, d_real, d_fake.
# Our convolution forms: as users run them (the 'auto' keys of configs/test.py for this backend),
# or XLA's own.
FORMS = {
    'auto': {},
    'xla': {'conv_impl': 'xla', 'upsample_impl': 'conv_transpose', 'matmul_max_pixels': 0},
}


@dataclasses.dataclass(frozen=True)
class Case:
  """One network combination; the rest is configs/test.py (ngf = ndf = 8, batch 2, Adam 2e-4)."""

  norm: str
  patch_size: int
  image_size: int = 32  # U-Net: a power of two >= 32; the 286² PatchGAN needs >= 96.
  generator: str = 'unet'
  gan_mode: str = 'vanilla'


# The cases tests/test_step_equivalence.py runs for 5 steps: both norms, both generators, both
# GAN losses of the reference, the 1², 16² and 70² PatchGANs. (The 286² one: PATCH_286_CASES.)
CASES = {
    'unet_batch_70': Case('batch', 70),
    'unet_instance_1': Case('instance', 1),
    'resnet6_instance_16_lsgan': Case('instance', 16, generator='resnet_6blocks', gan_mode='lsgan'),
}
# The 286² PatchGAN needs >= 96² (U-Net: 128²), where the step is ill-conditioned: Adam turns
# gradient entries that are rounding noise into full ±lr steps (its first update is about
# lr·sign(gradient)) in either implementation, and here they are amplified ~10× per step, so two
# float32 runs part by 1e-5 to 1e-3 from step 3 (batch norm) or 2 (instance norm): ours from the
# peer as the peer from its own float64 run. The test checks this PatchGAN's forward and backward
# directly (`compare_discriminator`); these cases show the full step.
PATCH_286_CASES = {
    'unet_batch_286': Case('batch', 286, image_size=128),
    'unet_instance_286': Case('instance', 286, image_size=128),
}


def create_config(case: Case, forms: str = 'auto', steps: int = 5, seed: int = 0):
  """configs/test.py with the case's networks, dropout off, the given forms and init seed."""
  config = test_config.get_config()
  config.seed = seed
  config.num_train_steps = steps
  config.data.image_size = case.image_size
  config.model.update(
      generator=case.generator,
      norm=case.norm,
      patch_size=case.patch_size,
      dropout_rate=0.0,
      **FORMS[forms],
  )
  config.loss.gan_mode = case.gan_mode
  return config


def random_batches(config, steps: int, seed: int = 0) -> list[dict]:
  """A fixed sequence of `steps` random uint8 NHWC {'input', 'target'} batches."""
  rng = np.random.default_rng(seed)
  shape = (config.batch_size, config.data.image_size, config.data.image_size, config.data.channels)
  return [
      {key: rng.integers(0, 256, shape, dtype=np.uint8) for key in ('input', 'target')}
      for _ in range(steps)
  ]


def run_ours(config, batches: list[dict]):
  """Our step as training runs it; returns (initial variables of G and D on the host, losses).

  Losses: (steps, 6) float64 in LOSS_NAMES order, g_l1 × λ as the reference's `loss_G_L1`.
  """
  _, init_fn, step_fn = train.create_train_functions(config, 1, len(batches))
  state = jax.jit(init_fn)(jax.random.PRNGKey(config.seed))
  initial = jax.device_get({
      name: {'params': network.params, 'batch_stats': network.batch_stats}
      for name, network in (('generator', state.generator), ('discriminator', state.discriminator))
  })
  run_step = train.jit_run_steps(config, step_fn, 1)
  history = []
  for batch in batches:
    state, metrics = run_step(state, (batch,))
    history.append([float(metrics[name][0]) for name in LOSS_NAMES])
  losses = np.array(history)
  losses[:, LOSS_NAMES.index('g_l1')] *= config.loss.lambda_l1
  return initial, losses


def create_peer(config, variables: dict) -> pytorch_peer.Pix2PixPeer:
  """The peer's networks for `config`, holding our `variables`, dropout off."""
  model, generator_kwargs = config.model, {}
  if model.generator != 'unet':
    generator_kwargs['generator'] = model.generator
  net_g = pytorch_peer.create_generator(
      config.data.image_size, model.ngf, model.norm, **generator_kwargs
  )
  net_d = pytorch_peer.create_discriminator(model.patch_size, model.ndf, model.norm)
  pytorch_peer.load_jax_variables(
      pytorch_peer.disable_dropout(net_g), variables['generator'], pytorch_peer.modules(net_g)
  )
  pytorch_peer.load_jax_variables(net_d, variables['discriminator'], pytorch_peer.modules(net_d))
  return pytorch_peer.Pix2PixPeer(
      net_g,
      net_d,
      config.loss.lambda_l1,
      learning_rate=config.optim.learning_rate,
      betas=(config.optim.b1, config.optim.b2),
      gan_mode=config.loss.gan_mode,
  )


def _to_torch(images: np.ndarray) -> torch.Tensor:
  # uint8 NHWC -> float NCHW in [-1, 1] (contiguous, as the reference's loader gives them).
  return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous().float() / 127.5 - 1.0


def _to_float64(peer: pytorch_peer.Pix2PixPeer) -> None:
  # In place, so the optimizers keep the same Parameters (their state is made at the first step).
  peer.net_g.double()
  peer.net_d.double()
  peer.real_label, peer.fake_label = peer.real_label.double(), peer.fake_label.double()


def run_peer(
    config,
    variables: dict,
    batches: list[dict],
    threads: int = 1,
    dtype: torch.dtype = torch.float32,
) -> np.ndarray:
  """The peer's losses (steps, 6) in LOSS_NAMES order, run on `threads` torch threads.

  `dtype=torch.float64` runs it in double precision (networks, Adam, losses): the step with
  (nearly) no rounding, to see how far a float32 run strays by rounding alone.
  """
  saved = torch.get_num_threads()
  torch.set_num_threads(threads)
  try:
    peer = create_peer(config, variables)
    if dtype == torch.float64:
      _to_float64(peer)
    history = []
    for batch in batches:
      real_a, real_b = (_to_torch(batch[key]).to(dtype) for key in ('input', 'target'))
      losses = peer.optimize_parameters(real_a, real_b)
      history.append([losses[name].item() for name in LOSS_NAMES])
  finally:
    torch.set_num_threads(saved)
  return np.array(history)


def relative_difference(losses: np.ndarray, reference: np.ndarray) -> np.ndarray:
  """|losses - reference| / |reference|, per step and loss."""
  return np.abs(losses - reference) / np.abs(reference)


def compare(
    case: Case, forms=('auto',), steps: int = 5, float64: bool = False, seed: int = 0
) -> dict:
  """Runs one case: ours (per form in `forms`) and the peer on 1 and 2 threads.

  `seed` seeds our init (`config.seed`); the batches are always the same.

  Returns:
    {'variables': the initial weights, 'peer': (steps, 6) losses on 1 thread, 'self_drift':
     (steps, 6) relative difference of the peer on 2 threads, and per form f: f: (steps, 6) our
     losses, f + '_difference': (steps, 6) our relative difference}; with `float64`,
     'float64_drift': the peer's relative difference to its own float64 run.
  """
  result = {}
  variables = None
  for form in forms:
    config = create_config(case, form, steps, seed)
    batches = random_batches(config, steps)
    initial, result[form] = run_ours(config, batches)
    variables = variables or initial  # The same init whatever the forms (checked below).
    for got, want in zip(jax.tree.leaves(initial), jax.tree.leaves(variables)):
      np.testing.assert_array_equal(got, want)
  result['variables'] = variables
  result['peer'] = run_peer(config, variables, batches, threads=1)
  result['self_drift'] = relative_difference(
      run_peer(config, variables, batches, threads=2), result['peer']
  )
  for form in forms:
    result[f'{form}_difference'] = relative_difference(result[form], result['peer'])
  if float64:
    result['float64_drift'] = relative_difference(
        result['peer'], run_peer(config, variables, batches, dtype=torch.float64)
    )
  return result


def compare_discriminator(
    norm: str, patch_size: int = 286, image_size: int = 128, seed: int = 0
) -> dict:
  """Our PatchGAN against the peer's: one train-mode forward and backward of the same weights.

  The full step with the 286² PatchGAN is only comparable for a step or two at the sizes a fast
  test affords (see PATCH_286_CASES) and costs a 128² U-Net compile; this checks what that case
  adds, the discriminator, directly: its logits and the gradients of the vanilla GAN loss (target
  real) with respect to every parameter and the input pair, in our forms for this backend.

  Returns:
    {'loss', 'logits', 'input_grad', and per parameter 'grad:<path>'}: each the largest absolute
    difference over the largest absolute peer value of the tensor, for a gradient of its layer
    (the biases before InstanceNorm have a true gradient of 0: rounding noise on both sides).
  """
  config = create_config(Case(norm, patch_size, image_size), seed=seed)
  discriminator = models.create_discriminator(config.model)
  shape = (2, image_size, image_size, 2 * config.data.channels)
  pairs = np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)
  pairs = pairs.astype(np.float32) / 127.5 - 1.0

  variables = jax.device_get(
      jax.jit(discriminator.init, static_argnames='train')(
          jax.random.PRNGKey(seed), pairs, train=True
      )
  )
  batch_stats = variables.get('batch_stats', {})

  def loss_fn(params, pairs):
    logits, _ = train_state.apply_train_mode(discriminator, params, batch_stats, pairs)
    return losses.gan_loss(logits, True), logits

  (loss, logits), (param_grads, input_grad) = jax.device_get(
      jax.jit(jax.value_and_grad(loss_fn, argnums=(0, 1), has_aux=True))(variables['params'], pairs)
  )

  net = pytorch_peer.create_discriminator(patch_size, config.model.ndf, norm).train()
  modules = pytorch_peer.modules(net)
  pytorch_peer.load_jax_variables(net, variables, modules)
  peer_pairs = torch.tensor(pairs).permute(0, 3, 1, 2).contiguous().requires_grad_()
  peer_logits = net(peer_pairs)
  peer_loss = torch.nn.functional.binary_cross_entropy_with_logits(
      peer_logits, torch.ones_like(peer_logits)
  )
  peer_loss.backward()

  def error(ours, peer, scale=None):
    peer = peer.detach().numpy()
    return float(np.abs(ours - peer).max() / (scale or np.abs(peer).max()))

  result = {
      'loss': error(np.asarray(loss), peer_loss),
      'logits': error(logits, peer_logits.permute(0, 2, 3, 1)),
      'input_grad': error(input_grad, peer_pairs.grad.permute(0, 2, 3, 1)),
  }
  for path, grad in pytorch_peer.flatten_variables(param_grads).items():
    module_path, name = path.rsplit('/', 1)
    module = modules[module_path]
    attribute, ours = pytorch_peer.to_peer_tensor(module, name, grad)
    layer_scale = max(float(p.grad.abs().max()) for p in module.parameters())
    result[f'grad:{path}'] = error(ours.numpy(), getattr(module, attribute).grad, layer_scale)
  return result


def format_table(name: str, result: dict) -> str:
  """Per step, the largest relative difference over the six losses (and which loss).

  Columns: ours per form against the peer; the peer against itself on 2 threads; with
  'float64_drift', the peer against its float64 run.
  """
  columns = [
      (f'ours ({key[:-len("_difference")]}) vs peer', key)
      for key in result
      if key.endswith('_difference')
  ]
  columns += [('peer: 2 vs 1 threads', 'self_drift')]
  columns += [('peer: float32 vs float64', 'float64_drift')] if 'float64_drift' in result else []
  lines = [
      name,
      '| step | ' + ' | '.join(title for title, _ in columns) + ' |',
      '|---:|' + '---|' * len(columns),
  ]
  for step in range(result['peer'].shape[0]):
    cells = [
        f'{result[key][step].max():.1e} ({LOSS_NAMES[result[key][step].argmax()]})'
        for _, key in columns
    ]
    lines.append(f'| {step + 1} | ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  cases = CASES | PATCH_286_CASES
  parser.add_argument('--cases', default=','.join(cases), help=f'of {list(cases)}')
  parser.add_argument('--forms', default='auto,xla', help=f'of {list(FORMS)}')
  parser.add_argument('--steps', type=int, default=5)
  parser.add_argument('--seed', type=int, default=0, help='Seed of our init (config.seed).')
  parser.add_argument(
      '--float64',
      action=argparse.BooleanOptionalAction,
      default=True,
      help='Also run the peer in float64: how far its float32 run strays.',
  )
  args = parser.parse_args(argv)
  print(
      f'jax {jax.__version__} ({jax.default_backend()}), torch {torch.__version__}; relative '
      'differences |a - b| / |b|, the largest of the six losses per step'
  )
  for name in args.cases.split(','):
    result = compare(cases[name], args.forms.split(','), args.steps, args.float64, args.seed)
    print(format_table(name, result), flush=True)
  for norm in ('batch', 'instance'):
    result = compare_discriminator(norm, seed=args.seed, image_size=128)
    worst = max(result, key=result.get)
    print(
        f'286² PatchGAN alone, {norm} norm, 128²: one forward and backward ({len(result)} '
        f'tensors) agree to {result[worst]:.1e} of their scale (worst: {worst}); logits '
        f'{result["logits"]:.1e}, input gradient {result["input_grad"]:.1e}',
        flush=True,
    )


if __name__ == '__main__':
  main()
