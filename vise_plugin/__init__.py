"""VisE (Jia et al. 2021) as a classy-vision plugin: labels, heads, loss, pretraining, evaluation.

Importing the package registers dataset ``vise_engagement``, head ``vise_multi_head``,
loss ``vise_loss``, model ``vise_model`` and task ``vise_pretraining`` with classy-vision.
"""

import warnings

# classy-vision imports torchvision's deprecated video transforms at import time.
warnings.filterwarnings("ignore", message=r".*torchvision\.transforms\._(functional|transforms)_video.*")
warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*deprecated.*")

from . import data, losses, models, tasks  # noqa: E402,F401  (registration)

__version__ = "0.1.0"
