"""Read a .tflite flatbuffer: operators in execution order, tensors, constant buffers, and the
per-layer kernel figures (bytes, sparsity, distinct values) of the file as deployed -- TFLite
Micro LUT-compressed kernels included (decoded here from their indices and value tables)."""

from __future__ import annotations

import dataclasses

import numpy as np

from tfrobust.tflite_tools._names import layer_from_name

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
    if zp.size > 1 and values.ndim > qdim and values.shape[qdim] == zp.size:
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


# Operators whose input 1 is a weight kernel (TRANSPOSE_CONV: input 0 is the output shape).
KERNEL_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV", "CONV_3D")
DECODE_OP = "TFLM_DECODE"  # TFLite Micro's DECODE custom op (compressed tensors)
_DCM_BYTES = 16  # DECODE common metadata header that opens every ancillary tensor
_LUT_DECODE_TYPE = 0
_LUT_PER_TENSOR_AXIS = 0xF


def quantization_prefix_free(layer: str) -> str:
    """``"quant_conv1"`` -> ``"conv1"``: TF-MOT's QAT wrappers prefix the layer names they wrap."""
    return "/".join(c[len("quant_"):] if c.startswith("quant_") else c for c in layer.split("/"))


@dataclasses.dataclass(frozen=True)
class KernelInfo:
    """The weight kernel of one layer as stored in a .tflite (see :func:`kernel_stats`)."""

    layer: str  # Keras layer ("quant_" prefix of QAT wrappers dropped), or the tensor name
    op: str  # CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED, ...
    tensor: str
    index: int  # tensor index in the main subgraph (the decoded tensor when LUT-compressed)
    dtype: str
    shape: tuple[int, ...]
    nbytes: int  # bytes in the file: the kernel, or its indices + value tables when LUT-compressed
    sparsity: float | None  # fraction of values that represent 0.0
    unique_values: int  # distinct stored values in the whole kernel
    max_unique_per_channel: int  # most distinct values in one slice along the quantized dimension
    lut_bits: int | None  # index width when LUT-compressed for TFLite Micro, else None

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "shape": list(self.shape)}


def _buffer(m, tensor) -> np.ndarray | None:
    if tensor.buffer is None or not 0 < tensor.buffer < len(m.buffers):
        return None
    data = m.buffers[tensor.buffer].data
    return None if data is None or len(data) == 0 else np.asarray(data, dtype=np.uint8)


def decode_lut(encoded: np.ndarray, ancillary: np.ndarray, shape, dtype: str) -> tuple[np.ndarray, int]:
    """Decode a TFLite Micro LUT-compressed tensor: ``(values, index_bits)``.

    Layout (tflite-micro ``compression/lut.py``): the ancillary tensor opens with a 16-byte DECODE
    header (byte 0 decode type, 0 = LUT; byte 5 = channel axis << 4 | index bits, axis 15 = one
    table; byte 6 = table stride), then the value tables; the indices are packed big-endian,
    ``index_bits`` each, in C order.
    """
    anc = np.asarray(ancillary, dtype=np.uint8)
    if anc.size < _DCM_BYTES or anc[0] != _LUT_DECODE_TYPE:
        raise ValueError(f"not a LUT-compressed tensor (decode type {int(anc[0]) if anc.size else None}). "
                         "Received: ancillary data of another DECODE type")
    axis, bits, stride = int(anc[5]) >> 4, int(anc[5]) & 0x7, int(anc[6])
    np_type = np.dtype(_NP_TYPES[dtype])
    tables = np.frombuffer(anc[_DCM_BYTES:].tobytes(), dtype=np_type).reshape(-1, stride)
    n = int(np.prod(shape))
    bitstream = np.unpackbits(np.asarray(encoded, dtype=np.uint8))[: n * bits].reshape(n, bits)
    indices = (bitstream.astype(np.int64) << np.arange(bits - 1, -1, -1)).sum(axis=1).reshape(shape)
    if axis == _LUT_PER_TENSOR_AXIS:
        return tables[0][indices], bits
    channel = np.arange(shape[axis]).reshape([-1 if d == axis else 1 for d in range(len(shape))])
    return tables[np.broadcast_to(channel, shape), indices], bits


def kernel_stats(model_bytes: bytes) -> list[KernelInfo]:
    """Per-layer weight kernels of a .tflite, read from the file as deployed (execution order).

    This is the figure to report for a shipped model: QAT, conversion and LUT compression all
    change what the Keras model says (plain QAT regrows pruned weights; per-channel int8 maps one
    shared float value to a different int8 value in each channel). Sparsity counts stored values
    equal to the zero point; LUT-compressed kernels (TFLite Micro ``TFLM_DECODE``) are decoded
    first, and their ``nbytes`` are what the file stores (indices + value tables).

    Args:
      model_bytes: the .tflite flatbuffer.

    Returns:
      One :class:`KernelInfo` per constant kernel of a convolution / fully connected operator.

    Example:
      >>> [(k.layer, round(k.sparsity, 3), k.unique_values) for k in kernel_stats(data)]  # doctest: +SKIP
      [('conv1', 0.5, 98), ('fc1', 0.5, 211), ('logits', 0.5, 87)]
    """
    from ai_edge_litert import schema_py_generated as schema

    m = read_model(model_bytes)
    types = _enum_names(schema.TensorType)
    graph = m.subgraphs[0]
    producers = {}
    for op in graph.operators:
        for t in op.outputs if op.outputs is not None else []:
            producers[int(t)] = op
    out, seen = [], set()
    for op in graph.operators:
        name, _ = opcode_name(m.operatorCodes[op.opcodeIndex])
        if name not in KERNEL_OPS or op.inputs is None or len(op.inputs) < 2 or op.inputs[1] < 0:
            continue
        index = int(op.inputs[1])
        if index in seen:
            continue
        tensor = graph.tensors[index]
        dtype = types.get(tensor.type, str(tensor.type))
        shape = tuple(int(d) for d in tensor.shape)
        data, bits = _buffer(m, tensor), None
        producer = producers.get(index)
        if data is not None and dtype in _NP_TYPES:
            values = np.frombuffer(data.tobytes(), dtype=_NP_TYPES[dtype])
            if values.size != int(np.prod(shape)):
                continue  # packed (INT4) kernels
            values, nbytes = values.reshape(shape), int(data.size)
        elif producer is not None and opcode_name(m.operatorCodes[producer.opcodeIndex])[0] == DECODE_OP:
            encoded, ancillary = (_buffer(m, graph.tensors[int(i)]) for i in producer.inputs[:2])
            if encoded is None or ancillary is None or ancillary[0] != _LUT_DECODE_TYPE:
                continue
            values, bits = decode_lut(encoded, ancillary, shape, dtype)
            nbytes = int(encoded.size + ancillary.size)
        else:
            continue  # a computed (non-constant) kernel
        seen.add(index)
        q = tensor.quantization
        zps = tuple(int(z) for z in (q.zeroPoint if q is not None and q.zeroPoint is not None else []))
        qdim = int(q.quantizedDimension) if q is not None else 0
        sparsity = _sparsity(np.frombuffer(values.tobytes(), np.uint8), dtype, shape, zps, qdim)
        per_channel = max((len(np.unique(s)) for s in np.moveaxis(values, qdim, 0)), default=0) \
            if values.ndim > qdim else len(np.unique(values))
        tname = _decode(tensor.name)
        out.append(KernelInfo(
            layer=quantization_prefix_free(layer_from_name(tname) or tname), op=name, tensor=tname,
            index=index, dtype=dtype, shape=shape, nbytes=nbytes, sparsity=sparsity,
            unique_values=int(len(np.unique(values))), max_unique_per_channel=int(per_channel),
            lut_bits=bits))
    return out
