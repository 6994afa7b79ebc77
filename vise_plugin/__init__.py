"""VisE (Jia et al. 2021) as a classy-vision plugin: labels, heads, loss, pretraining, evaluation.

Importing the package registers with classy-vision the datasets ``vise_engagement`` and
``web_tag_images``, the heads ``vise_multi_head`` and ``web_tag_head``, the losses ``vise_loss``,
``web_tag_loss`` and ``merged_loss``, the model ``vise_model`` and the task ``vise_pretraining``.

For training code of your own: ``from vise_plugin import VisETargets, VisEMultiHead, VisELoss``.
"""

import warnings

# classy-vision imports torchvision's deprecated video transforms and calls torch.jit.script at import
# time. Those warnings are hidden while the package imports; the filters that hide them are removed
# afterwards, and those the dependencies install themselves stay.
_IMPORT_WARNINGS = (
    r".*torchvision\.transforms\._(functional|transforms)_video.*",
    r".*torch\.jit\.script.*deprecated.*",
)
_before = list(warnings.filters)
for _message in _IMPORT_WARNINGS:
    warnings.filterwarnings("ignore", message=_message)
_ours = [f for f in warnings.filters[: len(_IMPORT_WARNINGS)] if f not in _before]  # one the caller has stays
try:
    from vise_plugin import data, losses, models, tasks  # noqa: E402,F401  (registration)
finally:
    warnings.filters[:] = [f for f in warnings.filters if not any(f is o for o in _ours)]
    getattr(warnings, "_filters_mutated", lambda: None)()  # what catch_warnings calls: cached decisions reset
    del _message, _ours, _before

from vise_plugin.losses.vise_loss import VisELoss  # noqa: E402
from vise_plugin.models.multi_head import VisEMultiHead  # noqa: E402
from vise_plugin.vise_targets import VisETargets, collate_targets  # noqa: E402

__version__ = "0.3.0"

#: the public API for reuse in other training code (see "Reuse in other frameworks" in the docs); a change
#: to these names or their signatures goes in the README's changelog
__all__ = ["VisETargets", "VisEMultiHead", "VisELoss", "collate_targets", "__version__"]
