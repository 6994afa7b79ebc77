"""End-to-end pretraining images/s from tar shards of photo-sized JPEGs: decoded in the data-loader
workers (CPU; shards read through their index, and streamed), decoded on the training device (nvJPEG
on a GPU), and the same trainer on synthetic tensors already on the device (the compute ceiling), in
one run; and the host side of device decoding alone: what one CPU core reads, joins targets to and
hands over as byte batches per second, from the project's tar shards and from img2dataset's output.

    python benchmarks/pipeline_throughput.py                                   # small, any machine
    python benchmarks/pipeline_throughput.py --host-only                       # the host side only (seconds)
    python benchmarks/pipeline_throughput.py --images 2048 --trunk resnet50 --image-size 224 --batch 128 \\
        --precision bf16 --channels-last --compile --workers 16 --steps 60

Generates ``--images`` JPEGs of ``--photo`` pixels (smooth colour fields with grain, about the file
size of a posted photo), a label store and its shards (cached in ``--cache``), then trains the
project's :class:`Trainer` for ``--steps`` steps per setting (device decode through torchvision, and
through TorchCodec when it is installed). Prints each figure, the CPU cores this process may use, and
last ``ratio: <the faster device decode's images/s over the ceiling> (<which>)``.

The host side (``--host-only`` runs only it, and prints ``ratio: not measured``) builds the trainer's
dataset and data loader with ``config.data.decode_on=device`` and no workers, so one process does all
of it: read each sample through its tar's index, join its targets, draw its crop, collate the bytes
into batches (pinned when CUDA is available). The photos are also written as img2dataset's
WebDataset output (:func:`write_img2dataset`). One untimed epoch warms the page cache first, so the
figure is the CPU's cost, not the disk's.
"""

import argparse
import hashlib
import importlib.metadata
import importlib.util
import io
import json
import multiprocessing
import os
import shutil
import sys
import tarfile
import tempfile
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
import torchvision
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from train_throughput import ClockHook, StepClock, add_step_arguments  # noqa: E402

from vise_plugin.config import compose_config  # noqa: E402
from vise_plugin.data.resumable_sampler import ResumableBatchSampler  # noqa: E402
from vise_plugin.data.shard_writer import run_shard_job  # noqa: E402
from vise_plugin.engine.pretrain import build_dataset, build_loader, build_trainer  # noqa: E402
from vise_plugin.labels import LabelStore, write_label_store  # noqa: E402

KC, KR = 1000, 16
#: samples per tar, img2dataset's default ``--number_sample_per_shard``
IMG2DATASET_PER_TAR = 10_000
#: the shortest timed stretch of the host side, in CPU seconds (whole epochs)
HOST_SECONDS = 2.0
#: samples/s one core must hand over so that a node's cores do not hold its GPU below GPU_GOAL images/s
HOST_GOAL, GPU_GOAL = 2000, 3500


def _photo(job) -> None:
    """Photo ``i``: a smooth colour field with grain, drawn from its own seed."""
    path, i, width, height = job
    rng = np.random.default_rng([0, i])
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    a, b, c = rng.uniform(20, 200, 3)
    field = np.stack([np.sin(x / a + i), np.cos(y / b), np.sin((x + y) / c)], -1) * 100 + 128
    pixels = (field + 12 * rng.standard_normal(field.shape, dtype=np.float32)).clip(0, 255).astype(np.uint8)
    Image.fromarray(pixels).save(path, quality=90)


def make_photos(folder: str, count: int, width: int, height: int) -> str:
    """``count`` JPEGs (written on every core this process may use) and a label store over them
    (random targets); returns the store folder."""
    store = os.path.join(folder, "labels")
    if os.path.exists(os.path.join(store, "meta.json")):
        return store
    os.makedirs(os.path.join(folder, "images"), exist_ok=True)
    images = [f"images/{i:06d}.jpg" for i in range(count)]
    with multiprocessing.get_context("fork").Pool(cpu_cores()) as pool:
        pool.map(_photo, [(os.path.join(folder, name), i, width, height) for i, name in enumerate(images)], chunksize=4)
    rng = np.random.default_rng(0)
    pairs = [np.array([[int(rng.integers(KC)), 1]]) for _ in range(count)]
    write_label_store(
        store,
        [f"p{i}" for i in range(count)],
        images,
        pairs,
        rng.integers(0, KR, count),
        {"tasks": {"comments": {"k": KC}, "reactions": {"k": KR}}, "image_root": folder},
    )
    return store


def _add_member(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    """``data`` as the regular file ``name`` of ``archive``."""
    info = tarfile.TarInfo(name)
    info.size, info.mtime = len(data), int(time.time())
    archive.addfile(info, io.BytesIO(data))


def _img2dataset_shard(store: LabelStore, folder: str, shard: int, rows: range) -> None:
    """Store ``rows`` as img2dataset's shard ``shard``: its tar, parquet table and stats."""
    records = []
    with tarfile.open(os.path.join(folder, f"{shard:05d}.tar"), "w") as archive:
        for n, row in enumerate(rows):
            path = os.path.join(store.meta["image_root"], store.images[row])
            with open(path, "rb") as f:
                data = f.read()
            with Image.open(path) as image:
                width, height = image.size
            key = f"{shard:05d}{n:04d}"
            record = {
                "url": f"https://example.com/{store.images[row]}",
                "key": key,
                "status": "success",
                "error_message": None,
                "width": width,
                "height": height,
                "original_width": width,
                "original_height": height,
                "exif": "{}",
                "sha256": hashlib.sha256(data).hexdigest(),
                "post_id": store.ids[row],
            }
            _add_member(archive, f"{key}.jpg", data)
            _add_member(archive, f"{key}.json", json.dumps(record).encode())
            records.append(record)
    pq.write_table(pa.Table.from_pylist(records), os.path.join(folder, f"{shard:05d}.parquet"))
    with open(os.path.join(folder, f"{shard:05d}_stats.json"), "w") as f:
        json.dump(
            {
                "count": len(records),
                "successes": len(records),
                "failed_to_download": 0,
                "failed_to_resize": 0,
                "status_dict": {"success": len(records)},
            },
            f,
        )


def write_img2dataset(store_folder: str, folder: str, per_tar: int = IMG2DATASET_PER_TAR) -> str:
    """The label store's photos, unresized, in ``folder`` as img2dataset writes them (``--output_format
    webdataset --save_additional_columns '["post_id"]'``): ``00000.tar``, ``00001.tar``, ... of adjacent
    ``<key>.jpg`` and ``<key>.json`` members, each beside ``NNNNN.parquet`` and ``NNNNN_stats.json``.
    Written once (through a temporary folder); returns ``folder``."""
    if os.path.isdir(folder):
        return folder
    store = LabelStore(store_folder)
    partial = folder + ".partial"
    shutil.rmtree(partial, ignore_errors=True)
    os.makedirs(partial)
    for shard, start in enumerate(range(0, len(store), per_tar)):
        _img2dataset_shard(store, partial, shard, range(start, min(start + per_tar, len(store))))
    os.replace(partial, folder)
    return folder


def cpu_cores() -> int:
    """The CPU cores this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


class DeviceBatches:
    """The ceiling's loader: one synthetic batch already on the device, every step."""

    def __init__(self, batch: dict, steps: int, batch_size: int):
        self.batch = batch
        self.batch_sampler = ResumableBatchSampler(steps * batch_size, batch_size)
        self.dataset = None

    def __iter__(self):
        for _ in range(len(self.batch_sampler)):
            yield self.batch


def run(overrides, args, ceiling: bool = False) -> float:
    trainer = build_trainer(compose_config(["config=demo/vise_tiny", *overrides]))
    steps = args.steps
    if ceiling:
        device = trainer.device
        memory = torch.channels_last if args.channels_last else torch.contiguous_format
        batch = {
            "input": torch.randn(args.batch, 3, args.image_size, args.image_size, device=device).contiguous(
                memory_format=memory
            ),
            "target": {
                "comments": torch.softmax(torch.randn(args.batch, KC, device=device), 1),
                "reactions": torch.randint(0, KR, (args.batch,), device=device),
            },
        }
        trainer.loader = DeviceBatches(batch, steps, args.batch)
        trainer.sampler = trainer.loader.batch_sampler
        trainer.num_epochs = 1
    else:
        trainer.num_epochs = -(-steps // len(trainer.sampler))
    clock = StepClock(trainer.device, args.warmup)
    trainer.hooks = [ClockHook(clock)]
    trainer.train()
    done = clock.stop()
    return done * args.batch / (clock.end - clock.start)


def _read_epoch(loader: torch.utils.data.DataLoader, epoch: int) -> int:
    """Reads every batch of ``epoch``; returns the samples handed over."""
    loader.batch_sampler.set_epoch(epoch)
    samples = 0
    for batch in loader:
        if batch["skipped"]:
            raise RuntimeError(f"unreadable samples: {batch['skipped']}")
        samples += len(batch["input"]["encoded"])
    return samples


def host_side_rate(overrides) -> float:
    """Samples per CPU-second one process hands over, decoding on the device: the trainer's dataset and
    data loader (no workers, one thread; pinned batches when CUDA is available) read whole epochs, after
    one untimed epoch that warms the page cache, the tar handles and their indexes. The process's CPU
    time, not the wall clock, so that other load on the machine does not count."""
    cfg = compose_config(
        ["config=demo/vise_tiny", *overrides, "config.data.decode_on=device", "config.data.num_workers=0"]
    ).config
    loader = build_loader(cfg, build_dataset(cfg), torch.cuda.is_available())
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _read_epoch(loader, 0)
        samples, epoch, start = 0, 1, time.process_time()
        while time.process_time() - start < HOST_SECONDS:
            samples += _read_epoch(loader, epoch)
            epoch += 1
        return samples / (time.process_time() - start)
    finally:
        torch.set_num_threads(threads)


def host_side(common, inputs: dict) -> dict:
    """``{layout: samples/s per core}`` of the host side, from the project's shards and from img2dataset's
    folder joined to the label store."""
    layouts = {
        "tar shards (their index)": ["config.data.sources=[tar_shards]", f"config.data.shards={inputs['shards']}"],
        "img2dataset WebDataset (read in place)": [
            "config.data.sources=[img2dataset]",
            f"config.data.img2dataset={inputs['img2dataset']}",
            f"config.data.labels={inputs['store']}",
        ],
    }
    return {name: host_side_rate(common + overrides) for name, overrides in layouts.items()}


def print_host_side(rates: dict, args) -> None:
    """One line per layout, and one against :data:`HOST_GOAL`."""
    pinned = "pinned" if torch.cuda.is_available() else "not pinned: no CUDA"
    print(
        f"host side of device decode: 1 process, batch {args.batch}, byte batches {pinned}, page cache warmed by "
        f"an untimed epoch (CPU cost, not disk), whole epochs timed by the process's CPU time "
        f"({HOST_SECONDS:g} s or more)"
    )
    for name, rate in rates.items():
        print(f"host side (read + targets + byte batches, no decode), {name}: {rate:,.0f} samples/s per core")
    slowest = min(rates.values())
    verdict = "met" if slowest >= HOST_GOAL else "not met"
    print(
        f"host side goal: at least {HOST_GOAL:,} samples/s per core, so that the CPU cores of one GPU node do not "
        f"hold an H100 below {GPU_GOAL:,} images/s: {verdict} (slowest {slowest:,.0f}/s per core, "
        f"{GPU_GOAL / slowest:.1f} cores per GPU at {GPU_GOAL:,} images/s)"
    )


def prepare_inputs(args) -> dict:
    """The photos and their label store, the project's shards and img2dataset's folder of them (cached):
    ``{"folder", "store", "shards", "img2dataset"}``."""
    width, height = (int(v) for v in args.photo.split("x"))
    folder = os.path.join(args.cache, f"{args.images}_{width}x{height}")
    store = make_photos(folder, args.images, width, height)
    shards = os.path.join(folder, "shards")
    if not os.path.exists(os.path.join(shards, "manifest.json")):
        run_shard_job(
            compose_config(
                [
                    "config=demo/vise_tiny",
                    f"config.data.labels={store}",
                    f"config.shards.output={shards}",
                    "config.shards.num_workers=1",
                ]
            ).config
        )
    return {
        "folder": folder,
        "store": store,
        "shards": shards,
        "img2dataset": write_img2dataset(store, os.path.join(folder, "img2dataset")),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=96)
    parser.add_argument("--photo", default="1440x1080", help="width x height of the generated photos")
    add_step_arguments(parser, batch=16, steps=24, warmup=4, workers=2)
    parser.add_argument("--cache", default=os.path.join(tempfile.gettempdir(), "vise_pipeline_throughput"))
    parser.add_argument(
        "--host-only",
        action="store_true",
        help="only the host side of device decode (read, targets, byte batches; one core)",
    )
    args = parser.parse_args()
    width, height = (int(v) for v in args.photo.split("x"))
    inputs = prepare_inputs(args)
    folder, shards = inputs["folder"], inputs["shards"]
    common = [
        f"config.model.trunk={args.trunk}",
        f"config.data.image_size={args.image_size}",
        f"config.data.batch_size_per_gpu={args.batch}",
        f"config.speed.precision={args.precision}",
        f"config.speed.channels_last={str(args.channels_last).lower()}",
        "config.device=auto",
        f"config.speed.compile={str(args.compile).lower()}",
        "config.data.crop_scale_min=0.08",
        f"config.data.num_workers={args.workers}",
        "config.logging.tensorboard=false",
        "config.data.sources=[tar_shards]",
        f"config.data.shards={shards}",
        f"config.run_dir={os.path.join(folder, 'run')}",
        "config.checkpoint.period_epochs=1000",
        "config.optimizer.lr_reference_batch=null",
        "config.optimizer.lr=0.01",
    ]
    if args.host_only:
        print_host_side(host_side(common, inputs), args)
        print("ratio: not measured")
        return
    if torch.cuda.is_available():
        torch.backends.cudnn.benchmark = True
    settings = {
        "CPU decode (data-loader workers), from shards": (["config.data.decode_on=loader"], False),
        "CPU decode, shards streamed (WebDataset)": (
            ["config.data.decode_on=loader", "config.data.dataset=streaming_shards"],
            False,
        ),
        "device decode, from shards": (["config.data.decode_on=device", "config.data.jpeg_decoder=torchvision"], False),
    }
    if importlib.util.find_spec("torchcodec") is not None:
        settings["device decode (TorchCodec), from shards"] = (
            ["config.data.decode_on=device", "config.data.jpeg_decoder=torchcodec"],
            False,
        )
    settings["synthetic tensors on the device (ceiling)"] = ([], True)
    figures = {}
    for name, (overrides, ceiling) in settings.items():
        try:  # one setting that fails still leaves the others' figures
            figures[name] = run(common + overrides, args, ceiling=ceiling)
        except Exception as e:  # noqa: BLE001
            print(f"{name}: failed: {type(e).__name__}: {e}", file=sys.stderr)
    host = host_side(common, inputs)
    device = (
        torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU (no GPU: device decode runs on the CPU)"
    )
    cores = cpu_cores()
    print(
        f"{args.trunk} at {args.image_size} px, batch {args.batch}, {args.steps} steps ({args.warmup} warm-up), "
        f"{args.precision}{', channels_last' if args.channels_last else ''}{', compiled' if args.compile else ''}, "
        f"{args.images} photos of {width}x{height}, {args.workers} workers, {device}"
    )
    print(f"CPU cores: {cores}")
    codec = importlib.util.find_spec("torchcodec") and importlib.metadata.version("torchcodec")
    print(
        f"torch {torch.__version__}, torchvision {torchvision.__version__}" + (f", torchcodec {codec}" if codec else "")
    )
    for name in settings:
        print(f"{name + ':':52s} " + (f"{figures[name]:9.1f} images/s" if name in figures else "   failed"))
    print_host_side(host, args)
    on_device = {k: v for k, v in figures.items() if k.startswith("device decode")}
    best, ceiling = (
        max(on_device, key=on_device.get, default=None),
        figures.get("synthetic tensors on the device (ceiling)"),
    )
    print(f"ratio: {on_device[best] / ceiling:.2f} ({best})" if best and ceiling else "ratio: not measured")
    if len(figures) < len(settings):
        sys.exit(1)


if __name__ == "__main__":
    main()
