#!/usr/bin/env python
"""python tools/export_hub.py <checkpoint.torch | model_phase<N>.torch | state dict> <output.pth> [--trunk NAME]

Writes the trunk in exactly the official VisE torch.hub format: the state dict of
nn.Sequential(*list(torchvision.models.resnet50().children())[:-2]) (keys 0.weight, 1.running_mean,
4.0.conv1.weight, ...). hubconf.py's resnet50_1m / resnet50_250m load it with weights=<output.pth>.
"""

import argparse
import hashlib
import sys

from vise_plugin.errors import UserError
from vise_plugin.models import export_hub_weights


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[2])
    parser.add_argument("checkpoint")
    parser.add_argument("output")
    parser.add_argument("--trunk", default=None, help="trunk name when the file does not record it (default resnet50)")
    args = parser.parse_args(argv)
    try:
        state, trunk = export_hub_weights(args.checkpoint, args.output, args.trunk)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    with open(args.output, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    print(f"wrote {args.output}: {trunk} trunk, {len(state)} tensors, sha256 {digest}")
    if trunk == "resnet50":
        print(f"load it with: torch.hub.load('<repo>', 'resnet50_250m', pretrained=True, weights='{args.output}')")
    return 0


if __name__ == "__main__":
    sys.exit(main())
