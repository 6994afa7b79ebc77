"""Command-line entry points. Installed as console scripts (``vise-run``, ``vise-labels``,
``vise-shards``, ``vise-extract``, ``vise-export-hub``, ``vise-suite``, ``vise-curves``), reachable as ``python -m
vise_plugin.run`` / ``python -m vise_plugin.generate_labels``, and called by the ``tools/`` scripts of
a checkout; every one of them is the same function."""

import sys
from typing import Callable, List, Optional

from omegaconf import DictConfig

from vise_plugin.config import compose_config
from vise_plugin.errors import UserError
from vise_plugin.launch.preemption import Preempted
from vise_plugin.launch.submitit_launcher import run_engine
from vise_plugin.process_state import keeps_process_state

PREEMPTED_EXIT_CODE = 3


@keeps_process_state
def run_cli(job: Callable[[DictConfig], object], argv: Optional[List[str]] = None) -> int:
    """Composes the config from ``argv`` and runs ``job`` on it.

    A :class:`UserError` prints one line (``error: ...``) and returns 2; ``--debug`` shows the
    traceback instead. A run stopped by the preemption signal returns 3 after its checkpoint is saved.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    try:
        job(compose_config(argv))
    except UserError as e:
        if debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2
    except Preempted as e:
        print(f"stopped: {e}; run the same command again to resume", file=sys.stderr)
        return PREEMPTED_EXIT_CODE
    return 0


def generate_labels(root_cfg: DictConfig) -> object:
    from vise_plugin.engine.run_folder import setup_logging
    from vise_plugin.labels.job.pipeline import run_label_job

    cfg = root_cfg.config.labels
    if not cfg.posts:
        raise UserError("no engagement file: set config.data.posts=<file.jsonl> (or config.labels.posts)")
    if not cfg.output:
        raise UserError("no output folder: set config.data.labels=<label store folder> (or config.labels.output)")
    setup_logging()
    return run_label_job(root_cfg.config)


def main_run(argv: Optional[List[str]] = None) -> int:
    """``vise-run config=<experiment> [config.a.b=v ...] [+config.x=v ...] [--debug]``: runs ``config.engine``."""
    return run_cli(run_engine, argv)


def main_generate_labels(argv: Optional[List[str]] = None) -> int:
    """``vise-labels config=<experiment> [config.data.posts=...] [--debug]``: the label job."""
    return run_cli(generate_labels, argv)


def write_shards(root_cfg: DictConfig) -> object:
    from vise_plugin.data.shard_writer import run_shard_job
    from vise_plugin.engine.run_folder import setup_logging

    setup_logging()
    return run_shard_job(root_cfg.config)


def main_write_shards(argv: Optional[List[str]] = None) -> int:
    """``vise-shards config=<experiment> config.data.labels=<store> config.shards.output=<folder>``: tar shards."""
    return run_cli(write_shards, argv)


def main_extract_features(argv: Optional[List[str]] = None) -> int:
    """``vise-extract config=benchmark/extract_r50 config.model.weights=<file> config.extract.images=<...>
    config.extract.output=<folder> [config.extract.layer=res4] [config.extract.pool=none]``."""
    from vise_plugin.evaluation.extract import extract_job

    return run_cli(extract_job, argv)


@keeps_process_state
def main_benchmark_suite(argv: Optional[List[str]] = None) -> int:
    """``vise-suite config.model.weights=<file> [benchmarks=a,b] [output=...] [watch=<run folder>] [...]``."""
    from vise_plugin.evaluation.suite import run_suite

    return run_suite(sys.argv[1:] if argv is None else argv)


@keeps_process_state
def main_export_hub(argv: Optional[List[str]] = None) -> int:
    """``vise-export-hub <checkpoint> <output.pth|output.safetensors> [--trunk NAME] [--format
    hub|vissl|torchvision|timm]``: the trunk in the official hub format, or the layout ``--format`` names; a
    ``.safetensors`` output is a safetensors file."""
    import argparse

    from vise_plugin.io_utils import file_sha256
    from vise_plugin.models import export_hub_weights
    from vise_plugin.models.weights import EXPORT_FORMATS

    parser = argparse.ArgumentParser(
        description="Writes the trunk of a checkpoint (ours, VISSL's, hub, torchvision or timm, a torch or "
        ".safetensors file) in the official VisE torch.hub format (the state dict of resnet50's "
        "children[:-2]), as a VISSL checkpoint with --format vissl, or in the keys of torchvision's and "
        "timm's ResNets with --format torchvision / timm (the same file). An output named *.safetensors is "
        "a safetensors file (any format but vissl), anything else a torch.save file."
    )
    parser.add_argument("checkpoint")
    parser.add_argument("output", help="*.safetensors: a safetensors file; else a torch.save file")
    parser.add_argument("--trunk", default=None, help="trunk name when the file does not record it (default resnet50)")
    parser.add_argument(
        "--format",
        default="hub",
        choices=EXPORT_FORMATS,
        help="hub: the official torch.hub state dict (keys 0.weight, 4.0.conv1.weight, ...); "
        "vissl: a file for VISSL's MODEL.WEIGHTS_INIT.PARAMS_FILE; "
        "torchvision / timm: keys conv1.weight, layer1.0.conv1.weight, ... and a zero 1000-class fc, "
        "for torchvision's resnet50().load_state_dict and timm.create_model('resnet50', pretrained=True, "
        "pretrained_cfg_overlay={'file': OUTPUT}) (num_classes=0 leaves fc out)",
    )
    args = parser.parse_args(argv)
    try:
        state, trunk = export_hub_weights(args.checkpoint, args.output, args.trunk, args.format)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {args.output}: {trunk} trunk, {len(state)} tensors, sha256 {file_sha256(args.output)}")
    if args.format == "vissl":
        print(f"load it in VISSL with: config.MODEL.WEIGHTS_INIT.PARAMS_FILE={args.output}")
    elif args.format == "timm":
        print(
            f"load it with: timm.create_model('{trunk}', pretrained=True, pretrained_cfg_overlay={{'file': "
            f"'{args.output}'}}, num_classes=0)  (num_classes=0: features; the file's 1000-class fc is zeros)"
        )
    elif args.format == "torchvision":
        print(f"load it with: <torchvision's {trunk}>.load_state_dict(<its state dict>)  (its 1000-class fc is zeros)")
    elif trunk == "resnet50":
        print(f"load it with: torch.hub.load('<repo>', 'resnet50_250m', pretrained=True, weights='{args.output}')")
    return 0


@keeps_process_state
def main_plot_curves(argv: Optional[List[str]] = None) -> int:
    """``vise-curves <run folder> [<run folder> ...] [--labels a b] [--output curves.png]``."""
    import argparse

    from vise_plugin.engine.training_curves import plot_training_curves

    parser = argparse.ArgumentParser(description="Training curves of one or more pretraining run folders on one chart.")
    parser.add_argument("run_dirs", nargs="+", help="run folders holding stdout.json")
    parser.add_argument("--labels", nargs="*", default=[], help="one name per run (default: the folder names)")
    parser.add_argument("--output", default="training_curves.png")
    args = parser.parse_args(argv)
    try:
        print(plot_training_curves(args.run_dirs, args.output, args.labels))
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0
