"""Writing a ``.npy`` file row block by row block, without knowing its length in advance."""

import io
from typing import Tuple

import numpy as np

HEADER_BYTES = 128


class NpyAppender:
    """Appends ``(n, *row_shape)`` blocks of ``dtype`` to a ``.npy`` file; :meth:`close` writes the header.

    The file is a standard ``.npy`` (format 1.0, header padded to 128 bytes), loadable with
    ``np.load(path, mmap_mode="r")``. Memory use does not depend on the number of rows.
    """

    def __init__(self, path: str, dtype, row_shape: Tuple[int, ...] = ()):
        self.path, self.dtype, self.row_shape = path, np.dtype(dtype), tuple(row_shape)
        self.rows = 0
        self._file = open(path, "wb")
        self._file.write(b"\0" * HEADER_BYTES)

    def append(self, block: np.ndarray) -> None:
        block = np.ascontiguousarray(block, dtype=self.dtype)
        if block.shape[1:] != self.row_shape:
            raise ValueError(f"{self.path}: rows of shape {block.shape[1:]} appended to a file of {self.row_shape}")
        self._file.write(block.tobytes())
        self.rows += block.shape[0]

    def close(self) -> None:
        header = io.BytesIO()
        np.lib.format.write_array_header_1_0(
            header,
            {
                "descr": np.lib.format.dtype_to_descr(self.dtype),
                "fortran_order": False,
                "shape": (self.rows, *self.row_shape),
            },
        )
        if len(header.getvalue()) != HEADER_BYTES:
            raise ValueError(f"{self.path}: unexpected .npy header length {len(header.getvalue())}")
        self._file.seek(0)
        self._file.write(header.getvalue())
        self._file.close()
