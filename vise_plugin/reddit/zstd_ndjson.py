"""The Reddit dumps' file format: NDJSON compressed with ``zstd --long=31``.

Pushshift and Arctic Shift monthly files (``RS_2023-01.zst``, ``RC_2023-01.zst``) declare a 2 GiB
window (``2**31``); ``zstandard.ZstdDecompressor()`` refuses them ("Frame requires too much memory for
decoding"), so every reader here allows that window. Files made of several frames (``pzstd``, ``cat``)
are read frame after frame.
"""

import io
import os
from typing import Iterable, Iterator, List, Optional, Tuple, Union

import msgspec
import numpy as np
import zstandard
from iopath.common.file_io import g_pathmgr
from tqdm import tqdm

from vise_plugin.errors import InputError, error_text

MAX_WINDOW_SIZE = 2**31
READ_SIZE = 1 << 20
#: compressed bytes read at a time by :func:`line_blocks`: about 2-20 MB decompressed
LINE_READ_SIZE = 1 << 18


def decompressed_chunks(path: str, read_size: int = READ_SIZE, progress: bool = False) -> Iterator[bytes]:
    """The decompressed bytes of ``path`` in pieces of any length; with ``progress``, a bar over the
    compressed bytes read.

    Raises ``zstandard.ZstdError`` for an empty file, data that is not zstd and a file that ends inside a
    frame (``ZstdDecompressor.stream_reader`` returns a silent end of file there, so frames are decoded here).
    """
    decompressor = zstandard.ZstdDecompressor(max_window_size=MAX_WINDOW_SIZE)
    with g_pathmgr.open(path, "rb") as f, _bar(path, progress) as bar:
        frame = decompressor.decompressobj()
        inside_frame, empty = False, True
        for data in iter(lambda: f.read(read_size), b""):
            bar.update(len(data))
            empty = False
            while data:
                out = frame.decompress(data)
                if out:
                    yield out
                inside_frame = not frame.eof
                if inside_frame:
                    break
                data = frame.unused_data
                frame = decompressor.decompressobj()
        if inside_frame or empty:
            raise zstandard.ZstdError("the file ends inside a frame" if inside_frame else "empty file")


def _bar(path: str, enabled: bool) -> tqdm:
    total = os.path.getsize(path) if enabled and "://" not in path and os.path.isfile(path) else None
    return tqdm(
        total=total, desc=os.path.basename(path), unit="B", unit_scale=True, dynamic_ncols=True, disable=not enabled
    )


class _ChunkStream(io.RawIOBase):
    def __init__(self, chunks: Iterator[bytes]):
        self._chunks, self._pending = chunks, memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while not self._pending:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._pending = memoryview(chunk)
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n

    def close(self) -> None:
        self._chunks.close()
        super().close()


def open_zstd(path: str, read_size: int = READ_SIZE) -> io.BufferedReader:
    """A binary stream of the decompressed bytes of ``path`` (any iopath location); reading it raises
    ``zstandard.ZstdError`` where the data is not zstd or ends inside a frame."""
    return io.BufferedReader(_ChunkStream(decompressed_chunks(path, read_size)), buffer_size=read_size)


def line_blocks(path: str, block_bytes: int = 1 << 24, progress: bool = False) -> Iterator[Tuple[int, bytes]]:
    """``(number of the block's first line, block)``: the decompressed file in blocks of about
    ``block_bytes`` that end at a newline (the last one also without), lines numbered from 1.

    A file that is missing, not zstd or truncated raises :class:`InputError` (``<path>: not a readable
    zstd file (...)``) after the whole lines before the damage are yielded.
    """
    parts: List[bytes] = []
    size, line = 0, 1
    try:
        # small pieces, so that a block is one join of them and nothing more is copied
        for chunk in decompressed_chunks(path, read_size=LINE_READ_SIZE, progress=progress):
            parts.append(chunk)
            size += len(chunk)
            if size >= block_bytes and b"\n" in chunk:
                data, parts = _whole_lines(parts)
                size = len(parts[0])
                for block in _split(data, block_bytes):
                    yield line, block
                    line += _count_lines(block)
    except zstandard.ZstdError as e:
        block, _ = _whole_lines(parts)
        if block:
            yield line, block
        raise InputError(f"{path}: not a readable zstd file ({e})") from None
    except OSError as e:
        raise InputError(f"{path}: cannot read ({error_text(e)})") from None
    if size:
        yield line, b"".join(parts)


def _count_lines(block: bytes, piece: int = 1 << 20) -> int:
    """``block.count(b"\\n")`` in a third of the time, a piece of ``piece`` bytes at a time."""
    data = np.frombuffer(block, np.uint8)
    return sum(int(np.count_nonzero(data[start : start + piece] == 10)) for start in range(0, len(data), piece))


def _split(data: bytes, block_bytes: int) -> Iterator[bytes]:
    """Whole lines in blocks of about ``block_bytes`` (``data`` itself up to twice that)."""
    if len(data) <= 2 * block_bytes:
        yield data
        return
    start = 0
    while start < len(data):
        end = data.rfind(b"\n", start, start + block_bytes) + 1 or data.find(b"\n", start + block_bytes) + 1
        yield data[start:end]
        start = end


def _whole_lines(parts: List[bytes]) -> Tuple[bytes, List[bytes]]:
    """The pieces' whole lines, and the rest as a list of one piece."""
    if not parts:
        return b"", [b""]
    last = parts[-1]
    cut = last.rfind(b"\n") + 1
    if not cut:
        data = b"".join(parts)
        cut = data.rfind(b"\n") + 1
        return data[:cut], [data[cut:]]
    return b"".join(parts[:-1] + [memoryview(last)[:cut]]), [last[cut:]]


def write_zstd_ndjson(
    path: str, objects: Iterable[Union[dict, bytes, str]], level: int = 3, window_log: Optional[int] = 31
) -> int:
    """Writes ``objects`` one a line (a dict as compact JSON, bytes or str as they are: a raw, maybe
    malformed line) compressed like the dumps: long-distance matching, a ``2**window_log`` window
    declared by a frame of unknown content size. Returns the number of lines."""
    params = zstandard.ZstdCompressionParameters.from_level(
        level, window_log=window_log or 0, enable_ldm=bool(window_log)
    )
    encode = msgspec.json.Encoder().encode
    n = 0
    with g_pathmgr.open(path, "wb") as f:
        with zstandard.ZstdCompressor(compression_params=params).stream_writer(f, closefd=False) as writer:
            for obj in objects:
                line = obj.encode() if isinstance(obj, str) else obj if isinstance(obj, bytes) else encode(obj)
                writer.write(line + b"\n")
                n += 1
    return n
