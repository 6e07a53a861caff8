"""Running the GPU suite on a remote machine within its upload limits (README.md here)."""
