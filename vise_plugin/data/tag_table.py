"""Web tags of images (EmotionNet, Wei et al. 2020): a vocabulary and each image's tags.

Inputs:

- a vocabulary file, one tag per line (line ``i`` is tag id ``i``);
- a tag list: the EmotionNet release's pickle ``[[relative_path, [labels]], ...]`` (labels are tag
  ids or tag strings), or JSONL lines ``{"image": "relative/path.jpg", "tags": ["beach", ...]}``.
"""

import json
from typing import Dict, List, Sequence

import numpy as np
import torch
from iopath.common.file_io import g_pathmgr

from vise_plugin.data.file_lists import Entries, read_pickle
from vise_plugin.errors import InputError


def read_vocabulary(path: str) -> List[str]:
    """Tags of a vocabulary file, in id order; a repeated or empty tag names its line."""
    if not g_pathmgr.exists(path):
        raise InputError(f"{path}: tag vocabulary not found")
    with g_pathmgr.open(path, encoding="utf-8") as f:
        tags = [line.strip() for line in f]
    while tags and not tags[-1]:
        tags.pop()
    seen: Dict[str, int] = {}
    for line, tag in enumerate(tags, start=1):
        if not tag or tag in seen:
            raise InputError(f"{path}:{line}: {'an empty tag' if not tag else f'tag {tag!r} repeats line {seen[tag]}'}")
        seen[tag] = line
    if not tags:
        raise InputError(f"{path}: the tag vocabulary is empty")
    return tags


def read_tag_jsonl(path: str) -> Entries:
    entries = []
    with g_pathmgr.open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                image, tags = record["image"], record.get("tags", [])
            except (ValueError, KeyError, TypeError):
                raise InputError(f'{path}:{line_no}: expected {{"image": ..., "tags": [...]}}') from None
            if not isinstance(image, str) or not isinstance(tags, list):
                raise InputError(f"{path}:{line_no}: 'image' must be a string and 'tags' a list")
            entries.append((image, [str(t) for t in tags]))
    return entries


class TagTable:
    """Each image's tag ids, looked up by relative path.

    Args:
        vocabulary: ``K`` tag strings; tag id ``i`` is ``vocabulary[i]``.
        entries: ``(relative path, [tag ids or tag strings])``; ``source`` names them in errors.
    """

    def __init__(self, vocabulary: Sequence[str], entries: Entries, source: str = "tags"):
        self.vocabulary = list(vocabulary)
        self.source = source
        index = {tag: i for i, tag in enumerate(self.vocabulary)}
        self.paths: List[str] = []
        self.tags: List[np.ndarray] = []
        self.row: Dict[str, int] = {}
        for n, (path, labels) in enumerate(entries):
            ids = []
            for label in labels:
                tag_id = int(label) if label.isdigit() and label not in index else index.get(label)
                if tag_id is None or not 0 <= tag_id < len(self.vocabulary):
                    raise InputError(f"{source}: entry {n} ({path}) has tag {label!r}, not in the vocabulary")
                ids.append(tag_id)
            self.row[path] = len(self.paths)
            self.paths.append(path)
            self.tags.append(np.unique(np.asarray(ids, dtype=np.int64)))

    @classmethod
    def read(cls, tag_list: str, vocabulary: str) -> "TagTable":
        """From a ``.pkl`` or ``.jsonl`` tag list and a vocabulary file."""
        if not g_pathmgr.exists(tag_list):
            raise InputError(f"{tag_list}: tag list not found")
        entries = read_pickle(tag_list) if tag_list.endswith(".pkl") else read_tag_jsonl(tag_list)
        if not entries:
            raise InputError(f"{tag_list}: no tagged images")
        return cls(read_vocabulary(vocabulary), entries, tag_list)

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def num_tags(self) -> int:
        return len(self.vocabulary)

    def target(self, path: str) -> torch.Tensor:
        """``(K,)`` float: the image's tags as a distribution (1/n on each of its n tags), all zero
        when it has none or is not in the table (it is then left out of the tag losses)."""
        out = torch.zeros(self.num_tags)
        row = self.row.get(path)
        if row is not None and len(self.tags[row]):
            out[torch.from_numpy(self.tags[row])] = 1.0 / len(self.tags[row])
        return out
