"""A pretraining dataset that notes every item the loader asks for in ``<run_dir>/reads.txt`` (lines
``rank item seed``), for tests of which samples a resumed job reads. A job uses it with
``config.imports=[recorded_reads] config.data.dataset=recorded_pretraining_images`` and this folder on
``PYTHONPATH``."""

import os

from vise_plugin.data.pretraining_images import PretrainingDataset
from vise_plugin.registry import register_dataset


@register_dataset("recorded_pretraining_images")
class RecordedPretrainingDataset(PretrainingDataset):
    @classmethod
    def from_config(cls, config):
        dataset = super().from_config(config)
        path = os.path.join(config["run_dir"], "reads.txt")
        images = dataset.dataset
        base = type(images)

        def recorded(self, index):
            item, seed = index if isinstance(index, tuple) else (index, -1)
            with open(path, "a") as f:
                f.write(f"{os.environ.get('RANK', '0')} {item} {seed}\n")
            return base.__getitem__(self, index)

        images.__class__ = type(f"Recorded{base.__name__}", (base,), {"__getitem__": recorded})
        return dataset


def epochs_read(run_dir):
    """``{epoch: [item, ...]}`` from ``reads.txt``: an epoch's items share ``seed - item``, and epochs come
    in the order their first item was read."""
    offsets, epochs = [], {}
    with open(os.path.join(run_dir, "reads.txt")) as f:
        for line in f:
            _, item, seed = (int(v) for v in line.split())
            if seed - item not in offsets:
                offsets.append(seed - item)
            epochs.setdefault(offsets.index(seed - item), []).append(item)
    return epochs
