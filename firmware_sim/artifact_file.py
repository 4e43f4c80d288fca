"""An artifact as a file, before any interpreter opens it: the suffix and first-bytes check that refuses a file
that is not what its name says, and the reader of a TFLite flatbuffer's ``metadata`` entries (no TensorFlow).

Used by :mod:`.runtime` (and by ``edgeae.export.filetype``); never imports torch.
"""

from __future__ import annotations

import struct
from pathlib import Path

from edgeae._optional import require

ONNX_SUFFIXES = (".onnx", ".ort")
TFLITE_SUFFIXES = (".tflite",)


class ArtifactError(ValueError):
    """An artifact file is missing, unreadable, or not what its suffix says.

    ``expected`` / ``found``: for a file that is not what its suffix says, the format its suffix names and the one
    its first bytes show (:func:`sniff`); None otherwise."""

    def __init__(self, message: str, expected: str | None = None, found: str | None = None) -> None:
        super().__init__(message)
        self.expected, self.found = expected, found


# flatbuffer file identifiers (bytes 4-8) and what they mean
IDENTIFIERS = {b"TFL3": ("tflite", "a TFLite flatbuffer (TFL3)"), b"ORTM": ("ort", "an ORT-format model (ORTM)")}


def sniff(head: bytes) -> str:
    """The format the first bytes of a file show: ``tflite``, ``ort``, ``onnx`` (a protobuf whose first field is
    ``ir_version``), ``empty`` or ``unknown`` (the export tools use it too: ``edgeae.export.filetype``)."""
    if not head:
        return "empty"
    if head[4:8] in IDENTIFIERS:
        return IDENTIFIERS[head[4:8]][0]
    return "onnx" if head[:1] == b"\x08" else "unknown"


#: the format each artifact suffix names
SUFFIX_FORMATS = {".onnx": "onnx", ".ort": "ort", ".tflite": "tflite"}


def check_artifact_file(path: Path) -> None:
    """Refuse, from its first bytes and without loading it, a file that is missing, empty or not the artifact
    its suffix says (a TFLite flatbuffer or an ORT-format model named ``.onnx``, an ``.ort`` or ONNX file named
    ``.tflite``): the one check of the flight runtime and the export tools (``edgeae.export.filetype`` words it
    for them). A ``.onnx`` file whose bytes show no known format goes on to onnxruntime's parser."""
    if not path.is_file():
        raise FileNotFoundError(f"model artifact {path} does not exist")
    want = SUFFIX_FORMATS.get(path.suffix)
    if want is None:
        raise ArtifactError(f"{path}: unknown artifact type {path.suffix!r}; expected .onnx, .ort or .tflite")
    with path.open("rb") as f:
        got = sniff(f.read(8))
    if got == want or (got == "unknown" and want == "onnx"):
        return
    if got == "empty":
        msg = f"{path}: empty file (0 bytes): not a model artifact"
    elif got in ("tflite", "ort"):
        what = next(text for fmt, text in IDENTIFIERS.values() if fmt == got)
        msg = f"{path}: this is {what}, not {path.suffix}: name it .{got}"
    elif want == "ort":
        msg = f"{path}: not an ONNX Runtime (.ort) file (no ORTM identifier)"
    else:
        msg = f"{path}: not a TFLite flatbuffer (no TFL3 identifier)"
    raise ArtifactError(msg, expected=want, found=got)


# Field slots of the TFLite schema (tensorflow/compiler/mlir/lite/schema/schema.fbs) this reader needs: the
# vtable offset of field i is 4 + 2 i. The generated schema module costs ~4 MiB of RSS in the flight process
# for three tables, so the runtime reads them through flatbuffers' own table accessor instead; a test checks
# it against ai_edge_litert.schema_py_generated on every zoo artifact.
_MODEL_BUFFERS, _MODEL_METADATA = 12, 16  # Model.buffers: [Buffer], Model.metadata: [Metadata]
_METADATA_NAME, _METADATA_BUFFER = 4, 6  # Metadata.name: string, Metadata.buffer: uint32
_BUFFER_DATA, _BUFFER_OFFSET, _BUFFER_SIZE = 4, 6, 8  # Buffer.data: [ubyte], offset, size: uint64


def tflite_metadata_entries(content: bytes, source: str = "model") -> dict[str, bytes]:
    """All ``metadata`` entries (name -> bytes) of a TFLite flatbuffer, parsed without TensorFlow."""
    if len(content) < 8 or content[4:8] != b"TFL3":
        raise ArtifactError(f"{source}: not a TFLite flatbuffer (no TFL3 identifier)")
    fb = require("flatbuffers")
    from flatbuffers import number_types as nt
    from flatbuffers.table import Table

    def table(pos: int) -> Table:
        if not 0 <= pos < len(content):
            raise IndexError(f"table offset {pos} outside the {len(content)}-byte file")
        return Table(content, pos)

    def vector(t: Table, slot: int) -> tuple[int, int]:
        """(start, length) of a vector of offsets, (0, 0) when the field is absent."""
        o = t.Offset(slot)
        if not o:
            return 0, 0
        start, n = t.Vector(o), t.VectorLen(o)
        if start + 4 * n > len(content):  # bounded before any entry is read
            raise IndexError(f"a vector of {n} offsets at byte {start} runs past the end of the file")
        return start, n

    try:
        model = table(fb.encode.Get(nt.UOffsetTFlags.packer_type, content, 0))
        buffers, n_buffers = vector(model, _MODEL_BUFFERS)
        meta, n_meta = vector(model, _MODEL_METADATA)
        out: dict[str, bytes] = {}
        for i in range(n_meta):
            entry = table(model.Indirect(meta + 4 * i))
            o = entry.Offset(_METADATA_NAME)
            name = (entry.String(o + entry.Pos) if o else b"").decode("utf-8", "replace")
            o = entry.Offset(_METADATA_BUFFER)
            index = entry.Get(nt.Uint32Flags, o + entry.Pos) if o else 0
            if not 0 <= index < n_buffers:
                raise IndexError(f"metadata {name!r} names buffer {index} of {n_buffers}")
            b = table(model.Indirect(buffers + 4 * index))
            o_off, o_size = b.Offset(_BUFFER_OFFSET), b.Offset(_BUFFER_SIZE)
            offset = b.Get(nt.Uint64Flags, o_off + b.Pos) if o_off else 0
            if offset > 1:  # large models keep buffers after the flatbuffer
                size = b.Get(nt.Uint64Flags, o_size + b.Pos) if o_size else 0
                if offset + size > len(content):
                    raise IndexError(f"buffer {index} ({size} bytes at {offset}) runs past the end of the file")
                out[name] = bytes(content[offset : offset + size])
                continue
            o = b.Offset(_BUFFER_DATA)
            if o:
                start, n = b.Vector(o), b.VectorLen(o)
                if start + n > len(content):
                    raise IndexError(f"buffer {index} runs past the end of the file")
                out[name] = bytes(content[start : start + n])
            else:
                out[name] = b""
    except (IndexError, ValueError, TypeError, AttributeError, struct.error) as exc:
        raise ArtifactError(f"{source}: corrupted TFLite flatbuffer ({type(exc).__name__}: {exc})") from exc
    return out
