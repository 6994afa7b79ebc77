"""VisE (Jia et al. 2021) as a classy-vision plugin: labels, heads, loss, pretraining, evaluation.

Importing the package registers with classy-vision the datasets ``vise_engagement`` and
``web_tag_images``, the heads ``vise_multi_head`` and ``web_tag_head``, the losses ``vise_loss``,
``web_tag_loss`` and ``merged_loss``, the model ``vise_model`` and the task ``vise_pretraining``.
"""

import warnings

# classy-vision imports torchvision's deprecated video transforms at import time.
warnings.filterwarnings("ignore", message=r".*torchvision\.transforms\._(functional|transforms)_video.*")
warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*deprecated.*")

from vise_plugin import data, losses, models, tasks  # noqa: E402,F401  (registration)

__version__ = "0.1.0"
