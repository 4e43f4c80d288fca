"""Embed the edgeae metadata JSON in a TFLite flatbuffer (a ``metadata`` entry pointing at a buffer).

Uses the flatbuffers schema bindings shipped with ai-edge-litert (no TensorFlow). The flight loader reads
it back with :func:`edgeae.firmware_sim.runtime.tflite_metadata_entries`.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from edgeae._optional import require
from edgeae.atomic import write_bytes
from edgeae.metadata import METADATA_KEY

TFLITE_IDENTIFIER = b"TFL3"


def embed_tflite_metadata(content: bytes, text: str, key: str = METADATA_KEY) -> bytes:
    """Return ``content`` with a metadata entry ``key`` holding ``text`` (UTF-8), replacing an old one."""
    schema = require("ai_edge_litert.schema_py_generated")
    flatbuffers = require("flatbuffers")
    model = schema.ModelT.InitFromPackedBuf(bytearray(content), 0)
    if any(b is not None and b.offset > 1 for b in model.buffers or []):
        raise ValueError("TFLite model keeps buffers outside the flatbuffer (> 2 GB?); cannot embed metadata")
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
    model.buffers = [*(model.buffers or []), buffer]
    entries = [m for m in (model.metadata or []) if (m.name or b"") not in (key, key.encode())]
    entry = schema.MetadataT()
    entry.name = key
    entry.buffer = len(model.buffers) - 1
    model.metadata = [*entries, entry]
    builder = flatbuffers.Builder(len(content) + len(text) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=TFLITE_IDENTIFIER)
    return bytes(builder.Output())


def write_tflite_metadata(path: str | os.PathLike[str], text: str, key: str = METADATA_KEY) -> Path:
    """Rewrite the ``.tflite`` file at ``path`` with the metadata embedded (atomic replace)."""
    p = Path(path)
    out = embed_tflite_metadata(p.read_bytes(), text, key)
    write_bytes(p, out)
    return p
