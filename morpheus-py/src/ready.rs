// SPDX-License-Identifier: GPL-2.0-only
//! `ReadyQueue`: asyncio's ready queue with a checkpoint before every
//! callback the loop takes from it.
//!
//! A `collections.deque` subclass built with the stable C API
//! (`PyType_FromSpecWithBases`), whose only addition is a C-level
//! `popleft`: pass a checkpoint, then call `deque.popleft`. Everything else
//! is the deque itself, so the loop's appends, `len()` and any other use run
//! at C speed. A Python-level override would cost a Python frame per
//! callback: about 2.5 times the overhead (see the package README).

use std::ffi::c_void;
use std::ptr;

use pyo3::exceptions::PyRuntimeError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyType;

use crate::checkpoint;

/// `collections.deque.popleft` (an unbound method descriptor).
static DEQUE_POPLEFT: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// `ReadyQueue.popleft`: a checkpoint, then the deque's own `popleft`.
unsafe extern "C" fn popleft(slf: *mut ffi::PyObject, _: *mut ffi::PyObject) -> *mut ffi::PyObject {
    // SAFETY: CPython calls methods with the GIL held (attached thread).
    let py = unsafe { Python::assume_attached() };
    checkpoint::checkpoint(py);
    match DEQUE_POPLEFT.get(py) {
        // SAFETY: `slf` is a live ReadyQueue (a deque), the descriptor is
        // alive; the variadic list ends with NULL as the API requires.
        Some(f) => unsafe {
            ffi::PyObject_CallFunctionObjArgs(f.as_ptr(), slf, ptr::null_mut::<ffi::PyObject>())
        },
        None => {
            PyRuntimeError::new_err("morpheus: ReadyQueue used before module init").restore(py);
            ptr::null_mut()
        }
    }
}

/// Creates the `ReadyQueue` type.
pub(crate) fn ready_queue_type(py: Python<'_>) -> PyResult<Bound<'_, PyType>> {
    let deque = py.import("collections")?.getattr("deque")?;
    let _ = DEQUE_POPLEFT.set(py, deque.getattr("popleft")?.unbind());

    // The type object keeps pointers to these for its lifetime: leak them
    // (one type per process). The deque's own slots are inherited, among
    // them its dealloc, which does not release the instance's reference to
    // its heap type: one type reference per queue, i.e. per event loop, is
    // never given back, which is harmless for a type that lives as long as
    // the process anyway.
    let methods: &'static mut [ffi::PyMethodDef; 2] = Box::leak(Box::new([
        ffi::PyMethodDef {
            ml_name: c"popleft".as_ptr(),
            ml_meth: ffi::PyMethodDefPointer {
                PyCFunction: popleft,
            },
            ml_flags: ffi::METH_NOARGS,
            ml_doc: c"Passes a Morpheus checkpoint, then removes and returns the leftmost element."
                .as_ptr(),
        },
        ffi::PyMethodDef::zeroed(),
    ]));
    let slots: &'static mut [ffi::PyType_Slot; 3] = Box::leak(Box::new([
        ffi::PyType_Slot {
            slot: ffi::Py_tp_methods,
            pfunc: methods.as_mut_ptr() as *mut c_void,
        },
        ffi::PyType_Slot {
            slot: ffi::Py_tp_doc,
            pfunc: c"ReadyQueue(iterable=())\n--\n\nasyncio's ready queue (a collections.deque) with a Morpheus \
                checkpoint before every callback the event loop takes from it."
                .as_ptr() as *mut c_void,
        },
        ffi::PyType_Slot {
            slot: 0,
            pfunc: ptr::null_mut(),
        },
    ]));
    let spec: &'static mut ffi::PyType_Spec = Box::leak(Box::new(ffi::PyType_Spec {
        name: c"morpheus._morpheus.ReadyQueue".as_ptr(),
        basicsize: 0, // the deque's layout, nothing added
        itemsize: 0,
        // GC support (flag, traverse, clear) is inherited from the deque.
        flags: ffi::Py_TPFLAGS_DEFAULT as std::ffi::c_uint,
        slots: slots.as_mut_ptr(),
    }));
    let bases = pyo3::types::PyTuple::new(py, [deque])?;
    // SAFETY: a valid spec with 'static storage; `bases` is a tuple.
    let ty = unsafe { ffi::PyType_FromSpecWithBases(spec, bases.as_ptr()) };
    if ty.is_null() {
        return Err(PyErr::fetch(py));
    }
    // SAFETY: a new reference to a type object.
    let ty = unsafe { Bound::from_owned_ptr(py, ty) };
    Ok(ty.cast_into::<PyType>()?)
}
