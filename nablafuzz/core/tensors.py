"""Tensor records and the framed wire format shared by orchestrator and worker.

A message is one frame: 4 magic bytes (`NBLA`), an 8-byte big-endian length, then a JSON header
(itself length-prefixed) and the arrays' raw C-order bytes, each length-prefixed.  A frame
without the magic or longer than MAX_FRAME is a protocol error (`ProtocolError`): the reader
stops trusting the stream, and the orchestrator restarts the worker.  The header describes each array as
{"__array__": i, "dtype": "<f8", "shape": [...]}: numpy's dtype strings are identical across
numpy 1.26 and 2.x, and raw buffers avoid npy header parsing, which dominated the cost of
the many small arrays a trial sends (bench/overhead.py: round trip per numpy_ref trial 3.6-5.1 ms
against 4.2-7.2 ms with npy frames).
Only numeric and bool dtypes cross; object arrays are refused, so nothing is ever unpickled.
Worker-safe.
"""
from __future__ import annotations

import functools
import json
import struct
from dataclasses import replace
from typing import Any, BinaryIO, List, Optional, Tuple

import numpy as np

from .model import InputValue, TensorRecord, Trial, Value, records

FLOAT_DTYPES = ("float64", "float32", "float16")
SUBNORMAL_MARGIN = 1024.0  # values within 2^10 of the subnormal range: intermediates fall into it


def near_subnormal(dtype: str) -> float:
    """The magnitude below which a value of `dtype` is subnormal or close enough to be judged so."""
    return SUBNORMAL_MARGIN * float(np.finfo(dtype).tiny) if dtype in FLOAT_DTYPES else 0.0


_LEN = struct.Struct(">Q")
MAGIC = b"NBLA"
HEAD = len(MAGIC) + _LEN.size
MAX_FRAME = 256 << 20  # a trial's messages are kilobytes; anything this large is a corrupt stream


class ProtocolError(ValueError):
    """A frame that is not one of ours: wrong magic, an impossible length, undecodable contents."""


@functools.lru_cache(maxsize=None)
def dtype_name(dtype: np.dtype) -> str:
    """`str(dtype)`, remembered: numpy 2 computes it in Python (15 us), and the worker names an
    array's dtype for every conversion to the library's tensors."""
    return str(dtype)


def to_array(rec: TensorRecord) -> np.ndarray:
    return np.array(rec.values, dtype=rec.dtype).reshape(rec.shape)


def to_record(arr: Any) -> TensorRecord:
    a = np.asarray(arr)
    if a.dtype.kind == "f":  # tolist: Python floats, ints and bools, as float(x) etc. give them
        values = tuple(a.astype(np.float64).ravel().tolist())
    elif a.dtype.kind in "biu":
        values = tuple(a.ravel().tolist())
    else:
        raise TypeError(f"unsupported tensor dtype {a.dtype} (expected float, int or bool)")
    return TensorRecord(dtype_name(a.dtype), tuple(int(d) for d in a.shape), values)


_ATOMS = frozenset((int, float, str, bool, type(None)))  # what JSON takes as it is


def _pack_arrays(obj: Any, arrays: List[np.ndarray]) -> Any:
    if type(obj) in _ATOMS:  # most of a message: checked first, by exact type
        return obj
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind not in "biuf":
            raise TypeError(f"cannot send a {obj.dtype} array (only bool, int and float cross the pipe)")
        arrays.append(obj)
        return {"__array__": len(arrays) - 1, "dtype": obj.dtype.str, "shape": list(obj.shape)}
    if isinstance(obj, dict):
        return {k: _pack_arrays(v, arrays) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [v if type(v) in _ATOMS else _pack_arrays(v, arrays) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def _unpack_arrays(obj: Any, arrays: List[bytes]) -> Any:
    if type(obj) in _ATOMS:  # json.loads gives exact types
        return obj
    if isinstance(obj, dict):
        if "__array__" in obj:
            dtype = np.dtype(obj["dtype"])
            if dtype.kind not in "biuf":
                raise ValueError(f"refusing array of dtype {dtype} from the pipe")
            return np.frombuffer(arrays[obj["__array__"]], dtype=dtype).reshape(obj["shape"]).copy()
        return {k: _unpack_arrays(v, arrays) for k, v in obj.items()}
    if isinstance(obj, list):
        return [v if type(v) in _ATOMS else _unpack_arrays(v, arrays) for v in obj]
    return obj


def encode_message(message: Any) -> bytes:
    arrays: List[np.ndarray] = []
    header = json.dumps(_pack_arrays(message, arrays)).encode()
    parts = [_LEN.pack(len(header)), header]
    for a in arrays:
        data = np.ascontiguousarray(a).tobytes()
        parts += [_LEN.pack(len(data)), data]
    body = b"".join(parts)
    return MAGIC + _LEN.pack(len(body)) + body


def frame_length(head: bytes) -> int:
    """The body length announced by a frame's first HEAD bytes; ProtocolError if they are not ours."""
    if head[:len(MAGIC)] != MAGIC:
        raise ProtocolError(f"frame starts with {head[:len(MAGIC)]!r}, not {MAGIC!r}: not a nablafuzz frame")
    (n,) = _LEN.unpack(head[len(MAGIC):HEAD])
    if n > MAX_FRAME:
        raise ProtocolError(f"frame of {n} bytes exceeds the {MAX_FRAME}-byte limit: corrupt stream")
    return n


def decode_message(body: bytes) -> Any:
    try:
        view = memoryview(body)
        (n,) = _LEN.unpack_from(view, 0)
        header = json.loads(bytes(view[8:8 + n]))
        pos, arrays = 8 + n, []
        while pos < len(body):
            (m,) = _LEN.unpack_from(view, pos)
            arrays.append(bytes(view[pos + 8:pos + 8 + m]))
            pos += 8 + m
        message = _unpack_arrays(header, arrays)
    except (ValueError, TypeError, KeyError, IndexError, struct.error) as exc:
        raise ProtocolError(f"undecodable frame: {type(exc).__name__}: {exc}") from None
    if not isinstance(message, dict):
        raise ProtocolError(f"frame holds a {type(message).__name__}, not a message object")
    return message


def write_message(stream: BinaryIO, *messages: Any) -> None:
    """The messages in one write (Note [answers in batches])."""
    stream.write(b"".join(encode_message(m) for m in messages))
    stream.flush()


def _read_exact(stream: BinaryIO, n: int) -> Optional[bytes]:
    chunks, got = [], 0
    while got < n:
        chunk = stream.read(n - got)
        if not chunk:
            return None
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def read_message(stream: BinaryIO) -> Optional[Any]:
    """The next message, or None at end of stream (the peer has gone)."""
    head = _read_exact(stream, HEAD)
    if head is None:
        return None
    body = _read_exact(stream, frame_length(head))
    return None if body is None else decode_message(body)


def shape_str(shape: Tuple[int, ...]) -> str:
    return "[" + ",".join(str(d) for d in shape) + "]"


def with_dtype(trial: Trial, dtype: str) -> Trial:
    """The same trial with its float tensors cast to `dtype` (values rounded as numpy casts)."""
    def cast(r: TensorRecord) -> TensorRecord:
        return to_record(to_array(r).astype(dtype)) if r.dtype in FLOAT_DTYPES else r

    def convert(v: Value) -> Value:
        if isinstance(v, TensorRecord):
            return cast(v)
        rs = records(v)
        return tuple(cast(r) for r in rs) if rs else v

    inputs = tuple(InputValue(i.name, i.kind, convert(i.value), i.differentiable, i.keyword) for i in trial.inputs)
    return replace(trial, dtype=dtype, inputs=inputs)


def trial_size(trial: Trial) -> int:
    """Total number of tensor elements: what minimisation shrinks."""
    return sum(r.size for i in trial.inputs for r in records(i.value))


def representative_rank(size: int) -> float:
    """How good a report's representative of `size` elements is (lower is better): the
    smallest non-empty trial wins; an all-empty one only when nothing else reproduces."""
    return size if size > 0 else float("inf")


def non_empty(trial: Trial) -> bool:
    """Whether the trial has a non-empty differentiable input (Note [trial validity])."""
    return any(r.size for i in trial.inputs if i.differentiable for r in records(i.value))
