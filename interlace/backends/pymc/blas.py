"""BLAS routines callable from numba code, for the compiled dense kernel.

scipy exports its Fortran-convention BLAS and LAPACK as C function pointers
(``scipy.linalg.cython_blas`` / ``cython_lapack``, ``__pyx_capi__`` capsules). Each routine used
here is registered with LLVM's symbol table under a fixed name (``interlace_dgemm`` …) when this
module is imported, and the numba intrinsics below emit a call to that *name*: the compiled code
holds no address, so it can be cached on disk (``cache=True``) and a later process links the
cached code to that process's addresses. Compiling a call costs almost nothing, where the same
operation costs numba a tenth of a second or more as loops, and about a second through its
``np.dot``/``np.linalg`` implementations.

Every argument is passed by address (Fortran convention): characters and integers as given,
arrays as (array, offset of the first element in the flattened array). The matrices are
column-major to BLAS: a C-ordered (row-major) array with row length ``ld`` is seen as its
transpose with leading dimension ``ld``; the callers in :mod:`.kernels_dense` say which
product each call forms.
"""

from __future__ import annotations

import ctypes

from llvmlite import binding as llvm
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic
from scipy.linalg import cython_blas

__all__ = ["dgemm", "dsyrk", "L", "N", "T"]

L, N, T = 76, 78, 84  # 'L', 'N', 'T' as BLAS reads them (the first character)

_GET_NAME = ctypes.PYFUNCTYPE(ctypes.c_char_p, ctypes.py_object)(("PyCapsule_GetName", ctypes.pythonapi))
_GET_POINTER = ctypes.PYFUNCTYPE(ctypes.c_void_p, ctypes.py_object, ctypes.c_char_p)(
    ("PyCapsule_GetPointer", ctypes.pythonapi))


def _address(module, name: str) -> int:
    """The C address of a routine exported by scipy's cython BLAS/LAPACK module."""
    capsule = module.__pyx_capi__[name]
    return _GET_POINTER(capsule, _GET_NAME(capsule))


for _name in ("dgemm", "dsyrk"):
    llvm.add_symbol(f"interlace_{_name}", _address(cython_blas, _name))

_I8, _I32, _F64 = ir.IntType(8), ir.IntType(32), ir.DoubleType()
_VOIDP = _I8.as_pointer()
_SCALARS = {"c": (types.uint8, _I8), "i": (types.int32, _I32), "d": (types.float64, _F64)}


def _codegen(symbol: str, spec: str):
    """Lowering of a call to ``symbol``; ``spec`` has one letter per Fortran argument: c (char),
    i (int), d (double), a (array: two numba arguments, the array and an element offset)."""

    def codegen(context, builder, sig, args):
        ptrs, k = [], 0
        for kind in spec:
            if kind == "a":
                ary = context.make_array(sig.args[k])(context, builder, args[k])
                off = context.cast(builder, args[k + 1], sig.args[k + 1], types.intp)
                ptrs.append(builder.bitcast(builder.gep(ary.data, [off]), _VOIDP))
                k += 2
            else:
                nty, lty = _SCALARS[kind]
                slot = cgutils.alloca_once(builder, lty)
                builder.store(context.cast(builder, args[k], sig.args[k], nty), slot)
                ptrs.append(builder.bitcast(slot, _VOIDP))
                k += 1
        fnty = ir.FunctionType(ir.VoidType(), [_VOIDP] * len(ptrs))
        builder.call(cgutils.get_or_insert_function(builder.module, fnty, symbol), ptrs)
        return context.get_dummy_value()

    return codegen


def _check(args, spec: str) -> None:
    """Refuse at typing time anything but float64 arrays where the spec has arrays."""
    k = 0
    for kind in spec:
        if kind == "a":
            if not (isinstance(args[k], types.Array) and args[k].dtype == types.float64):
                raise TypeError(f"expected a float64 array, got {args[k]}")
            k += 2
        else:
            k += 1


def _typed(symbol: str, spec: str, ret, args):
    _check(args, spec)
    return ret(*args), _codegen(symbol, spec)


@intrinsic
def dgemm(typingctx, transa, transb, m, n, k, alpha, a, ia, lda, b, ib, ldb, beta, c, ic, ldc):
    """C ← α op(A) op(B) + βC (column-major, C m × n)."""
    args = (transa, transb, m, n, k, alpha, a, ia, lda, b, ib, ldb, beta, c, ic, ldc)
    return _typed("interlace_dgemm", "cciiidaiaidai", types.none, args)


@intrinsic
def dsyrk(typingctx, uplo, trans, n, k, alpha, a, ia, lda, beta, c, ic, ldc):
    """C ← α AA' + βC (trans N) or α A'A + βC (trans T) on the ``uplo`` triangle of C (n × n)."""
    args = (uplo, trans, n, k, alpha, a, ia, lda, beta, c, ic, ldc)
    return _typed("interlace_dsyrk", "cciidaidai", types.none, args)
