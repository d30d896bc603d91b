"""Buffers without the buffer protocol that mpi4py still accepts: DLPack and CUDA-array-interface objects.

mpi4py (asbuffer.pxi) takes, after the buffer protocol, an object's ``__dlpack__`` (a DLPack capsule)
or ``__cuda_array_interface__`` (a dict with the device pointer). granny has no GPU support, so both
must describe host memory: a DLPack device of type kDLCPU, or (as in mpi4py's own test suite, whose
fake GPU arrays are host arrays behind the interface) a pointer the process can read. ``host_array``
wraps that memory, zero-copy, as a 1-D numpy array that keeps the producer (capsule or object) alive.
The capsule is read with ctypes (the DLPack 1.x versioned struct, or the 0.x one for older producers);
``np.from_dlpack`` is not used, since it crashes on capsules such as the suite's.
"""

from __future__ import annotations

import ctypes
import math
from typing import Any, cast

import numpy as np


class _DLDevice(ctypes.Structure):
    _fields_ = [("device_type", ctypes.c_int32), ("device_id", ctypes.c_int32)]


class _DLDataType(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint8), ("bits", ctypes.c_uint8), ("lanes", ctypes.c_uint16)]


class _DLTensor(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("device", _DLDevice), ("ndim", ctypes.c_int32),
                ("dtype", _DLDataType), ("shape", ctypes.POINTER(ctypes.c_int64)),
                ("strides", ctypes.POINTER(ctypes.c_int64)), ("byte_offset", ctypes.c_uint64)]


class _DLManagedTensor(ctypes.Structure):
    _fields_ = [("dl_tensor", _DLTensor), ("manager_ctx", ctypes.c_void_p), ("deleter", ctypes.c_void_p)]


class _DLManagedTensorVersioned(ctypes.Structure):
    _fields_ = [("major", ctypes.c_uint32), ("minor", ctypes.c_uint32), ("manager_ctx", ctypes.c_void_p),
                ("deleter", ctypes.c_void_p), ("flags", ctypes.c_uint64), ("dl_tensor", _DLTensor)]


_capsule_valid = ctypes.pythonapi.PyCapsule_IsValid
_capsule_valid.restype, _capsule_valid.argtypes = ctypes.c_int, [ctypes.py_object, ctypes.c_char_p]
_capsule_pointer = ctypes.pythonapi.PyCapsule_GetPointer
_capsule_pointer.restype, _capsule_pointer.argtypes = ctypes.c_void_p, [ctypes.py_object, ctypes.c_char_p]
_DL_KINDS = {0: "i", 1: "u", 2: "f", 5: "c"}


def _contig(shape: list[int], strides: list[int]) -> bool:
    """C- or Fortran-contiguous, with strides in items."""
    def compact(dims: list[tuple[int, int]]) -> bool:
        step = 1
        for n, s in dims:
            if n > 1 and s != step:
                return False
            step *= n
        return True
    dims = list(zip(shape, strides, strict=True))
    return compact(dims[::-1]) or compact(dims)


def _wrap(addr: int, nbytes: int, dtype: np.dtype[Any], readonly: bool, keep: object) -> np.ndarray:
    if nbytes == 0:
        return np.empty(0, dtype=dtype)
    raw = (ctypes.c_char * nbytes).from_address(addr)
    raw._granny_keep = keep  # type: ignore[attr-defined]  # the memory lives as long as its owner
    arr: np.ndarray = np.frombuffer(cast(Any, raw), dtype=dtype)
    if readonly:
        arr.flags.writeable = False
    return arr


def from_dlpack(obj: Any) -> np.ndarray:
    device_type, _ = obj.__dlpack_device__()
    if device_type != 1:  # kDLCPU
        raise BufferError(f"dlpack: device type {device_type} is not host memory; granny has no GPU support")
    try:
        capsule, name = obj.__dlpack__(max_version=(1, 0), copy=False), b"dltensor_versioned"
    except TypeError:  # a DLPack 0.x producer
        capsule, name = obj.__dlpack__(), b"dltensor"
    if not _capsule_valid(capsule, name):
        raise BufferError("dlpack: invalid capsule object")
    ptr = _capsule_pointer(capsule, name)
    readonly = False
    if name == b"dltensor_versioned":
        managed = _DLManagedTensorVersioned.from_address(ptr)
        tensor, readonly = managed.dl_tensor, bool(managed.flags & 1)
    else:
        tensor = _DLManagedTensor.from_address(ptr).dl_tensor
    shape = [int(tensor.shape[i]) for i in range(tensor.ndim)]
    if tensor.strides and not _contig(shape, [int(tensor.strides[i]) for i in range(tensor.ndim)]):
        raise BufferError("dlpack: buffer is not contiguous")
    code, bits, lanes = tensor.dtype.code, tensor.dtype.bits, tensor.dtype.lanes
    if lanes == 2 and code == 2:
        dtype = np.dtype(f"c{bits // 4}")
    elif lanes == 1 and code == 6 and bits == 8:
        dtype = np.dtype(np.bool_)
    elif lanes == 1 and code in _DL_KINDS:
        dtype = np.dtype(f"{_DL_KINDS[code]}{bits // 8}")
    else:
        dtype = np.dtype(np.uint8)
    nbytes = math.prod(shape) * ((bits * lanes + 7) // 8)
    if nbytes % dtype.itemsize:
        dtype = np.dtype(np.uint8)
    return _wrap((tensor.data or 0) + tensor.byte_offset, nbytes, dtype, readonly, capsule)


def from_cai(obj: Any) -> np.ndarray:
    cai = obj.__cuda_array_interface__
    if cai.get("mask") is not None:
        raise BufferError("__cuda_array_interface__: masked arrays are not supported")
    addr, readonly = cai["data"]
    dtype, shape = np.dtype(cai["typestr"]), [int(n) for n in cai["shape"]]
    strides = cai.get("strides")
    if strides is not None and not _contig(shape, [int(s) // dtype.itemsize for s in strides]):
        raise BufferError("__cuda_array_interface__: buffer is not contiguous")
    return _wrap(addr or 0, math.prod(shape) * dtype.itemsize, dtype, bool(readonly), obj)


def host_array(obj: Any) -> np.ndarray | None:
    """A numpy view of a DLPack / CUDA-array-interface object's memory; None if ``obj`` is neither."""
    if hasattr(obj, "__dlpack__"):
        return from_dlpack(obj)
    if hasattr(obj, "__cuda_array_interface__"):
        return from_cai(obj)
    return None
