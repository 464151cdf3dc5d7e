"""The latent codec's 64 x 16 Laplace tables as a small binary file for the browser decoder
(``dappled/stream/web/field-tables.bin.gz``, read by ``field.js``).

The tables are built with :mod:`dappled.entropy.detmath` float arithmetic; rather than port that
to JavaScript, they are shipped as data. ``tests/test_web_field.py`` checks that the shipped
file decompresses to :func:`table_bytes` (``python -m dappled.codec.field.web_tables`` rewrites it).

Layout (little-endian, then gzip): magic ``DFLT``, version u8 (2), table count u16, then per
table nsym u16 and lo i16, then every table's nsym frequencies (they sum to 2**16), table after
table in table-id order, each frequency as its difference from the one before (the first from
0) modulo 2**16, u16: smooth tables give small differences, which gzip packs to a fifth.
"""


from __future__ import annotations

import gzip
import struct
import sys
from pathlib import Path

import numpy as np

from dappled.entropy.latent import tables
from dappled.fileio import atomic_write_bytes

WEB_FILE = Path(__file__).resolve().parents[2] / "stream" / "web" / "field-tables.bin.gz"
VERSION = 2


def table_bytes() -> bytes:
    """The table file's bytes, from :func:`dappled.entropy.latent.tables`."""
    tb = tables()
    n = len(tb.nsym)
    head = b"DFLT" + struct.pack("<BH", VERSION, n)
    per = np.empty((n, 2), dtype="<i2")
    per[:, 0] = tb.nsym.astype(np.uint16).view(np.int16)
    per[:, 1] = tb.lo
    freqs = []
    for t in range(n):
        c = tb.cdf[tb.start[t] : tb.start[t] + tb.nsym[t] + 1]
        f = np.diff(c)
        if f.min() < 1 or f.max() > 0xFFFF or c[0] != 0 or c[-1] != 1 << 16:
            raise AssertionError(f"table {t} does not fit the file layout")
        freqs.append((np.diff(f, prepend=0) % (1 << 16)).astype("<u2"))
    return head + per.tobytes() + np.concatenate(freqs).tobytes()


def main() -> None:
    """Rewrite the shipped table file."""
    data = gzip.compress(table_bytes(), 9, mtime=0)
    atomic_write_bytes(WEB_FILE, data)
    sys.stdout.write(f"{WEB_FILE}: {len(data)} bytes\n")


if __name__ == "__main__":
    main()
