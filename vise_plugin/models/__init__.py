from .multi_head import VisEMultiHead
from .trunks import TRUNK_BUILDERS, build_trunk, register_trunk, trunk_out_channels
from .vise_model import VisEModel

__all__ = ["VisEMultiHead", "VisEModel", "TRUNK_BUILDERS", "build_trunk", "register_trunk", "trunk_out_channels"]
