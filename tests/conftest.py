"""Suite-wide settings: one torch thread per process.

The suite's models are tiny; several test files also start subprocesses (CLI, notebooks, the crash
harness). With one thread each they never fight over the CI machine's two cores, which made some
files several times slower.
"""
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TQDM_DISABLE", "1")

import torch  # noqa: E402

torch.set_num_threads(1)
