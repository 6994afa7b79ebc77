"""Tar shards: written bit for bit and resumably, read indexed (exact resume) or streamed, bad samples
skipped and counted, ranks reading disjoint samples, and JPEGs decoded on the training device."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from conftest import ROOT, torchrun_command
from hooks import StopAfter, bad_images
from PIL import Image

from vise_plugin.config import compose_config
from vise_plugin.data import EngagementLabels, StreamingShards, TarShards
from vise_plugin.data.shard_writer import run_shard_job
from vise_plugin.engine.pretrain import pretrain
from vise_plugin.errors import ConfigError
from vise_plugin.io_utils import file_sha256
from vise_plugin.labels import LabelStore

PER_EPOCH = (90 + 7) // 8


def _write(labels, output, workers=1):
    return run_shard_job(
        compose_config(
            [
                "config=demo/vise_tiny",
                f"config.data.labels={labels}",
                f"config.shards.output={output}",
                "config.shards.shard_bytes=20000",
                f"config.shards.num_workers={workers}",
            ]
        ).config
    )


@pytest.fixture(scope="module")
def shards(tiny_world, tmp_path_factory):
    folder = str(tmp_path_factory.mktemp("shards") / "shards")
    _write(tiny_world["labels"], folder)
    return folder


def _cfg(shards, run_dir, *extra):
    return compose_config(
        [
            "config=demo/vise_tiny",
            "config.data.sources=[tar_shards]",
            f"config.data.shards={shards}",
            f"config.run_dir={run_dir}",
            *extra,
        ]
    )


def test_shards_hold_each_image_file_and_its_targets_bit_for_bit(tiny_world, shards):
    store = LabelStore(tiny_world["labels"])
    source, reference = TarShards(shards), EngagementLabels(store, store.meta["image_root"])
    manifest = json.load(open(os.path.join(shards, "manifest.json")))
    assert len(source) == manifest["num_samples"] == len(store) == 90 and len(manifest["shards"]) == 12
    for i in range(len(source)):
        data, targets = source.read(i)
        with open(os.path.join(store.meta["image_root"], store.images[i]), "rb") as f:
            assert data == f.read()
        expected = reference.targets_at(i)
        assert torch.equal(targets["comments"], expected["comments"]) and targets["reactions"] == expected["reactions"]
        alone = source.targets_at(i)  # read from the sample's .json member alone
        assert torch.equal(alone["comments"], expected["comments"]) and alone["reactions"] == expected["reactions"]
        assert source.path(i) == store.images[i]
    for entry in manifest["shards"]:
        assert file_sha256(os.path.join(shards, entry["name"] + ".tar")) == entry["sha256"]
    import webdataset as wds  # the reference reader sees the same samples

    urls = [os.path.join(shards, e["name"] + ".tar") for e in manifest["shards"]]
    samples = list(wds.DataPipeline(wds.SimpleShardList(urls), wds.tarfile_to_samples()))
    assert [int(s["__key__"]) for s in samples] == list(range(90)) and samples[5]["jpg"] == source.read(5)[0]


def test_a_rerun_writes_only_the_missing_shards_and_the_same_bytes(tiny_world, shards, tmp_path):
    folder = str(tmp_path / "shards")
    shutil.copytree(shards, folder)
    for name in ("shard-000003.tar", "shard-000003.idx.npy", "shard-000003.json", "manifest.json"):
        os.remove(os.path.join(folder, name))
    os.remove(os.path.join(folder, "shard-000005.tar"))  # its summary stays
    with open(os.path.join(folder, "shard-000007.tar"), "r+b") as f:
        f.truncate(5000)
    redo = {f"shard-00000{k}.tar" for k in (3, 5, 7)}
    before = {n: os.path.getmtime(os.path.join(folder, n)) for n in os.listdir(folder) if n.endswith(".tar")}
    _write(tiny_world["labels"], folder, workers=2)
    for name in redo:
        assert file_sha256(os.path.join(folder, name)) == file_sha256(os.path.join(shards, name))
    assert all(os.path.getmtime(os.path.join(folder, n)) == t for n, t in before.items() if n not in redo)
    assert (
        json.load(open(os.path.join(folder, "manifest.json")))["shards"]
        == json.load(open(os.path.join(shards, "manifest.json")))["shards"]
    )


def test_an_unreadable_plan_manifest_shard_or_description_is_named_in_one_line(tiny_world, shards, tmp_path):
    from vise_plugin.data.tar_shards import FORMAT
    from vise_plugin.errors import InputError

    folder = str(tmp_path / "copy")
    shutil.copytree(shards, folder)
    os.remove(os.path.join(folder, "shard-000004.tar"))
    source = TarShards(folder)
    with pytest.raises(InputError, match=rf"^{folder}/shard-000004.tar: cannot be opened$"):
        source.read(int(source.starts[4]))
    json_offset = int(np.load(os.path.join(folder, "shard-000005.idx.npy"))[0, 3])
    with open(os.path.join(folder, "shard-000005.tar"), "r+b") as f:  # a description without its comments
        f.seek(json_offset)
        description = f.read(200)
        f.seek(json_offset + description.index(b'"comments"'))
        f.write(b'"commentz"')
    with pytest.raises(InputError, match=rf"^{folder}/shard-000005.tar#\d{{9}}: unreadable sample description"):
        source.read(int(source.starts[5]))

    with open(os.path.join(folder, "plan.json"), "w") as f:
        f.write('{"label_store": ')
    with pytest.raises(ConfigError, match=rf"^{folder}/plan.json: unreadable"):
        _write(tiny_world["labels"], folder)
    manifest = os.path.join(folder, "manifest.json")
    with open(manifest, "w") as f:
        f.write('{"format": "vise-shards/1", "shards": [')
    with pytest.raises(InputError, match=rf"^{manifest}: not readable as JSON"):
        TarShards(folder)
    with open(manifest, "w") as f:
        json.dump({"format": FORMAT, "shards": []}, f)
    with pytest.raises(InputError, match=rf"^{manifest}: no 'tasks' entry"):
        StreamingShards(folder, 8, lambda image: image)


def _weights(run_dir):
    return torch.load(os.path.join(run_dir, "checkpoint.torch"), weights_only=True)["model"]


def _same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.resume
def test_a_sigkill_mid_epoch_and_a_resume_from_shards_end_with_the_same_weights(shards, tmp_path):
    reference = str(tmp_path / "reference")
    pretrain(_cfg(shards, reference, "config.optimizer.num_epochs=2"))
    run_dir = str(tmp_path / "run")
    cmd = [
        sys.executable,
        os.path.join(ROOT, "tools", "run.py"),
        "config=demo/vise_tiny",
        "config.data.sources=[tar_shards]",
        f"config.data.shards={shards}",
        f"config.run_dir={run_dir}",
        "config.checkpoint.period_iterations=4",
        "config.data.num_workers=2",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        path = os.path.join(run_dir, "stdout.json")
        if os.path.exists(path) and sum(1 for _ in open(path)) >= PER_EPOCH + 6:  # past the checkpoint at 16
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    saved = torch.load(os.path.join(run_dir, "checkpoint.torch"), weights_only=True)["position"]
    assert 0 < saved["iteration"] < 2 * PER_EPOCH and saved["epoch"] == 1 and saved["batch_in_epoch"] > 0
    resumed = pretrain(_cfg(shards, run_dir, "config.checkpoint.period_iterations=4", "config.data.num_workers=2"))
    assert resumed.iteration == 2 * PER_EPOCH and _same(_weights(run_dir), _weights(reference))


@pytest.mark.resume
def test_streaming_resumes_mid_epoch_to_the_same_weights(shards, tmp_path):
    from vise_plugin.engine.pretrain import build_trainer

    stream = [
        "config.data.dataset=streaming_shards",
        "config.data.num_workers=2",
        "config.checkpoint.period_iterations=3",
    ]
    reference = str(tmp_path / "reference")
    pretrain(_cfg(shards, reference, *stream))
    run_dir = str(tmp_path / "run")
    os.makedirs(run_dir)
    trainer = build_trainer(_cfg(shards, run_dir, *stream))
    trainer.hooks.append(StopAfter(len(trainer.sampler) + 2))
    with pytest.raises(KeyboardInterrupt):
        trainer.train()
    saved = torch.load(os.path.join(run_dir, "checkpoint.torch"), weights_only=True)["position"]
    assert (saved["epoch"], saved["batch_in_epoch"]) == (1, 1)  # odd: the data-loader's worker 0 makes batch 1 now
    with pytest.raises(ConfigError, match=r"^config.data.num_workers: .* set config.data.num_workers=2$"):
        pretrain(
            _cfg(shards, run_dir, *stream, "config.data.num_workers=0")
        )  # its workers' shares of the batches would differ
    resumed = pretrain(_cfg(shards, run_dir, *stream))
    assert resumed.iteration == 2 * len(resumed.sampler)
    assert bad_images(resumed).seen == 2 * len(resumed.sampler) * 8  # the count went on from the checkpoint's
    assert _same(_weights(run_dir), _weights(reference))


def _damaged_copy(shards, tmp_path, how):
    folder = str(tmp_path / "damaged")
    shutil.copytree(shards, folder)
    index = np.load(os.path.join(folder, "shard-000002.idx.npy"))
    tar = os.path.join(folder, "shard-000002.tar")
    if how == "corrupt":  # the first sample's JPEG header reads, its data does not; the offsets unchanged
        with open(tar, "r+b") as f:
            f.seek(int(index[0, 1]))
            jpeg = f.read(int(index[0, 2]))
            scan = jpeg.index(b"\xff\xda")
            scan += 2 + int.from_bytes(jpeg[scan + 2 : scan + 4], "big")
            f.seek(int(index[0, 1]) + scan)
            f.write(b"\xff\xd8" * ((len(jpeg) - scan) // 2))
    else:  # cut in the middle of the fourth sample
        with open(tar, "r+b") as f:
            f.truncate(int(index[3, 1]) + 10)
    return folder, int(index[0, 0])


@pytest.mark.parametrize(
    "decode_on, decoder", [("loader", "auto"), ("device", "torchvision"), ("device", "torchcodec")]
)
def test_a_corrupt_jpeg_inside_a_shard_is_skipped_and_counted(shards, tmp_path, decode_on, decoder):
    folder, key = _damaged_copy(shards, tmp_path, "corrupt")
    run_dir = str(tmp_path / "run")
    trainer = pretrain(
        _cfg(
            folder,
            run_dir,
            "config.optimizer.num_epochs=1",
            f"config.data.decode_on={decode_on}",
            f"config.data.jpeg_decoder={decoder}",
        )
    )
    assert trainer.iteration == PER_EPOCH and (bad_images(trainer).skipped, bad_images(trainer).seen) == (1, 90)
    with open(os.path.join(run_dir, "log.txt")) as f:
        assert f"skipped unreadable image {folder}/shard-000002.tar#{key:09d}" in f.read()


def test_an_unknown_decode_on_fails_in_one_line_before_any_work_for_both_readers(shards):
    from vise_plugin.data.streaming import StreamingShardsDataset
    from vise_plugin.engine.pretrain import require_inputs

    with pytest.raises(ConfigError, match=r"^config.data.decode_on='gpu': use loader or device$"):
        require_inputs(_cfg(shards, "unused", "config.data.decode_on=gpu").config)
    with pytest.raises(ConfigError, match=r"^config.data.decode_on='gpu'"):
        StreamingShardsDataset(shards, 8, 32, decode_on="gpu")


@pytest.mark.parametrize("reader", ["indexed", "streamed"])
def test_a_truncated_shard_is_reported_by_name_and_the_run_goes_on(shards, tmp_path, reader):
    folder, _ = _damaged_copy(shards, tmp_path, "truncate")
    run_dir = str(tmp_path / "run")
    streamed = ["config.data.dataset=streaming_shards", "config.data.num_workers=2"] if reader == "streamed" else []
    trainer = pretrain(
        _cfg(
            folder,
            run_dir,
            "config.optimizer.num_epochs=1",
            "config.data.max_bad_image_fraction=0.1",
            "config.data.batch_size_per_gpu=10",
            *streamed,
        )
    )  # 9 batches of 10: every sample read
    assert trainer.iteration == 9
    assert (bad_images(trainer).skipped, bad_images(trainer).seen) == (5, 90)  # samples 3..7 of shard 2
    with open(os.path.join(run_dir, "log.txt")) as f:
        log = f.read()
    said = "truncated shard" if reader == "indexed" else "unreadable after sample 3 (unexpected end of data)"
    assert f"{folder}/shard-000002.tar: {said}" in log and "its remaining samples are skipped" in log


def test_two_ranks_read_disjoint_samples_that_cover_the_epoch_once(shards):
    from vise_plugin.data.resumable_sampler import ResumableBatchSampler as Sampler

    source = TarShards(shards)
    for epoch in (0, 1):
        seen = []
        for rank in (0, 1):
            sampler = Sampler(len(source), 8, rank, 2, seed=0, groups=source.groups)
            sampler.set_epoch(epoch)
            seen.append([item for batch in sampler for item, _ in batch])
        assert not set(seen[0]) & set(seen[1]) and sorted(seen[0] + seen[1]) == list(range(90))
        shard_of = [source.locate(i)[0] for i in seen[0]]
        assert sum(a != b for a, b in zip(shard_of, shard_of[1:])) <= 2 * len(source.groups)  # grouped by shard


def test_a_worker_reads_ranges_of_the_shards_in_order_entering_a_local_shard_with_one_seek(shards, monkeypatch):
    import webdataset as wds

    from vise_plugin.data.streaming import ShardRange, shard_ranges

    assert shard_ranges([3, 0, 2], [2, 1, 0], 0, 5) == [ShardRange(2, 0, 2, 0), ShardRange(0, 0, 3, 2)]
    assert shard_ranges([3, 0, 2], [2, 1, 0], 4, 4) == [
        ShardRange(0, 2, 3, 4),
        ShardRange(2, 0, 2, 5),
        ShardRange(0, 0, 1, 7),
    ]  # round again
    stream = StreamingShards(shards, 9, lambda image: image)
    at = stream._open_at(2, 3)
    assert at is not None and at.tell() > 0
    at.close()
    row = int(np.load(os.path.join(shards, "shard-000002.idx.npy"))[3, 0])
    with monkeypatch.context() as patch:
        patch.setattr(wds, "gopen", None)  # not opened from its start
        assert int(next(stream._shard_samples(2, 3))["__key__"]) == row
    with pytest.raises(ConfigError, match=r"^url_prefix='s4://bucket': WebDataset opens no s4: URLs"):
        StreamingShards(shards, 9, lambda image: image, url_prefix="s4://bucket")
    draw = StreamingShards(shards, 9, lambda image: torch.rand(1), seed=2**62)._item  # seeds past torch's range
    sample = next(stream._shard_samples(2, 3))
    assert not torch.equal(draw(sample, 10**6)["input"], draw(sample, 10**6 + 1)["input"])
    remote = StreamingShards(shards, 9, lambda image: image, url_prefix=f"pipe:cat {shards}")  # read, not seeked
    assert int(next(remote._shard_samples(2, 3))["__key__"]) == row


def test_two_gloo_ranks_train_on_disjoint_samples_that_cover_the_epoch_once_with_either_reader(shards, tmp_path):
    cmd = torchrun_command(os.path.join(ROOT, "tests", "shard_ranks.py"), shards, str(tmp_path))
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    for reader in ("indexed", "streamed"):
        rows = [json.load(open(tmp_path / f"{reader}_rank{rank}.json")) for rank in (0, 1)]
        assert len(rows[0]) == len(rows[1]) == 45, reader
        assert not set(rows[0]) & set(rows[1]) and sorted(rows[0] + rows[1]) == list(range(90)), reader
        saved = torch.load(tmp_path / reader / "checkpoint.torch", weights_only=True)["bad_images"]
        assert saved == {"seen": 90, "skipped": 0}, reader  # both ranks' counts, not the first's alone


def _streamed(shards, rank, epoch, start_batch=0, workers=2):
    """``[[(row, the item's first random draw), ...] per batch]`` of one rank of 2, batches of 9, read
    through a DataLoader with ``workers`` workers."""
    stream = StreamingShards(
        shards,
        9,
        lambda image: {"encoded": torch.rand(1)},
        rank,
        2,
        buffer=20,
        collate=lambda items: [
            (int(item["input"]["where"].split("#")[1]), float(item["input"]["encoded"])) for item in items
        ],
    )
    stream.set_epoch(epoch, start_batch)
    return list(torch.utils.data.DataLoader(stream, batch_size=None, num_workers=workers))


@pytest.mark.resume
def test_streamed_ranks_and_workers_read_every_sample_once_and_resume_at_any_batch(shards):
    epochs = []
    for epoch in (0, 1):
        ranks = [_streamed(shards, rank, epoch) for rank in (0, 1)]
        assert [len(batches) for batches in ranks] == [5, 5]  # 90 samples = 2 ranks x 5 batches x 9
        rows = [[row for batch in batches for row, _ in batch] for batches in ranks]
        assert not set(rows[0]) & set(rows[1]) and sorted(rows[0] + rows[1]) == list(range(90))
        draws = [draw for batches in ranks for batch in batches for _, draw in batch]
        assert len(set(draws)) == 90  # every item its own augmentation seed, whichever worker read it
        epochs.append(ranks)
        for start in (1, 3):  # worker 0 makes batch `start` of the resumed epoch
            assert _streamed(shards, 1, epoch, start) == ranks[1][start:]
    assert epochs[0][0] != epochs[1][0]


def _spoil(encoded):
    """A JPEG ``(n,)`` uint8 tensor, in place: its header still reads, its data no longer decodes."""
    scan = bytes(encoded.numpy()).index(b"\xff\xda") + 20
    encoded[scan:] = torch.tensor([0xFF, 0xD8], dtype=torch.uint8).repeat(len(encoded))[: len(encoded) - scan]


def test_running_out_of_device_memory_while_decoding_stops_instead_of_decoding_image_by_image(monkeypatch):
    from vise_plugin.data import device_decode

    def out_of_memory(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory")

    decode = device_decode.DeviceDecode(32)
    decode.decode_jpeg = out_of_memory
    with pytest.raises(torch.OutOfMemoryError):
        decode.decode([torch.zeros(100, dtype=torch.uint8)], torch.device("cpu"))


def test_an_unknown_or_missing_jpeg_decoder_fails_in_one_line(shards, monkeypatch):
    from vise_plugin.data import jpeg_decoders
    from vise_plugin.engine.pretrain import require_inputs

    with pytest.raises(
        ConfigError, match=r"^config.data.jpeg_decoder='nvjpeg': use one of auto, torchvision, torchcodec$"
    ):
        require_inputs(_cfg(shards, "unused", "config.data.decode_on=device", "config.data.jpeg_decoder=nvjpeg").config)
    require_inputs(_cfg(shards, "unused", "config.data.jpeg_decoder=nvjpeg").config)  # not used: decoded in the workers
    monkeypatch.setattr(jpeg_decoders.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(
        ConfigError, match=r"^config.data.jpeg_decoder=torchcodec needs TorchCodec: pip install torchcodec"
    ):
        jpeg_decoders.jpeg_decoder("torchcodec")


@pytest.mark.parametrize("decoder", ["torchvision", "torchcodec"])
def test_decoding_on_the_device_crops_what_the_loader_path_crops(tmp_path, decoder):
    from vise_plugin.data.device_decode import DeviceDecode, EncodedCrop, collate_encoded, decode_batch
    from vise_plugin.data.images import load_seeded_image
    from vise_plugin.data.transforms import train_transform

    rng = np.random.default_rng(0)
    paths = []
    for i in range(4):  # smooth photos of different sizes, as JPEG
        y, x = np.mgrid[0 : 300 + 40 * i, 0:400]
        pixels = np.stack([np.sin(x / 37 + i), np.cos(y / 23), np.sin((x + y) / 51)], -1) * 110 + 128
        paths.append(str(tmp_path / f"{i}.jpg"))
        Image.fromarray((pixels + rng.normal(0, 3, pixels.shape)).clip(0, 255).astype(np.uint8)).save(
            paths[-1], quality=95
        )
    loader = torch.stack([load_seeded_image(p, train_transform(64, 0.3), seed=100 + i) for i, p in enumerate(paths)])
    items = [
        {"input": load_seeded_image(p, EncodedCrop(64, 0.3), seed=100 + i), "target": {"x": torch.tensor(i)}}
        for i, p in enumerate(paths)
    ]
    device = DeviceDecode(64, decoder)(collate_encoded(items)["input"], torch.device("cpu")).images
    assert device.shape == loader.shape == (4, 3, 64, 64)
    difference = (device - loader).abs().mean().item()
    correlation = np.corrcoef(device.flatten().numpy(), loader.flatten().numpy())[0, 1]
    assert difference < 0.05 and correlation > 0.99, (difference, correlation)
    other_seed = torch.stack([load_seeded_image(p, train_transform(64, 0.3), seed=7) for p in paths])
    assert (other_seed - loader).abs().mean() > 10 * difference  # the agreement is the seeds', not the images'

    _spoil(items[1]["input"]["encoded"])
    items[1]["input"]["where"] = "photo-1.jpg"
    batch, unreadable = decode_batch(collate_encoded(items), DeviceDecode(64, decoder), torch.device("cpu"))
    assert unreadable == ["photo-1.jpg"] and batch["target"]["x"].tolist() == [0, 2, 3]
    assert torch.equal(batch["input"], device[[0, 2, 3]])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="a GPU check: nvJPEG and CUDA streams")
@pytest.mark.parametrize("decoder", ["torchvision", "torchcodec"])
def test_decoding_on_a_gpu_matches_the_cpu_and_never_overwrites_what_the_step_still_reads(tmp_path, decoder):
    """torchvision's nvJPEG decoder writes into memory without waiting for the stream it came from
    (pytorch/vision#9606): blocks freed while queued kernels still read them must never reach it."""
    from vise_plugin.data.device_decode import DeviceDecode, EncodedCrop, collate_encoded
    from vise_plugin.data.images import load_seeded_image

    rng = np.random.default_rng(0)
    paths = []
    for i in range(8):  # photo-sized JPEGs
        y, x = np.mgrid[0:1080, 0:1440]
        pixels = np.stack([np.sin(x / 37 + i), np.cos(y / 23), np.sin((x + y) / 51)], -1) * 110 + 128
        paths.append(str(tmp_path / f"{i}.jpg"))
        Image.fromarray((pixels + rng.normal(0, 3, pixels.shape)).clip(0, 255).astype(np.uint8)).save(
            paths[-1], quality=90
        )
    items = [
        {"input": load_seeded_image(p, EncodedCrop(224), seed=i), "target": {"x": torch.tensor(i)}}
        for i, p in enumerate(paths)
    ]
    inputs = collate_encoded(items)["input"]
    gpu, decode = torch.device("cuda"), DeviceDecode(224, decoder)
    on_gpu = decode(inputs, gpu, channels_last=True).images
    assert on_gpu.is_contiguous(memory_format=torch.channels_last)
    assert (on_gpu.cpu() - decode(inputs, torch.device("cpu")).images).abs().mean() < 0.05
    spoilt = dict(inputs, encoded=[e.clone() for e in inputs["encoded"]], where=[f"{i}.jpg" for i in range(8)])
    _spoil(spoilt["encoded"][2])
    left = decode(spoilt, gpu)  # nvJPEG must refuse it, not hand back pixels that would be trained on
    assert left.names == ["2.jpg"] and (left.images - on_gpu[[0, 1, 3, 4, 5, 6, 7]]).abs().mean() < 0.01

    def queue_work(matmuls=20):  # tens of ms of kernels on the caller's stream
        work = torch.randn(4096, 4096, device=gpu)
        for _ in range(matmuls):
            work = torch.tanh(work @ work)

    size, corrupted, pending = 3 * 1080 * 1440 // 4, 0, 0  # blocks the size of a decoded photo
    for _ in range(40):
        blocks = [torch.full((size,), 1.0, device=gpu) for _ in range(8)]
        torch.cuda.synchronize()
        queue_work()
        sums = [block.sum() for block in blocks]
        reads_done = torch.cuda.Event()
        reads_done.record()
        del blocks  # freed while the reductions are still queued
        decode(inputs, gpu)
        pending += not reads_done.query()  # the decode came back before the reads had run
        torch.cuda.synchronize()
        corrupted += sum(float(s) != size for s in sums)
    assert corrupted == 0 and pending >= 30, (corrupted, pending)

    images = decode(inputs, gpu).images  # the step's input, freed while the step still reads it
    address = images.data_ptr()
    queue_work(60)
    images.sum()
    step_done = torch.cuda.Event()
    step_done.record()
    del images
    with torch.cuda.stream(decode._side_stream(gpu)):  # every block the next batches could get
        held = [torch.empty(8, 3, 224, 224, device=gpu) for _ in range(128)]
    assert not step_done.query(), "the queued step finished too soon for this check"
    assert address not in {t.data_ptr() for t in held}
    torch.cuda.synchronize()


def _with_manifest(shards, tmp_path, edit):
    """A copy of ``shards`` whose manifest's shard entries are ``edit(entries)``."""
    folder = str(tmp_path / "edited")
    shutil.copytree(shards, folder)
    path = os.path.join(folder, "manifest.json")
    manifest = json.load(open(path))
    manifest["shards"] = edit(manifest["shards"])
    with open(path, "w") as f:
        json.dump(manifest, f)
    return folder


def test_the_indexed_reader_reads_the_shards_its_manifest_lists_and_skips_one_its_index_contradicts(
    tiny_world, shards, tmp_path
):
    from vise_plugin.errors import InputError

    store = LabelStore(tiny_world["labels"])
    folder = _with_manifest(shards, tmp_path, lambda entries: [entries[k] for k in (0, 2, 5)])
    rows = [int(r) for k in (0, 2, 5) for r in np.load(os.path.join(folder, f"shard-00000{k}.idx.npy"))[:, 0]]
    source = TarShards(folder)
    assert len(source) == len(rows)
    for i, row in enumerate(rows):
        with open(os.path.join(store.meta["image_root"], store.images[row]), "rb") as f:
            assert source.read(i)[0] == f.read(), i
        assert source.path(i) == store.images[row] and source.where(i).endswith(f".tar#{row:09d}")

    def one_more(entries):
        entries[2]["samples"] += 1  # shard-000002: the manifest counts a sample its index does not hold
        return entries

    source = TarShards(_with_manifest(shards, tmp_path / "more", one_more))
    folder = source.folder
    for i in range(int(source.starts[2]), int(source.starts[3])):  # none of its samples is trained on
        with pytest.raises(
            InputError,
            match=rf"^{folder}/shard-000002.tar: its index holds \d+ samples, "
            rf"manifest.json lists \d+$",
        ):
            source.read(i)
    assert source.read(int(source.starts[3]))[0] == source.read(int(source.starts[3]))[0]  # the next shard reads


def test_a_worker_reads_exactly_its_samples_so_a_shard_cut_after_them_is_not_reported(shards, tmp_path):
    from vise_plugin.data.streaming import ShardRange

    folder, _ = _damaged_copy(shards, tmp_path, "truncate")  # cut inside shard 2's fourth sample
    rows = np.load(os.path.join(folder, "shard-000002.idx.npy"))[:, 0].tolist()
    for prefix in (None, f"pipe:cat {folder}"):  # entered with a seek, and read from its start
        stream = StreamingShards(folder, 9, lambda image: image, url_prefix=prefix)
        samples = [sample for sample, _ in stream._read([ShardRange(2, 0, 3, 0), ShardRange(2, 1, 3, 3)])]
        assert [int(s["__key__"]) for s in samples] == rows[0:3] + rows[1:3], prefix
        assert all("jpg" in s and "json" in s for s in samples) and stream._reported == set(), prefix


def _flaky_prefix(tmp_path, folder, failures):
    """A ``pipe:`` url_prefix whose first ``failures`` reads stop part-way with exit status 1, as a
    dropped connection would."""
    script, count = tmp_path / "flaky.sh", tmp_path / "reads"
    script.write_text(
        f"n=$(cat {count} 2>/dev/null || echo 0); echo $((n + 1)) > {count}\n"
        f'if [ "$n" -lt {failures} ]; then head -c 12000 "$1"; exit 1; fi\nexec cat "$1"\n'
    )
    return f"pipe:sh {script} {folder}"


def test_a_transient_read_error_is_retried_from_the_same_sample_before_the_rest_is_counted(shards, tmp_path, caplog):
    import logging

    from vise_plugin.data.streaming import ShardRange, StreamingShardsDataset

    def read(**settings):
        stream = StreamingShards(shards, 9, lambda image: image, retry_delay_s=0.001, **settings)
        samples = [(s["__key__"], s.get("jpg")) for s, _ in stream._read([ShardRange(2, 1, stream.counts[2], 0)])]
        return samples, stream._reported

    whole, reported = read()
    assert len(whole) > 4 and all(jpg for _, jpg in whole) and not reported
    assert read(url_prefix=_flaky_prefix(tmp_path, shards, 2), read_attempts=3) == (whole, set())
    os.makedirs(tmp_path / "again")
    with caplog.at_level(logging.WARNING):
        cut, reported = read(url_prefix=_flaky_prefix(tmp_path / "again", shards, 5), read_attempts=2)
    read_whole = sum(jpg is not None for _, jpg in cut)
    assert 0 < read_whole < len(whole) and cut[:read_whole] == whole[:read_whole]
    assert cut[read_whole:] == [(f"sample {1 + k}", None) for k in range(read_whole, len(whole))]  # counted
    assert reported == {f"pipe:sh {tmp_path}/again/flaky.sh {shards}/shard-000002.tar"}
    assert f"shard-000002.tar: unreadable after sample {1 + read_whole} (" in caplog.text and "exit 1" in caplog.text
    dataset = StreamingShardsDataset.from_config(
        {"batchsize_per_replica": 8, "data": {"shards": shards}, "read_attempts": 5, "retry_delay_s": 0.5}
    )
    assert (dataset.dataset.read_attempts, dataset.dataset.retry_delay_s) == (5, 0.5)


def test_a_missing_shard_is_reported_with_the_errors_text_by_both_readers(shards, tmp_path, caplog):
    import logging

    from vise_plugin.data.streaming import ShardRange
    from vise_plugin.errors import InputError

    folder = str(tmp_path / "gone")
    shutil.copytree(shards, folder)
    os.remove(os.path.join(folder, "shard-000002.tar"))
    os.remove(os.path.join(folder, "shard-000004.idx.npy"))
    with caplog.at_level(logging.WARNING):  # a file that is not there is not read again: no retry, no wait
        stream = StreamingShards(folder, 9, lambda image: image, read_attempts=3, retry_delay_s=60)
        assert [s for s, _ in stream._read([ShardRange(2, 0, 2, 0)])] == [
            {"__url__": f"{folder}/shard-000002.tar", "__key__": f"sample {k}"} for k in (0, 1)
        ]
        source = TarShards(folder)
        with pytest.raises(InputError):
            source.read(int(source.starts[4]))
    assert f"{folder}/shard-000002.tar: unreadable after sample 0 (No such file or directory)" in caplog.text
    assert f"{folder}/shard-000004.idx.npy: cannot be read (No such file or directory)" in caplog.text
    assert "read again" not in caplog.text


def _rows_and_draws(stream):
    """``[(row, the item's first random draw), ...]`` of every batch of one epoch of ``stream``, read in
    this process."""
    stream.collate = lambda items: [
        (int(item["input"]["where"].split("#")[1]), float(item["input"]["encoded"])) for item in items
    ]
    return [pair for batch in stream for pair in batch]


def test_a_file_url_prefix_streams_what_the_folder_gives_and_a_remote_folder_is_checked_up_front(shards, monkeypatch):
    from vise_plugin.data import streaming

    def draw(image):
        return {"encoded": torch.rand(1)}

    assert _rows_and_draws(StreamingShards(shards, 9, draw, url_prefix=f"file://{shards}")) == _rows_and_draws(
        StreamingShards(shards, 9, draw)
    )
    manifest = streaming.read_manifest(shards)
    monkeypatch.setattr(streaming, "read_manifest", lambda folder: manifest)  # as if iopath read the folder
    with pytest.raises(ConfigError, match=r"^config.data.shards='s4://bucket/shards': WebDataset opens no s4: URLs"):
        StreamingShards("s4://bucket/shards", 9, draw)
    with pytest.raises(ConfigError, match=r"^config.data.shards='s4://bucket/shards': WebDataset opens no s4: URLs"):
        streaming.StreamingShardsDataset.check_inputs({"data": {"shards": "s4://bucket/shards"}})


def test_a_shard_folder_served_over_http_streams_the_same_samples_and_a_wrong_one_fails_in_one_line(
    shards, tmp_path, monkeypatch
):
    import functools
    import http.server
    import threading

    from iopath.common.file_io import HTTPURLHandler, g_pathmgr

    from vise_plugin.data.streaming import StreamingShardsDataset

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Quiet, directory=os.path.dirname(shards))
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("FVCORE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setitem(g_pathmgr._path_handlers, "http://", HTTPURLHandler())
    try:
        served = f"http://127.0.0.1:{server.server_address[1]}"

        def draw(image):
            return {"encoded": torch.rand(1)}

        assert _rows_and_draws(StreamingShards(f"{served}/{os.path.basename(shards)}", 9, draw)) == _rows_and_draws(
            StreamingShards(shards, 9, draw)
        )
        with pytest.raises(ConfigError, match=rf"^shard manifest not found: {served}/wrong/manifest.json"):
            StreamingShardsDataset.check_inputs({"data": {"shards": f"{served}/wrong"}})
    finally:
        server.shutdown()
        server.server_close()


def test_a_streamed_subset_trains_on_the_samples_of_the_indexed_subset(shards):
    from vise_plugin.engine.pretrain import build_dataset

    subset = ["config.data.subset=36", "config.seed=3"]
    indexed = build_dataset(_cfg(shards, "unused", *subset).config)
    source = TarShards(shards)
    expected = sorted(int(source.where(int(i)).split("#")[1]) for i in indexed.indices)
    assert len(expected) == 36
    streamed = build_dataset(_cfg(shards, "unused", *subset, "config.data.dataset=streaming_shards").config)
    assert streamed.num_items == 36 and len(streamed) == 36 // 8
    rows = [int(s["__key__"]) for s, _ in streamed._read(streamed.share_ranges(0, 1))]
    assert len(rows) == len(set(rows)) == 32 and set(rows) <= set(expected)
    ranks = [
        StreamingShards(shards, 9, lambda image: {"encoded": torch.rand(1)}, rank, 2, seed=3, subset=36)
        for rank in (0, 1)
    ]
    assert sorted(row for stream in ranks for row, _ in _rows_and_draws(stream)) == expected  # 2 ranks x 2 x 9


def test_the_shards_targets_of_an_image_path_normalise_the_path_and_name_an_unknown_one(shards, tiny_world):
    """As a source matched onto another's images, the shards find an image by its normalised path and
    never give empty targets for a path they do not hold."""
    from vise_plugin.errors import InputError

    source = TarShards(shards)
    store = LabelStore(tiny_world["labels"])
    row = 7
    expected = EngagementLabels(store, "").targets_at(row)
    for path in (store.images[row], "./" + store.images[row], store.images[row].replace("/", "//")):
        got = source.targets_for(path)
        assert all(torch.equal(got[k], expected[k]) for k in expected), path
    with pytest.raises(InputError, match=r"^elsewhere/not_a_post\.jpg: not an image of "):
        source.targets_for("elsewhere/not_a_post.jpg")
    assert source.lists("./" + store.images[row]) and not source.lists("elsewhere/not_a_post.jpg")
