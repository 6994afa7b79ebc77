"""The shard files one process keeps open for reading samples with a seek and a read."""

import os
from typing import Any, BinaryIO, Dict, Hashable

from vise_plugin.errors import InputError, error_text


class OpenFiles:
    """At most ``limit`` read-only file handles, keyed by shard, opened on first use; a forked
    data-loader worker (or an unpickled copy) opens its own, as handles stay in the process that
    opened them.

    Args:
        limit: open files kept; the one opened first is closed beyond it.
    """

    def __init__(self, limit: int = 16):
        self.limit = limit
        self._files: Dict[Hashable, BinaryIO] = {}
        self._pid = os.getpid()

    def get(self, key: Hashable, path: str, name: str, reported: set) -> BinaryIO:
        """The open handle of ``path`` (the shard ``key``); one that cannot be opened is logged once by
        ``name`` (:func:`report_damaged_shard`) and raised as :class:`InputError`."""
        from vise_plugin.data.tar_shards import report_damaged_shard

        if self._pid != os.getpid():
            self._files, self._pid = {}, os.getpid()
        if key not in self._files:
            if len(self._files) >= self.limit:
                self._files.pop(next(iter(self._files))).close()
            try:
                self._files[key] = open(path, "rb")
            except OSError as e:
                report_damaged_shard(reported, name, f"cannot be opened ({error_text(e)})")
                raise InputError(f"{name}: cannot be opened") from None
        return self._files[key]

    def __getstate__(self) -> Dict[str, Any]:
        return {"limit": self.limit, "_files": {}, "_pid": None}
