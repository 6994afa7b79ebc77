#!/usr/bin/env python
"""python tools/export_hub.py <checkpoint.torch | model_phase<N>.torch | state dict> <output.pth | output.safetensors>
    [--trunk NAME] [--format hub|vissl|torchvision|timm]

Writes the trunk in the layout --format names:
- hub (default): exactly the official VisE torch.hub format, the state dict of
  nn.Sequential(*list(torchvision.models.resnet50().children())[:-2]) (keys 0.weight, 1.running_mean,
  4.0.conv1.weight, ...). hubconf.py's resnet50_1m / resnet50_250m load it (a .pth) with weights=<output.pth>.
- vissl: a VISSL checkpoint for MODEL.WEIGHTS_INIT.PARAMS_FILE.
- torchvision, timm (the same file: timm's ResNets have torchvision's keys): conv1.weight,
  layer1.0.conv1.weight, ... and a zero 1000-class fc.weight / fc.bias, so that
  timm.create_model("resnet50", pretrained=True, pretrained_cfg_overlay={"file": "<output>"}) loads it with
  strict=True (add num_classes=0 for the trunk without the classifier).
An output named *.safetensors is a safetensors file (every format but vissl), anything else a torch.save file;
config.model.weights reads both. The same as vise-export-hub."""

import sys

from vise_plugin.cli import main_export_hub

if __name__ == "__main__":
    sys.exit(main_export_hub())
