"""Decoding on the device (``config.data.decode_on=device``): a decoder that does not work there stops the
run in one line (probed once, before the first batch; or a batch none of whose JPEGs it decodes while the
CPU does), and only images the device refuses fall back to the CPU. On this machine the device is the
CPU; a device the decoder refuses is stood in for by ``meta``."""

import logging
import os
from functools import partial
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torchvision.io
from PIL import Image

from vise_plugin.config import compose_config
from vise_plugin.data import device_decode
from vise_plugin.data.bad_images import collate_readable
from vise_plugin.data.decoded_loader import DeviceDecodedLoader
from vise_plugin.data.device_decode import DeviceDecode, EncodedCrop, collate_encoded, decode_batch
from vise_plugin.data.images import blank_input, load_seeded_image
from vise_plugin.data.jpeg_decoders import jpeg_decoder
from vise_plugin.engine.pretrain import pretrain
from vise_plugin.errors import ConfigError

CPU, META = torch.device("cpu"), torch.device("meta")


def _patch_decoder(monkeypatch, decoder, replacement):
    """Replaces the library function behind ``config.data.jpeg_decoder=decoder`` (what a torchvision
    without nvJPEG or a decoder failing to initialise looks like from here); returns the original."""
    if decoder == "torchvision":
        original = torchvision.io.decode_jpeg
        monkeypatch.setattr(torchvision.io, "decode_jpeg", replacement)
    else:
        import torchcodec.decoders

        original = torchcodec.decoders.decode_jpeg
        monkeypatch.setattr(torchcodec.decoders, "decode_jpeg", replacement)
    return original


@pytest.fixture
def inputs(tmp_path):
    """4 encoded 48 x 64 JPEGs and their boxes, as :func:`collate_encoded` hands them to the device."""
    rng = np.random.default_rng(0)
    items = []
    for i in range(4):
        path = str(tmp_path / f"{i}.jpg")
        Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(path, quality=90)
        items.append(
            {
                "input": {**load_seeded_image(path, EncodedCrop(16), seed=i), "where": f"{i}.jpg"},
                "target": {"x": torch.tensor(i)},
            }
        )
    return collate_encoded(items)["input"]


def _spoil(encoded):
    """A JPEG ``(n,)`` uint8 tensor, in place: its header still reads, its data no longer decodes."""
    scan = bytes(encoded.numpy()).index(b"\xff\xda") + 20
    encoded[scan:] = torch.tensor([0xFF, 0xD8], dtype=torch.uint8).repeat(len(encoded))[: len(encoded) - scan]


@pytest.mark.parametrize("decoder", ["torchvision", "torchcodec"])
def test_a_decoder_that_does_not_work_on_the_device_stops_the_run_in_one_line_before_any_step(
    tiny_world, tmp_path, monkeypatch, decoder
):
    calls = []

    def broken(*args, **kwargs):
        calls.append(args)
        raise RuntimeError("nvjpegCreate failed\nmore detail")

    _patch_decoder(monkeypatch, decoder, broken)
    run_dir = str(tmp_path / "run")
    cfg = compose_config(
        [
            "config=demo/vise_tiny",
            f"config.data.labels={tiny_world['labels']}",
            f"config.run_dir={run_dir}",
            "config.data.decode_on=device",
            f"config.data.jpeg_decoder={decoder}",
        ]
    )
    with pytest.raises(ConfigError) as error:
        pretrain(cfg)
    assert str(error.value) == (
        f"config.data.decode_on=device, config.data.jpeg_decoder={decoder}: the decoder does not decode a "
        "16 x 16 test JPEG on cpu (RuntimeError: nvjpegCreate failed); use config.data.decode_on=loader "
        "(decoding in the data-loader workers) or another config.data.jpeg_decoder"
    )
    assert len(calls) == 1  # the probe, not one try per image
    assert not [f for f in os.listdir(run_dir) if f.startswith("checkpoint") or f.startswith("model_")]


def test_the_probe_names_the_decoder_auto_chose(inputs, monkeypatch):
    monkeypatch.setattr(torchvision.io, "decode_jpeg", lambda *a, **k: [torch.zeros(3, 8, 8, dtype=torch.uint8)])
    with pytest.raises(
        ConfigError,
        match=r"^config.data.decode_on=device, config.data.jpeg_decoder=auto "
        r"\(torchvision\): the decoder decoded a 16 x 16 test JPEG on cpu to "
        r"\(3, 8, 8\) uint8 of mean \(0, 0, 0\) on cpu, not \(200, 100, 50\); use ",
    ):
        DeviceDecode(16, "auto")(inputs, CPU)


@pytest.mark.parametrize("decoder", ["torchvision", "torchcodec"])
def test_the_probe_runs_once_per_device_and_lets_a_working_decoder_through(inputs, monkeypatch, decoder):
    calls = []

    def counted(*args, **kwargs):
        calls.append(args)
        return original(*args, **kwargs)

    original = _patch_decoder(monkeypatch, decoder, counted)
    decode = DeviceDecode(16, decoder)
    first, second = decode(inputs, CPU), decode(inputs, CPU)
    assert len(calls) == 3  # the probe, then one batched call per batch
    assert first.images.shape == (4, 3, 16, 16) and first.unreadable == [] and torch.equal(first.images, second.images)


def test_running_out_of_memory_in_the_probe_stops_the_run_as_out_of_memory(inputs, monkeypatch):
    def out_of_memory(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(torchvision.io, "decode_jpeg", out_of_memory)
    with pytest.raises(torch.OutOfMemoryError, match="CUDA out of memory"):
        DeviceDecode(16, "torchvision")(inputs, CPU)


def _refused_on_meta(refused):
    """A decoder that decodes on the CPU (and hands the images to ``meta``), and refuses on ``meta``
    the JPEGs in ``refused`` (every JPEG, for None), alone or in a batch."""
    cpu = jpeg_decoder("torchvision")

    def decode(encoded, device):
        batch = encoded if isinstance(encoded, list) else [encoded]
        if device.type == "meta" and any(refused is None or any(e is r for r in refused) for e in batch):
            raise RuntimeError("nvJPEG: unsupported")
        images = [image.to(device) for image in cpu(batch, CPU)]
        return images if isinstance(encoded, list) else images[0]

    return decode


def test_a_batch_none_of_whose_jpegs_decode_on_the_device_but_do_on_the_cpu_stops_in_one_line(inputs):
    decode = DeviceDecode(16, "torchvision")
    decode.decode_jpeg = _refused_on_meta(None)
    with pytest.raises(ConfigError) as error:
        decode.decode(inputs["encoded"], META)
    assert str(error.value) == (
        "config.data.decode_on=device, config.data.jpeg_decoder=torchvision: the decoder decoded none of a "
        "batch's 4 JPEGs on meta, of which the CPU decoded 4 (RuntimeError: nvJPEG: unsupported), and no longer "
        "decodes its test JPEG; use config.data.decode_on=loader (decoding in the data-loader workers) or another "
        "config.data.jpeg_decoder"
    )
    _spoil(inputs["encoded"][1])  # one that decodes nowhere does not make the others the data's fault
    with pytest.raises(ConfigError, match=r"none of a batch's 4 JPEGs on meta, of which the CPU decoded 3 "):
        decode.decode(inputs["encoded"], META)


def test_a_batch_of_jpegs_the_device_does_not_take_falls_back_while_its_test_jpeg_still_decodes(inputs, caplog):
    """Every JPEG of a batch refused on the device (say CMYK files nvJPEG does not take) while the decoder
    still decodes its test JPEG there: the data, not the decoder; the batch is decoded on the CPU."""
    decode = DeviceDecode(16, "torchvision")
    decode.decode_jpeg = _refused_on_meta(list(inputs["encoded"]))
    decode._probed.add(META)  # probed at the run's start, on a decoder that decodes it
    decode.probe = lambda device: decode._probed.add(device)  # the test JPEG still decodes on the device
    with caplog.at_level(logging.WARNING, logger=device_decode.__name__):
        images = decode.decode(inputs["encoded"], META)
    assert [image.shape for image in images] == [(3, 48, 64)] * 4
    assert "was decoded on the CPU" in caplog.text


def test_only_the_jpegs_the_device_refuses_fall_back_to_the_cpu_logged_once(inputs, caplog):
    decode = DeviceDecode(16, "torchvision")
    decode.decode_jpeg = _refused_on_meta([inputs["encoded"][2]])
    with caplog.at_level(logging.WARNING, logger=device_decode.__name__):
        for _ in range(3):
            images = decode.decode(inputs["encoded"], META)
            assert [image.shape for image in images] == [(3, 48, 64)] * 4
            assert all(image.device == META for image in images)
    assert [r.getMessage() for r in caplog.records] == [
        "a JPEG that meta could not decode was decoded on the CPU (later ones are not logged)"
    ]


def test_a_batch_of_corrupt_jpegs_is_skipped_and_counted_not_taken_for_a_failing_decoder(inputs):
    for encoded in inputs["encoded"][:3]:
        _spoil(encoded)
    batch = {"input": inputs, "target": {"x": torch.arange(4)}}
    decoded, unreadable = decode_batch(batch, DeviceDecode(16, "torchvision"), CPU)
    assert unreadable == ["0.jpg", "1.jpg", "2.jpg"] and decoded["target"]["x"].tolist() == [3]
    for encoded in inputs["encoded"][3:]:
        _spoil(encoded)
    decoded, unreadable = decode_batch(batch, DeviceDecode(16, "torchvision"), CPU)
    assert unreadable == ["0.jpg", "1.jpg", "2.jpg", "3.jpg"] and "input" not in decoded and "target" not in decoded


class _EncodedBatches(list):
    """Batches as the data loader hands them over when the device decodes, of a dataset with a placeholder item."""

    dataset = SimpleNamespace(
        placeholder_item=lambda: {"input": blank_input(EncodedCrop(16)), "target": {"x": torch.tensor(0)}},
        collate=partial(collate_readable, collate=collate_encoded),
    )


def test_the_decoded_loader_adds_the_images_that_do_not_decode_to_those_the_loader_skipped(inputs):
    _spoil(inputs["encoded"][1])
    loader = _EncodedBatches(
        [
            {"input": inputs, "target": {"x": torch.arange(4)}, "skipped": ["gone.jpg"]},
            {"skipped": ["a.jpg", "b.jpg"]},  # nothing read
        ]
    )
    decoded = DeviceDecodedLoader(loader, DeviceDecode(16, "torchvision"), CPU)
    first, second = list(decoded)
    assert first["input"].shape == (3, 3, 16, 16) and first["input"].dtype == torch.float32
    assert first["target"]["x"].tolist() == [0, 2, 3] and first["skipped"] == ["gone.jpg", "1.jpg"]
    assert second == {"skipped": ["a.jpg", "b.jpg"]}
    placeholder = decoded.placeholder_batch()  # what a rank with nothing read steps on, decoded like the batches
    assert placeholder["input"].shape == (2, 3, 16, 16) and placeholder["input"].dtype == torch.float32
    assert placeholder["target"]["x"].tolist() == [0, 0] and placeholder["skipped"] == []
