"""One torch thread for every test: the kit's models are tiny and CI has two shared cores, where
several OpenMP threads per process made steps 10-100x slower (see kdlab.env.default_threads)."""
import os

os.environ.setdefault("KDLAB_THREADS", "1")

import torch  # noqa: E402

torch.set_num_threads(1)
