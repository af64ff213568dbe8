"""JSON encoding of the model's dataclasses, defined once.

Non-finite floats become {"float": "nan" | "inf" | "-inf"} (strict JSON has no literal for
them, and a bare string would be confused with a string argument such as ord="inf"); finite
floats keep Python's round-trip repr, so records are exact.  `canonical` is the
byte form hashed for identities.  Worker-safe: standard library only.
"""
from __future__ import annotations

import dataclasses
import enum
import functools
import hashlib
import json
import math
import reprlib
import typing
from typing import Any, Dict, Union

from . import model

_NONFINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


def encode_float(x: float) -> Union[float, Dict[str, str]]:
    if math.isnan(x):
        return {"float": "nan"}
    if math.isinf(x):
        return {"float": "inf" if x > 0 else "-inf"}
    return x


def decode_float(x: Any) -> float:
    if isinstance(x, dict) and set(x) == {"float"}:
        x = x["float"]
    if isinstance(x, str):
        try:
            return _NONFINITE[x]
        except KeyError:
            raise ValueError(f"not a float: {_short(x)} (expected a number, 'nan', 'inf' or '-inf')") from None
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        raise ValueError(f"not a float: {_short(x)}")
    try:
        return float(x)
    except OverflowError:  # an int of hundreds of digits
        raise ValueError(f"not a float: an integer of {x.bit_length()} bits is out of range") from None


_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = 80


def _short(x: Any) -> str:
    """A value for an error message, bounded: a file may hold a huge or deeply nested one."""
    return _REPR.repr(x)


_PLAIN = frozenset((int, str, bool, type(None)))


def to_json(obj: Any, omit_defaults: bool = False) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_json(getattr(obj, f.name), omit_defaults) for f in dataclasses.fields(obj)
                if not (omit_defaults and f.default is not dataclasses.MISSING and getattr(obj, f.name) == f.default)}
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, (tuple, list)):  # a tensor's values: plain numbers, encoded without recursing
        return [x if type(x) in _PLAIN else encode_float(x) if type(x) is float else to_json(x, omit_defaults)
                for x in obj]
    if isinstance(obj, bool) or obj is None or isinstance(obj, (int, str)):
        return obj
    if isinstance(obj, float):
        return encode_float(obj)
    if isinstance(obj, dict):
        return {str(k): to_json(v, omit_defaults) for k, v in obj.items()}
    item = getattr(obj, "item", None)  # numpy scalar
    if item is not None and getattr(obj, "shape", None) == ():
        return to_json(item())
    raise TypeError(f"cannot encode {type(obj).__name__} as JSON")


def canonical(obj: Any) -> bytes:
    """The hashed form: fields still at their default are left out, so adding a defaulted field
    to a dataclass later does not change existing identities."""
    return json.dumps(to_json(obj, omit_defaults=True), sort_keys=True, separators=(",", ":"),
                      allow_nan=False).encode()


def digest(obj: Any, length: int = 16) -> str:
    return hashlib.sha256(canonical(obj)).hexdigest()[:length]


def from_json(tp: Any, data: Any) -> Any:
    """Rebuild a value of annotated type `tp` from `to_json` output; raises ValueError on mismatch."""
    if tp is Any:
        return data
    if dataclasses.is_dataclass(tp):
        return _dataclass_from_json(tp, data)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return _enum_from_json(tp, data)
    origin = typing.get_origin(tp)
    if origin is Union:
        return _union_from_json(typing.get_args(tp), data)
    if origin in (tuple, typing.Tuple):
        return _tuple_from_json(typing.get_args(tp), data)
    if tp is float:
        return decode_float(data)
    if tp in (int, str, bool) and (not isinstance(data, tp) or (tp is int and isinstance(data, bool))):
        raise ValueError(f"expected {tp.__name__}, got {_short(data)}")
    return data


def _enum_from_json(tp: type, data: Any) -> Any:
    if isinstance(data, (str, int, float)):  # a list or object would be named in full by Enum's own error
        try:
            return tp(data)
        except ValueError:
            pass
    raise ValueError(f"expected one of {[m.value for m in tp]}, got {_short(data)}")


@functools.lru_cache(maxsize=None)
def _fields(tp: type):
    """(field name -> type, field names) of a dataclass: get_type_hints evaluates every
    annotation string anew, a third of the time a report takes to read."""
    return typing.get_type_hints(tp, vars(model)), frozenset(f.name for f in dataclasses.fields(tp))


def _dataclass_from_json(tp: type, data: Any) -> Any:
    if not isinstance(data, dict):
        raise ValueError(f"expected an object for {tp.__name__}, got {type(data).__name__}")
    hints, known = _fields(tp)
    unknown = set(data) - known
    if unknown:
        raise ValueError(f"{tp.__name__}: unknown field(s) {sorted(unknown)}")
    kwargs = {}
    for name in known & set(data):
        try:
            kwargs[name] = from_json(hints[name], data[name])
        except (ValueError, TypeError) as e:
            raise ValueError(f"{tp.__name__}.{name}: {e}") from None
    obj = tp(**kwargs)
    check = _CHECKS.get(tp)
    if check is not None:
        check(obj)
    return obj


# ---- checks of a rebuilt value that its field types alone cannot express --------------------
# A report is data anyone can edit: a tensor whose shape does not fit its values, or a dtype
# numpy does not know, must be refused here with a message, not fail later inside numpy.

FLOAT_DTYPES = ("float64", "float32", "float16")  # = tensors.FLOAT_DTYPES (this module avoids numpy)
_INT_RANGES = {f"{s}int{b}": ((0, 2 ** b - 1) if s else (-2 ** (b - 1), 2 ** (b - 1) - 1))
               for s in ("", "u") for b in (8, 16, 32, 64)}
# every dtype `tensors.to_record` writes: float, integer and bool arrays
TENSOR_DTYPES = FLOAT_DTYPES + tuple(_INT_RANGES) + ("bool",)
RANK_MAX = 32  # numpy 1.x's largest rank
DIM_MAX = 2 ** 31 - 1


def _check_tensor(rec: "model.TensorRecord") -> None:
    fix = "fix: restore the values from version control, or delete the report so a campaign re-creates it"
    if rec.dtype not in TENSOR_DTYPES:
        raise ValueError(f"TensorRecord.dtype: unknown dtype {_short(rec.dtype)} (expected one of "
                         f"{list(TENSOR_DTYPES)}; {fix})")
    if len(rec.shape) > RANK_MAX or not all(0 <= d <= DIM_MAX for d in rec.shape):
        raise ValueError(f"TensorRecord.shape: {_short(list(rec.shape))} is not a shape (expected at most "
                         f"{RANK_MAX} dimensions, each between 0 and {DIM_MAX}; {fix})")
    if rec.size != len(rec.values):
        raise ValueError(f"TensorRecord: shape {list(rec.shape)} holds {rec.size} values, but {len(rec.values)} "
                         f"are given ({fix})")
    bad = next((v for v in rec.values if not _fits(rec.dtype, v)), _NONE)
    if bad is not _NONE:
        expected = ("true or false" if rec.dtype == "bool" else "a number" if rec.dtype in FLOAT_DTYPES
                    else "an integer in [{}, {}]".format(*_INT_RANGES[rec.dtype]))
        raise ValueError(f"TensorRecord.values: {_short(bad)} is not a {rec.dtype} value (expected {expected}; "
                         f"{fix})")


_NONE = object()


def _fits(dtype: str, v: Any) -> bool:
    if dtype == "bool":
        return isinstance(v, bool)
    if isinstance(v, bool):
        return False
    if dtype in FLOAT_DTYPES:
        if isinstance(v, float):
            return True
        if not isinstance(v, int):
            return False
        try:
            float(v)
        except OverflowError:  # an int of hundreds of digits
            return False
        return True
    low, high = _INT_RANGES[dtype]
    return isinstance(v, int) and low <= v <= high


def _check_trial(trial: "model.Trial") -> None:
    if trial.dtype not in FLOAT_DTYPES:
        raise ValueError(f"Trial.dtype: {_short(trial.dtype)} is not a float dtype (expected one of "
                         f"{list(FLOAT_DTYPES)}; fix: restore the report from version control, or delete it "
                         "so a campaign re-creates it)")


_CHECKS = {model.TensorRecord: _check_tensor, model.Trial: _check_trial}


def _tuple_from_json(args: tuple, data: Any) -> tuple:
    if not isinstance(data, list):
        raise ValueError(f"expected a list, got {_short(data)}")
    if len(args) == 2 and args[1] is Ellipsis:
        return tuple(from_json(args[0], x) for x in data)
    if len(args) != len(data):
        raise ValueError(f"expected {len(args)} items, got {len(data)}")
    return tuple(from_json(a, x) for a, x in zip(args, data))


def _union_from_json(args: tuple, data: Any) -> Any:
    if data is None and type(None) in args:
        return None
    members = [a for a in args if a is not type(None)]
    if len(members) == 1:
        return from_json(members[0], data)  # Optional[X]
    if isinstance(data, dict) and set(data) == {"float"}:
        return decode_float(data)
    if isinstance(data, dict):
        members = [a for a in args if dataclasses.is_dataclass(a)]
        if not members:
            raise ValueError(f"unexpected object {_short(data)}")
        return from_json(members[0], data)
    if isinstance(data, list):
        if data and isinstance(data[0], dict):
            return tuple(from_json(model.TensorRecord, x) for x in data)
        return tuple(data)
    if isinstance(data, str) and float in args and str not in args and data in _NONFINITE:
        return decode_float(data)  # a tensor value; where str is allowed a string stays a string
    return data
