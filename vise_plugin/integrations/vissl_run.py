"""``python -m vise_plugin.integrations.vissl_run config=vissl/vise_r50_1m config.DATA.TRAIN.DATA_PATHS=[<store>] ...``

VISSL's own distributed launch (the function behind VISSL's ``tools/run_distributed_engines.py``),
with the project registered in VISSL and the VisE configs (``vise_plugin/integrations/vissl_configs``)
on Hydra's search path beside VISSL's. The config is resolved before VISSL reads it, so ``${...}``
interpolations in a config work. VISSL's worker processes import this module again, and so register
the project too.
"""

import os
import sys
from typing import List, Optional

from omegaconf import OmegaConf

from vise_plugin.integrations.vissl import CONFIGS, vise_hook_generator  # importing it registers the project


def vissl_config(overrides: List[str]):
    """``(args, config)`` of VISSL's ``convert_to_attrdict`` for command-line ``overrides``."""
    from vissl.utils.hydra_config import compose_hydra_configuration, convert_to_attrdict

    # VISSL's Hydra plugin puts ./configs first on the search path; a configs/defaults.yaml there (this
    # project's checkout has one) would replace VISSL's defaults, so the config is composed elsewhere.
    here = os.getcwd()
    os.chdir(CONFIGS)
    try:
        cfg = compose_hydra_configuration(list(overrides) + [f"hydra.searchpath=[file://{CONFIGS}]"])
    finally:
        os.chdir(here)
    return convert_to_attrdict(OmegaConf.create(OmegaConf.to_container(cfg, resolve=True)))


def main(argv: Optional[List[str]] = None) -> int:
    from vissl.utils.distributed_launcher import launch_distributed, launch_distributed_on_slurm

    args, config = vissl_config(sys.argv[1:] if argv is None else argv)
    if config.SLURM.USE_SLURM:
        launch_distributed_on_slurm(engine_name=args.engine_name, cfg=config)
    else:
        launch_distributed(
            cfg=config, node_id=args.node_id, engine_name=args.engine_name, hook_generator=vise_hook_generator
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
