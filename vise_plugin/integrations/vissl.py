"""VisE inside VISSL (0.1.6): importing this module registers the project's parts with VISSL.

- heads ``vise_multi_head`` and ``web_tag_head`` in VISSL's head registry, built VISSL's way,
  ``cls(model_config, **params)`` (``MODEL.HEAD.PARAMS: [["vise_multi_head", {...}]]``);
- the losses ``vise_loss``, ``web_tag_loss`` and ``merged_loss`` are classy-vision losses already,
  which is what VISSL builds (``LOSS.name`` and ``LOSS.<name>``); with ``packed_targets`` they read
  the targets this module's collator packs;
- the data source ``vise_label_store`` (``DATA.TRAIN.DATA_SOURCES``, a label store folder in
  ``DATA_PATHS``): the store's images, memory-mapped as in the project's own dataset;
- the collator ``vise_collator``: stacks the images and packs each post's targets (soft comment
  histogram, reaction cluster, and web tags when given) into one ``(B, W)`` tensor, the single target
  tensor VISSL's ``standard_train_step`` expects. Use ``LABEL_TYPE: sample_index``, so that each
  image's label is its row in the store;
- :func:`vise_hook_generator`: VISSL's default hooks, after one that shows the heads' ``{name: logits}``
  to VISSL's model-output checks as a list of tensors.

``python -m vise_plugin.integrations.vissl_run`` imports this module and starts VISSL's own launcher
with the VisE configs shipped beside VISSL's. Importing ``vise_plugin`` never needs VISSL.
"""

import logging
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
from classy_vision.hooks import ClassyHook
from iopath.common.file_io import g_pathmgr
from PIL import Image
from vissl.data import DATA_SOURCES_WITH_SUBSET_SUPPORT, DATASET_SOURCE_MAP  # noqa: F401  (VISSL's registries)
from vissl.data.collators import COLLATOR_REGISTRY, register_collator
from vissl.data.dataset_catalog import VisslDatasetCatalog
from vissl.models.heads import MODEL_HEADS_REGISTRY, register_model_head

from vise_plugin.data.packed_targets import packed_targets
from vise_plugin.labels.store import LabelStore
from vise_plugin.models.multi_head import VisEMultiHead
from vise_plugin.models.web_tag_head import WebTagHead

logger = logging.getLogger(__name__)

DATA_SOURCE = "vise_label_store"
CONFIGS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "vissl_configs")


class VisslVisEMultiHead(VisEMultiHead):
    """:class:`VisEMultiHead` with VISSL's constructor.

    Args:
        model_config: VISSL's ``MODEL`` config (unused).
        in_features: ``C`` of the trunk's output (2048 for ResNet-50).
        tasks: ``{name: K}``, or names whose K is read from ``label_store``.
        label_store: a label store folder, when ``tasks`` gives names only.
    """

    def __init__(
        self,
        model_config: Any,
        in_features: int = 2048,
        tasks: Union[Mapping[str, int], Sequence[str]] = ("comments", "reactions"),
        label_store: Optional[str] = None,
    ):
        if not isinstance(tasks, Mapping):
            store = LabelStore(label_store)
            tasks = {name: store.num_classes(name) for name in tasks}
        super().__init__(in_features, dict(tasks))


class VisslWebTagHead(WebTagHead):
    """:class:`WebTagHead` with VISSL's constructor: ``in_features``, ``num_tags`` and ``embed_dim``
    (the text encoder's width, 384 for all-MiniLM-L6-v2)."""

    def __init__(self, model_config: Any, in_features: int = 2048, num_tags: int = 0, embed_dim: int = 384):
        super().__init__(in_features, num_tags, embed_dim)


class LabelStoreImages:
    """A VISSL data source over a label store: item ``i`` is ``(PIL image of post i, readable)``; an
    unreadable image is logged and comes back black with ``False`` (VISSL then marks it invalid and the
    collator gives it no targets). Built by VISSL as ``cls(cfg, path, split, dataset_name, data_source)``.
    """

    def __init__(self, cfg: Any, path: str, split: str, dataset_name: str, data_source: str):
        self.store = LabelStore(path)
        self.image_root = self.store.meta.get("image_root", "")
        self.size = int(cfg["DATA"][split].get("VISE_INVALID_IMAGE_SIZE", 224))

    def __len__(self) -> int:
        return len(self.store)

    def num_samples(self) -> int:
        return len(self.store)

    def get_image_paths(self) -> List[str]:
        return [os.path.join(self.image_root, self.store.images[i]) for i in range(len(self.store))]

    def __getitem__(self, idx: int) -> Tuple[Image.Image, bool]:
        path = os.path.join(self.image_root, self.store.images[idx])
        try:
            with g_pathmgr.open(path, "rb") as f:
                return Image.open(f).convert("RGB"), True
        except (OSError, ValueError, Image.DecompressionBombError) as e:
            logger.warning("skipped unreadable image %s (%s)", path, e)
            return Image.new("RGB", (self.size, self.size)), False


def vise_collator(
    batch: List[Dict[str, Any]],
    label_store: Optional[str] = None,
    tag_list: Optional[str] = None,
    tag_vocab: Optional[str] = None,
    tag_image_root: Optional[str] = None,
) -> Dict[str, List[torch.Tensor]]:
    """VISSL items ``{"data": [(3, S, S)], "label": [store row], "data_valid": [1 | -1], "data_idx": [i]}``
    -> ``{"data": [(B, 3, S, S)], "label": [(B, W) packed targets], "data_valid": [(B,)], "data_idx": [(B,)]}``.

    The first source lists the images (its rows are the labels); web tags are matched by image path.
    An invalid image gets empty targets, which every loss leaves out.
    """
    sources, empty, layout = packed_targets(
        {"label_store": label_store, "tag_list": tag_list, "tag_vocab": tag_vocab, "tag_image_root": tag_image_root}
    )
    targets = []
    for item in batch:
        row, valid = int(item["label"][0]), item["data_valid"][0] == 1
        target = dict(empty)
        if valid:
            target.update(sources[0].targets_at(row))
            for source in sources[1:]:
                target.update(source.targets_for(sources[0].path(row)))
        targets.append(target)
    return {
        "data": [torch.stack([item["data"][0] for item in batch])],
        "label": [layout.pack(targets)],
        "data_valid": [torch.tensor([item["data_valid"][0] for item in batch])],
        "data_idx": [torch.tensor([item["data_idx"][0] for item in batch])],
    }


class DictOutputsAsList(ClassyHook):
    """Runs first: VISSL's forward hooks (the NaN checks of the model output) read a tensor or a list
    of tensors, so a head's ``{name: logits}`` is shown to them as the list of its values. The loss,
    called after these hooks, still gets the dict."""

    on_start = on_phase_start = on_loss_and_meter = on_backward = on_update = on_step = ClassyHook._noop
    on_phase_end = on_end = ClassyHook._noop

    def on_forward(self, task: Any) -> None:
        output = task.last_batch.model_output
        if isinstance(output, Mapping):
            task.last_batch.model_output = list(output.values())


def vise_hook_generator(cfg: Any) -> List[Any]:
    """VISSL's default hooks, after :class:`DictOutputsAsList`."""
    from vissl.hooks import default_hook_generator

    return [DictOutputsAsList(), *default_hook_generator(cfg)]


def register() -> None:
    """Registers the heads, the data source and the collator with VISSL (once; importing this module
    does it)."""
    for name, cls in (("vise_multi_head", VisslVisEMultiHead), ("web_tag_head", VisslWebTagHead)):
        if name not in MODEL_HEADS_REGISTRY:
            register_model_head(name)(cls)
    DATASET_SOURCE_MAP.setdefault(DATA_SOURCE, LabelStoreImages)
    if not VisslDatasetCatalog.has_data(DATA_SOURCE):  # DATASET_NAMES: the store's paths come from DATA_PATHS
        VisslDatasetCatalog.register_data(DATA_SOURCE, {"train": ["", ""], "val": ["", ""]})
    if "vise_collator" not in COLLATOR_REGISTRY:
        register_collator("vise_collator")(vise_collator)


register()
