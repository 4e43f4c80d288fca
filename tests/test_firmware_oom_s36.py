"""onnxruntime's own out-of-memory texts count as out of memory (review s36 r18 #1: fdef662's type-based rules missed
them, so a memory-starved boot flew without its models, exit 1, instead of the one-line refusal, exit 2)."""

from __future__ import annotations

from edgeae.firmware_sim.memory_room import is_out_of_memory

ORT_THREAD = (
    "/onnxruntime_src/onnxruntime/core/platform/posix/env.cc:327 onnxruntime::{anonymous}::PosixThread::PosixThread("
    "const char*, int, unsigned int (*)(int, Eigen::ThreadPoolInterface*), Eigen::ThreadPoolInterface*, const "
    "onnxruntime::ThreadOptions&) [ONNXRuntimeError] : 1 : FAIL : pthread_create failed, error code: 12 error msg: "
    "Cannot allocate memory"
)


class ArtifactError(Exception):
    pass


def test_onnxruntime_failing_to_start_its_threads_is_out_of_memory() -> None:
    assert is_out_of_memory(RuntimeError(ORT_THREAD))
    try:  # as the flight's artifact loader wraps it
        try:
            raise RuntimeError(ORT_THREAD)
        except RuntimeError as exc:
            raise ArtifactError("m.int8.onnx: cannot be loaded by onnxruntime") from exc
    except ArtifactError as wrapped:
        assert is_out_of_memory(wrapped)


def test_onnxruntime_import_bad_alloc_is_out_of_memory() -> None:
    assert is_out_of_memory(ImportError("Exception caught: std::bad_alloc"))


def test_a_path_holding_the_words_is_not() -> None:
    assert not is_out_of_memory(RuntimeError("/data/pthread_create failed, error code: 12/x.tif: not a TIFF"))
    assert not is_out_of_memory(RuntimeError("pthread_create failed, error code: 12"))  # not onnxruntime's source
    assert not is_out_of_memory(ImportError("No module named 'std::bad_alloc'"))
    assert not is_out_of_memory(RuntimeError("can't start new thread: /out of memory cases/x.tif"))
