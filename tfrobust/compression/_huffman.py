"""Canonical Huffman coding of non-negative integer symbols into a self-contained byte string.

Huffman coding gives each symbol ``s`` of frequency ``p_s`` a prefix-free code of length ``l_s``
with ``sum_s p_s l_s`` minimal (within one bit of the entropy ``-sum_s p_s log2 p_s``). Only the
code *lengths* are stored; the codes are rebuilt canonically (shorter codes first, then by symbol),
so the table costs one byte per alphabet symbol.

Stream layout (little-endian): ``b"HUF1"``, alphabet size ``u32``, symbol count ``u32``, one
``u8`` code length per alphabet symbol (0 = unused), then the codes packed MSB-first, zero-padded
to a whole byte.

References:
  Huffman, A Method for the Construction of Minimum-Redundancy Codes, Proc. IRE 1952.
  Han et al., Deep Compression, ICLR 2016, https://arxiv.org/abs/1510.00149
"""

from __future__ import annotations

import heapq
import struct

import numpy as np

from tfrobust import _validate as V

__all__ = ["huffman_code_lengths", "huffman_decode", "huffman_encode"]

_MAGIC = b"HUF1"


def huffman_code_lengths(counts) -> np.ndarray:
    """Optimal prefix-code lengths for symbol ``counts`` (zero count -> length 0).

    A single used symbol gets length 1 (a code must have at least one bit to be counted).
    """
    counts = np.asarray(counts, dtype=np.int64)
    if counts.ndim != 1 or (counts < 0).any():
        raise ValueError(f"`counts` must be a 1-D array of non-negative ints. Received: counts={counts!r}")
    lengths = np.zeros(len(counts), dtype=np.int64)
    used = np.flatnonzero(counts)
    if len(used) == 1:
        lengths[used[0]] = 1
        return lengths
    # heap items: (count, tie-break id, symbols in the subtree)
    heap = [(int(counts[s]), int(s), [int(s)]) for s in used]
    heapq.heapify(heap)
    next_id = len(counts)
    while len(heap) > 1:
        c1, _, s1 = heapq.heappop(heap)
        c2, _, s2 = heapq.heappop(heap)
        for s in s1 + s2:
            lengths[s] += 1
        heapq.heappush(heap, (c1 + c2, next_id, s1 + s2))
        next_id += 1
    return lengths


def _canonical_codes(lengths):
    """Canonical code values: sort by (length, symbol), count up, shift at each new length."""
    order = sorted((int(n), s) for s, n in enumerate(lengths) if n > 0)
    codes = np.zeros(len(lengths), dtype=np.int64)
    code, prev = 0, order[0][0] if order else 0
    for i, (n, s) in enumerate(order):
        if i:
            code = (code + 1) << (n - prev)
        codes[s] = code
        prev = n
    return codes


def huffman_encode(symbols, alphabet_size: int | None = None) -> bytes:
    """Encode integer ``symbols`` in ``[0, alphabet_size)`` into a self-contained byte string."""
    symbols = np.asarray(symbols)
    if symbols.ndim != 1 or (symbols.size and not np.issubdtype(symbols.dtype, np.integer)):
        raise TypeError(f"`symbols` must be a 1-D integer array. Received: symbols dtype={symbols.dtype}, "
                        f"ndim={symbols.ndim}")
    symbols = symbols.astype(np.int64)
    if alphabet_size is None:
        alphabet_size = int(symbols.max()) + 1 if symbols.size else 1
    alphabet_size = V.integer("alphabet_size", alphabet_size, minimum=1, maximum=2**32 - 1)
    if symbols.size and (symbols.min() < 0 or symbols.max() >= alphabet_size):
        raise ValueError(f"`symbols` must lie in [0, alphabet_size). Received: min={symbols.min()}, "
                         f"max={symbols.max()}, alphabet_size={alphabet_size}")
    counts = np.bincount(symbols, minlength=alphabet_size)
    lengths = huffman_code_lengths(counts)
    if lengths.max(initial=0) > 255:
        raise ValueError(f"a code length exceeds 255 bits. Received: max length={lengths.max()}")
    codes = _canonical_codes(lengths)
    table = [format(int(c), f"0{int(n)}b") if n else "" for c, n in zip(codes, lengths)]
    bits = "".join(table[s] for s in symbols.tolist())
    pad = (-len(bits)) % 8
    bits += "0" * pad
    payload = int(bits, 2).to_bytes(len(bits) // 8, "big") if bits else b""
    header = _MAGIC + struct.pack("<II", alphabet_size, symbols.size) + lengths.astype(np.uint8).tobytes()
    return header + payload


def huffman_decode(data: bytes) -> np.ndarray:
    """Decode a string made by :func:`huffman_encode` back into the exact int64 symbols."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"`data` must be bytes. Received: data of type {type(data).__name__}")
    data = bytes(data)
    if data[:4] != _MAGIC or len(data) < 12:
        raise ValueError("`data` is not a tfrobust Huffman stream (bad magic). "
                         f"Received: data[:4]={data[:4]!r}")
    alphabet_size, count = struct.unpack_from("<II", data, 4)
    start = 12 + alphabet_size
    if len(data) < start:
        raise ValueError(f"`data` is truncated (code-length table). Received: len(data)={len(data)}")
    lengths = np.frombuffer(data, dtype=np.uint8, count=alphabet_size, offset=12).astype(np.int64)
    if count == 0:
        return np.zeros(0, dtype=np.int64)
    codes = _canonical_codes(lengths)
    lookup = {(int(n), int(c)): s for s, (c, n) in enumerate(zip(codes, lengths)) if n}
    max_len = int(lengths.max())
    payload = data[start:]
    bits = bin(int.from_bytes(payload, "big"))[2:].zfill(8 * len(payload)) if payload else ""
    out = np.empty(count, dtype=np.int64)
    pos = 0
    for i in range(count):
        code = 0
        for n in range(1, max_len + 1):
            if pos >= len(bits):
                raise ValueError(f"`data` is truncated: ran out of bits at symbol {i} of {count}. "
                                 f"Received: len(data)={len(data)}")
            code = (code << 1) | (bits[pos] == "1")
            pos += 1
            s = lookup.get((n, code))
            if s is not None:
                out[i] = s
                break
        else:
            raise ValueError(f"`data` is corrupt: no code matches at symbol {i}. "
                             f"Received: len(data)={len(data)}")
    return out
