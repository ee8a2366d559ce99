"""Read a .tflite flatbuffer: operators in execution order, tensors, constant buffers."""

from __future__ import annotations

import dataclasses

import numpy as np

_NP_TYPES = {
    "FLOAT32": np.float32, "FLOAT16": np.float16, "FLOAT64": np.float64, "INT8": np.int8,
    "UINT8": np.uint8, "INT16": np.int16, "UINT16": np.uint16, "INT32": np.int32,
    "UINT32": np.uint32, "INT64": np.int64, "UINT64": np.uint64, "BOOL": np.bool_,
}


def _enum_names(enum_cls) -> dict[int, str]:
    return {v: k for k, v in vars(enum_cls).items() if not k.startswith("_") and isinstance(v, int)}


@dataclasses.dataclass(frozen=True)
class TensorInfo:
    """One tensor of the main subgraph."""

    index: int
    name: str
    dtype: str  # TFLite type name, e.g. "INT8"
    shape: tuple[int, ...]
    constant: bool
    nbytes: int  # bytes of its constant buffer (0 for activations)
    scales: tuple[float, ...]
    zero_points: tuple[int, ...]
    quantized_dimension: int
    sparsity: float | None  # fraction of stored values that represent 0.0 (constants only)


@dataclasses.dataclass(frozen=True)
class OpInfo:
    """One operator of the main subgraph, in execution order."""

    index: int
    name: str  # builtin name ("CONV_2D") or the custom code
    custom: bool
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]


def read_model(model_bytes: bytes):
    """Parse ``model_bytes`` into the mutable flatbuffer object API (``ModelT``)."""
    from ai_edge_litert.tools import flatbuffer_utils

    return flatbuffer_utils.read_model_from_bytearray(bytearray(model_bytes))


def write_model(model_obj) -> bytes:
    """Serialize a ``ModelT`` back to bytes."""
    from ai_edge_litert.tools import flatbuffer_utils

    return bytes(flatbuffer_utils.convert_object_to_bytearray(model_obj))


def opcode_name(opcode) -> tuple[str, bool]:
    """``(name, is_custom)`` of an ``OperatorCodeT``."""
    from ai_edge_litert import schema_py_generated as schema

    code = max(opcode.builtinCode, opcode.deprecatedBuiltinCode)
    if code == schema.BuiltinOperator.CUSTOM:
        custom = opcode.customCode
        return (custom.decode() if isinstance(custom, bytes) else str(custom)), True
    return _enum_names(schema.BuiltinOperator).get(code, f"BUILTIN_{code}"), False


def _decode(name) -> str:
    return name.decode("utf-8", "replace") if isinstance(name, bytes) else str(name or "")


def _sparsity(data: np.ndarray, dtype: str, shape, zero_points, qdim) -> float | None:
    np_type = _NP_TYPES.get(dtype)
    if np_type is None or data.size == 0:
        return None
    values = np.frombuffer(data.tobytes(), dtype=np_type)
    if int(np.prod(shape)) != values.size:
        return None  # packed (e.g. INT4) or otherwise encoded buffers
    values = values.reshape(shape)
    zp = np.asarray(zero_points if zero_points else [0], dtype=np.int64)
    if zp.size > 1 and values.ndim > qdim:
        bshape = [1] * values.ndim
        bshape[qdim] = zp.size
        zp = zp.reshape(bshape)
    elif zp.size > 1:
        return None
    return float(np.mean(values.astype(np.int64 if np.issubdtype(np_type, np.integer) else np.float64)
                         == (zp if np.issubdtype(np_type, np.integer) else 0)))


def inspect_model(model_bytes: bytes) -> tuple[list[OpInfo], list[TensorInfo]]:
    """Operators (execution order) and tensors of the main subgraph of ``model_bytes``."""
    from ai_edge_litert import schema_py_generated as schema

    m = read_model(model_bytes)
    types = _enum_names(schema.TensorType)
    graph = m.subgraphs[0]
    tensors = []
    for i, t in enumerate(graph.tensors):
        data = None
        if t.buffer is not None and 0 < t.buffer < len(m.buffers):
            data = m.buffers[t.buffer].data
        constant = data is not None and len(data) > 0
        q = t.quantization
        scales = tuple(float(s) for s in (q.scale if q is not None and q.scale is not None else []))
        zps = tuple(int(z) for z in (q.zeroPoint if q is not None and q.zeroPoint is not None else []))
        qdim = int(q.quantizedDimension) if q is not None else 0
        shape = tuple(int(d) for d in (t.shape if t.shape is not None else []))
        dtype = types.get(t.type, str(t.type))
        arr = np.asarray(data, dtype=np.uint8) if constant else None
        tensors.append(TensorInfo(
            index=i, name=_decode(t.name), dtype=dtype, shape=shape, constant=constant,
            nbytes=int(arr.size) if constant else 0, scales=scales, zero_points=zps,
            quantized_dimension=qdim,
            sparsity=_sparsity(arr, dtype, shape, zps, qdim) if constant else None,
        ))
    ops = []
    for i, op in enumerate(graph.operators):
        name, custom = opcode_name(m.operatorCodes[op.opcodeIndex])
        ops.append(OpInfo(index=i, name=name, custom=custom,
                          inputs=tuple(int(v) for v in (op.inputs or [])),
                          outputs=tuple(int(v) for v in (op.outputs or []))))
    return ops, tensors
