"""Hello, World! deep learning in medical imaging: a teaching kit.

The package holds all the logic; the numbered notebooks are lessons that call it.
Modules, one job each: settings → runs (the run folder) and plots (drawing only) → data (fetch,
dataset, split, dicom, images, pipeline) → model (weights, model) → evaluate → train → explain,
then the headless runner, the reference runs and the command line (docs/architecture.md).
"""

import os

# TensorFlow's C++ start-up chatter (CUDA probing, CPU instruction notes) frightens newcomers
# and says nothing they can act on; keep warnings and errors. Set before TensorFlow is imported.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# One GPU is shared by several kernels (05 while 04 is still open; a room server's participants):
# take GPU memory as needed instead of nearly all of it at once. Read when TensorFlow first
# uses the GPU; environment.limit_gpu_memory() sets the same (or a cap) through its API.
os.environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")

__version__ = "0.1.0"
