#!/usr/bin/env python
"""python tools/export_hub.py <checkpoint.torch | model_phase<N>.torch | state dict> <output.pth> [--trunk NAME]

Writes the trunk in exactly the official VisE torch.hub format: the state dict of
nn.Sequential(*list(torchvision.models.resnet50().children())[:-2]) (keys 0.weight, 1.running_mean,
4.0.conv1.weight, ...). hubconf.py's resnet50_1m / resnet50_250m load it with weights=<output.pth>.
The same as vise-export-hub."""

import sys

from vise_plugin.cli import main_export_hub

if __name__ == "__main__":
    sys.exit(main_export_hub())
