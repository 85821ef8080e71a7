"""Metadata inside a .tflite file: edgekd's JSON, the standard TFLite ``ModelMetadata`` and a packed label file.

Three things are written, so that every kind of reader finds what it understands:

* ``edgekd`` — a ``Model.metadata`` entry holding edgekd's metadata as UTF-8 JSON (labels, normalisation, input
  shape and layout, I/O quantization, preprocessing, versions). ``edgekd predict`` and ``examples/raspberry_pi``
  read it with the flatbuffer schema shipped in ``ai_edge_litert``.
* ``TFLITE_METADATA`` — the standard ``ModelMetadata`` flatbuffer (identifier ``M001``) that the TFLite Support
  library's ``MetadataExtractor`` / ``MetadataDisplayer`` and MediaPipe's ``ImageClassifier`` read: input
  normalisation (as ``NormalizationOptions`` on 0-255 pixel values), ``ImageProperties`` with the colour space (only
  for NHWC inputs: MediaPipe and the Task Library take images channels-last; an NCHW input is declared a feature
  tensor, which they refuse), and the labels as an associated ``TENSOR_AXIS_LABELS`` file on the output tensor.
* ``labels.txt`` — one label per line, in a zip archive appended to the flatbuffer, the way TFLite Support packs
  associated files. The interpreter ignores the trailing archive.

No installable package writes TFLite metadata for this Python: tflite-support 0.4.4 (the last release) pins
protobuf 3.20, which TensorFlow 2.21 and onnx cannot use. The ``ModelMetadata`` table is therefore built here with
``flatbuffers`` from the field layout of TFLite Support's ``metadata_schema.fbs``; tests/test_metadata.py reads it back
with tflite-support's own ``MetadataDisplayer`` when a Python with tflite-support is given.
"""

from __future__ import annotations

import io
import json
import zipfile
from typing import Any

import numpy as np

from edgekd.core.errors import ModelError

EDGEKD_KEY = "edgekd"
STANDARD_KEY = "TFLITE_METADATA"
LABELS_FILE = "labels.txt"

# metadata_schema.fbs enum values and table field slots (TFLite Support, schema version 1.x)
_CONTENT_FEATURE, _CONTENT_IMAGE = 1, 2
_COLOR_RGB, _COLOR_GRAYSCALE = 1, 2
_PROCESS_NORMALIZATION = 1
_FILE_TENSOR_AXIS_LABELS = 2


def _schema():
    from ai_edge_litert import schema_py_generated as fb  # pure-python flatbuffer schema, no TensorFlow

    return fb


def metadata_entries(data: bytes) -> dict[str, bytes]:
    """``Model.metadata`` entries of a TFLite flatbuffer: name -> bytes of the buffer it points to."""
    fb = _schema()
    if len(data) < 16 or not fb.Model.ModelBufferHasIdentifier(data, 0):
        raise ModelError("not a valid TFLite file (missing 'TFL3' identifier)")
    model = fb.Model.GetRootAs(data, 0)
    out = {}
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        name = (entry.Name() or b"").decode("utf-8", "replace")
        buf = model.Buffers(int(entry.Buffer()))
        out[name] = buf.DataAsNumpy().tobytes() if buf is not None and buf.DataLength() else b""
    return out


def read_edgekd_metadata(data: bytes) -> dict[str, Any] | None:
    """The ``edgekd`` JSON entry, or None when the file has none."""
    raw = metadata_entries(data).get(EDGEKD_KEY)
    if raw is None:
        return None
    try:
        md = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ModelError(f"the '{EDGEKD_KEY}' metadata entry is not valid JSON ({exc})") from None
    if not isinstance(md, dict):
        raise ModelError(f"the '{EDGEKD_KEY}' metadata entry is not a JSON object")
    return md


def associated_files(data: bytes) -> dict[str, bytes]:
    """Files packed after the flatbuffer (TFLite Support's associated files), name -> content."""
    if not zipfile.is_zipfile(io.BytesIO(data)):
        return {}
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return {n: zf.read(n) for n in zf.namelist()}


# --------------------------------------------------------------------------------------------------------------
# writing


def _aligned_buffer_cls(fb):
    """BufferT whose data vector starts on a 16-byte boundary, as TFLite's own writer lays buffers out (the generated
    object API aligns to 1 byte; kernels reading float weights in place want aligned data)."""

    class AlignedBufferT(fb.BufferT):
        def Pack(self, builder):
            data = None
            if self.data is not None and len(self.data):
                raw = np.asarray(self.data, dtype=np.uint8).tobytes()
                builder.StartVector(1, len(raw), 16)
                builder.head = builder.head - len(raw)
                builder.Bytes[builder.head : builder.head + len(raw)] = raw
                builder.vectorNumElems = len(raw)
                data = builder.EndVector()
            fb.BufferStart(builder)
            if data is not None:
                fb.BufferAddData(builder, data)
            fb.BufferAddOffset(builder, self.offset)
            fb.BufferAddSize(builder, self.size)
            return fb.BufferEnd(builder)

    return AlignedBufferT


def _offsets_vector(builder, offsets: list[int]) -> int:
    builder.StartVector(4, len(offsets), 4)
    for off in reversed(offsets):
        builder.PrependUOffsetTRelative(off)
    return builder.EndVector()


def _table(builder, n_slots: int, fields: list[tuple[int, str, Any]]) -> int:
    """One table: ``fields`` are (slot, kind, value) with kind 'off' (an offset made earlier), 'i8' or 'u8'."""
    builder.StartObject(n_slots)
    for slot, kind, value in fields:
        if value is None:
            continue
        if kind == "off":
            builder.PrependUOffsetTRelativeSlot(slot, value, 0)
        elif kind == "i8":
            builder.PrependInt8Slot(slot, value, 0)
        else:
            builder.PrependUint8Slot(slot, value, 0)
    return builder.EndObject()


def standard_metadata(md: dict[str, Any]) -> bytes:
    """TFLite Support ``ModelMetadata`` (identifier ``M001``) for an image classifier described by edgekd's ``md``."""
    import flatbuffers

    b = flatbuffers.Builder(1024)
    s = b.CreateString
    channels = int(md["input_shape"][1])
    # NormalizationOptions apply to the values fed before normalisation: 0-255 pixels for the support library,
    # so edgekd's [0, 1] statistics are scaled by 255: (p / 255 - m) / s == (p - 255 m) / (255 s).
    mean = b.CreateNumpyVector(np.asarray([255.0 * v for v in md["mean"]], np.float32))
    std = b.CreateNumpyVector(np.asarray([255.0 * v for v in md["std"]], np.float32))
    norm = _table(b, 2, [(0, "off", mean), (1, "off", std)])
    unit = _table(b, 2, [(0, "u8", _PROCESS_NORMALIZATION), (1, "off", norm)])
    if md["input_layout"] == "NHWC":
        props = _table(b, 2, [(0, "i8", _COLOR_GRAYSCALE if channels == 1 else _COLOR_RGB)])
        content = _table(b, 3, [(0, "u8", _CONTENT_IMAGE), (1, "off", props)])
    else:  # an NCHW tensor is not an image to the Task Library: describe it as a plain feature tensor
        props = _table(b, 0, [])
        content = _table(b, 3, [(0, "u8", _CONTENT_FEATURE), (1, "off", props)])
    in_desc = (
        f"{md['input_layout']} {'x'.join(map(str, md['input_shape']))} (NCHW terms) image, "
        f"{'grey' if channels == 1 else 'RGB'}, pixels scaled to [0, 1], resized to "
        f"{md['input_shape'][2]}x{md['input_shape'][3]}, then (x - mean) / std per channel"
        + ("; the model converts RGB to grey itself" if md.get("grey_from_rgb") else "")
    )
    in_tm = _table(
        b,
        7,
        [(0, "off", s("image")), (1, "off", s(in_desc)), (3, "off", content), (4, "off", _offsets_vector(b, [unit]))],
    )
    labels_file = _table(
        b,
        5,
        [(0, "off", s(LABELS_FILE)), (1, "off", s("class labels, one per line")), (2, "i8", _FILE_TENSOR_AXIS_LABELS)],
    )
    out_tm = _table(
        b,
        7,
        [
            (0, "off", s("logits")),
            (1, "off", s("class logits (apply softmax for probabilities)")),
            (6, "off", _offsets_vector(b, [labels_file])),
        ],
    )
    sub = _table(
        b,
        10,
        [
            (0, "off", s("image_classifier")),
            (2, "off", _offsets_vector(b, [in_tm])),
            (3, "off", _offsets_vector(b, [out_tm])),
        ],
    )
    name = f"{md.get('pipeline', 'edgekd')} {md.get('source', 'model')} ({md.get('precision', '?')})"
    desc = f"Image classifier exported by edgekd {md.get('edgekd_version', '')}; pipeline {md.get('pipeline_hash', '')}"
    root = _table(
        b,
        8,
        [
            (0, "off", s(name)),
            (1, "off", s(desc)),
            (2, "off", s(str(md.get("edgekd_version", "")))),
            (3, "off", _offsets_vector(b, [sub])),
            (4, "off", s("edgekd")),
            (7, "off", s("1.0.0")),
        ],
    )
    b.Finish(root, file_identifier=b"M001")
    return bytes(b.Output())


def embed_metadata(data: bytes, md: dict[str, Any]) -> bytes:
    """Model bytes with the ``edgekd`` and ``TFLITE_METADATA`` entries set (replacing older ones) and labels packed.

    The flatbuffer is unpacked and packed again with the generated object API (as TFLite Support's populator does);
    an archive already appended to ``data`` is dropped and written anew.
    """
    import flatbuffers

    fb = _schema()
    if len(data) < 16 or not fb.Model.ModelBufferHasIdentifier(data, 0):
        raise ModelError("not a valid TFLite file (missing 'TFL3' identifier)")
    model = fb.ModelT.InitFromPackedBuf(bytearray(data), 0)
    aligned = _aligned_buffer_cls(fb)
    buffers = []
    for buf in model.buffers or []:
        new = aligned()
        new.data, new.offset, new.size = buf.data, buf.offset, buf.size
        if (buf.offset or 0) > 1:
            # weights stored after the flatbuffer (litert-torch writes fp16 files so): the offsets would be wrong
            # once the flatbuffer is rebuilt, so the bytes move inside it (files here are far below the 2 GB limit)
            end = buf.offset + buf.size
            if end > len(data) or len(data) > 2**31 - 1:
                raise ModelError("TFLite buffer outside the file, or a file over 2 GB: cannot add metadata")
            new.data, new.offset, new.size = np.frombuffer(data[buf.offset : end], dtype=np.uint8), 0, 0
        buffers.append(new)
    model.buffers = buffers
    payloads = {EDGEKD_KEY: json.dumps(md, sort_keys=True, separators=(",", ":")).encode()}
    image = md.get("task", "image-classification") == "image-classification"
    if image:  # TFLite Support's schema describes images; a text model's inputs are described in the edgekd entry
        payloads[STANDARD_KEY] = standard_metadata(md)
    keep = []
    for entry in model.metadata or []:
        name = entry.name.decode() if isinstance(entry.name, bytes) else str(entry.name)
        if name in payloads:
            model.buffers[entry.buffer].data = np.frombuffer(payloads.pop(name), dtype=np.uint8)
        keep.append(entry)
    for name, payload in payloads.items():
        buf = aligned()
        buf.data, buf.offset, buf.size = np.frombuffer(payload, dtype=np.uint8), 0, 0
        model.buffers.append(buf)
        entry = fb.MetadataT()
        entry.name, entry.buffer = name, len(model.buffers) - 1
        keep.append(entry)
    model.metadata = keep
    builder = flatbuffers.Builder(len(data) + 65536)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    if not image:
        return bytes(builder.Output())
    out = io.BytesIO(bytes(builder.Output()))
    out.seek(0, io.SEEK_END)
    with zipfile.ZipFile(out, "a") as zf:  # appended after the flatbuffer, as TFLite Support packs associated files
        zf.writestr(zipfile.ZipInfo(LABELS_FILE, date_time=(1980, 1, 1, 0, 0, 0)), "\n".join(md["labels"]) + "\n")
    return out.getvalue()
