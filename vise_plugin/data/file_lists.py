"""File lists of ``[relative_path, [labels]]`` entries (the EmotionNet release's pickle format)."""

import io
import pickle
from typing import List, Tuple

from iopath.common.file_io import g_pathmgr

from vise_plugin.errors import InputError

Entries = List[Tuple[str, List[str]]]  # (relative path, label names)


class _ListsOnly(pickle.Unpickler):
    """Unpickles plain lists, tuples, strings and numbers only; anything else is refused, not run."""

    def find_class(self, module, name):
        raise pickle.UnpicklingError(
            f"refusing to load {module}.{name}: a file list holds only lists, strings and numbers"
        )


def read_pickle(path: str) -> Entries:
    try:
        with g_pathmgr.open(path, "rb") as f:
            items = _ListsOnly(io.BytesIO(f.read())).load()
    except (pickle.UnpicklingError, EOFError, ValueError) as e:
        raise InputError(f"{path}: not a [relative_path, [labels]] pickle ({e})") from None
    entries = []
    for i, item in enumerate(items):
        if (
            not isinstance(item, (list, tuple))
            or len(item) != 2
            or not isinstance(item[0], str)
            or not isinstance(item[1], (list, tuple, int, str))
        ):
            raise InputError(f"{path}: entry {i} is {item!r}, expected [relative_path, [labels]]")
        labels = item[1] if isinstance(item[1], (list, tuple)) else [item[1]]
        entries.append((item[0], [str(n) for n in labels]))
    return entries
