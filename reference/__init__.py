"""The PyTorch reference, for comparing against it: `pytorch_peer` (pix2pix as
junyanz/pytorch-CycleGAN-and-pix2pix trains it, its networks, init, losses and update order) and
`step_equivalence` (our train step and the peer's from the same weights on the same batches).

Imported from the repository root (`from reference import pytorch_peer`), by the tests and the
benchmarks; it needs PyTorch (the `metrics` extra brings it) and is not part of the installed
package.
"""
