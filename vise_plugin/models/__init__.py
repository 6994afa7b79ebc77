from .multi_head import VisEMultiHead
from .trunks import TRUNK_BUILDERS, build_trunk, register_trunk, trunk_out_channels
from .vise_model import VisEModel
from .weights import export_hub_weights, load_trunk_state, load_trunk_weights
from .web_tag_head import MergedHeads, WebTagHead

__all__ = ["MergedHeads", "VisEMultiHead", "VisEModel", "WebTagHead", "TRUNK_BUILDERS", "build_trunk", "register_trunk", "trunk_out_channels",
           "export_hub_weights", "load_trunk_state", "load_trunk_weights"]
