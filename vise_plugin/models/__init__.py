from vise_plugin.models.merged_heads import MergedHeads
from vise_plugin.models.multi_head import VisEMultiHead
from vise_plugin.models.trunks import build_trunk, trunk_out_channels
from vise_plugin.models.vise_model import VisEModel
from vise_plugin.models.web_tag_head import WebTagHead
from vise_plugin.models.weights import export_hub_weights, load_trunk_state, load_trunk_weights

__all__ = [
    "MergedHeads",
    "VisEMultiHead",
    "VisEModel",
    "WebTagHead",
    "build_trunk",
    "trunk_out_channels",
    "export_hub_weights",
    "load_trunk_state",
    "load_trunk_weights",
]
