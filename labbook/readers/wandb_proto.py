"""The few messages of wandb's ``run-<id>.wandb`` log that labbook reads, declared here.

Each record in the log is a protobuf ``wandb_internal.Record`` (wandb's public
``wandb/proto/wandb_internal.proto``). labbook declares just the parts it reads —
the config, history, summary, run, exit and environment records, and within them
only the fields it uses — with the same field numbers and wire types, built in
code with protobuf's descriptor API into a private descriptor pool. Decoding
therefore needs protobuf (a dependency through tensorboard), never wandb: a run
logged by a wandb in another environment (pipx, another venv) reads the same.

Everything else in a record — other record types (stats, output, telemetry, …)
and fields not declared below — is kept by protobuf as unknown fields and ignored,
so newer wandb versions that add fields or record types read as before. The
declarations were checked field by field against wandb 0.31's own descriptors
(``tests/test_wandb_nowandb.py`` does so whenever wandb is importable).

:func:`record_class` builds the classes once, on first use.
"""

from __future__ import annotations

from functools import cache
from typing import Any

#: The package of wandb's messages; the pool is private, so the names clash with nothing.
PACKAGE = "wandb_internal"
FILE_NAME = "labbook/wandb_records.proto"

# Field types (google.protobuf.FieldDescriptorProto.Type), by their .proto names.
_TYPES = {
    "double": 1,
    "int64": 3,
    "uint64": 4,
    "int32": 5,
    "bool": 8,
    "string": 9,
    "message": 11,
    "uint32": 13,
    "enum": 14,
    "sint64": 18,
}

#: message -> fields: (name, number, type, repeated, message or enum type, oneof)
#: Numbers and types as in wandb's wandb_internal.proto.
MESSAGES: dict[str, list[tuple[str, int, str, bool, str | None, str | None]]] = {
    "Record": [
        ("history", 2, "message", False, "HistoryRecord", "record_type"),
        ("summary", 3, "message", False, "SummaryRecord", "record_type"),
        ("config", 5, "message", False, "ConfigRecord", "record_type"),
        ("run", 17, "message", False, "RunRecord", "record_type"),
        ("exit", 18, "message", False, "RunExitRecord", "record_type"),
        ("environment", 26, "message", False, "EnvironmentRecord", "record_type"),
    ],
    "ConfigRecord": [
        ("update", 1, "message", True, "ConfigItem", None),
        ("remove", 2, "message", True, "ConfigItem", None),
    ],
    "ConfigItem": [
        ("key", 1, "string", False, None, None),
        ("nested_key", 2, "string", True, None, None),
        ("value_json", 16, "string", False, None, None),
    ],
    "SummaryRecord": [
        ("update", 1, "message", True, "SummaryItem", None),
        ("remove", 2, "message", True, "SummaryItem", None),
    ],
    "SummaryItem": [
        ("key", 1, "string", False, None, None),
        ("nested_key", 2, "string", True, None, None),
        ("value_json", 16, "string", False, None, None),
    ],
    "HistoryRecord": [
        ("item", 1, "message", True, "HistoryItem", None),
        ("step", 2, "message", False, "HistoryStep", None),
    ],
    "HistoryItem": [
        ("key", 1, "string", False, None, None),
        ("nested_key", 2, "string", True, None, None),
        ("none", 3, "enum", False, "NullValue", "value"),
        ("boolean", 4, "bool", False, None, "value"),
        ("integer", 5, "sint64", False, None, "value"),
        ("number", 6, "double", False, None, "value"),
        ("text", 7, "string", False, None, "value"),
        ("json", 8, "string", False, None, "value"),
        ("value_json", 16, "string", False, None, None),
    ],
    "HistoryStep": [
        ("num", 1, "int64", False, None, None),
    ],
    "RunRecord": [
        ("run_id", 1, "string", False, None, None),
        ("project", 3, "string", False, None, None),
        ("config", 4, "message", False, "ConfigRecord", None),
        ("display_name", 8, "string", False, None, None),
        ("tags", 10, "string", True, None, None),
        ("sweep_id", 12, "string", False, None, None),
        ("host", 13, "string", False, None, None),
        ("start_time", 17, "message", False, "Timestamp", None),
        ("git", 21, "message", False, "GitRepoRecord", None),
    ],
    "GitRepoRecord": [
        ("remote_url", 1, "string", False, None, None),
        ("commit", 2, "string", False, None, None),
    ],
    "RunExitRecord": [
        ("exit_code", 1, "int32", False, None, None),
        ("runtime", 2, "int32", False, None, None),
    ],
    # What wandb-metadata.json held (labbook.capture.env reads it); the e-mail
    # address is left undeclared on purpose.
    "EnvironmentRecord": [
        ("os", 1, "string", False, None, None),
        ("python", 2, "string", False, None, None),
        ("docker", 4, "string", False, None, None),
        ("args", 5, "string", True, None, None),
        ("program", 6, "string", False, None, None),
        ("code_path", 7, "string", False, None, None),
        ("git", 9, "message", False, "GitRepoRecord", None),
        ("root", 11, "string", False, None, None),
        ("host", 12, "string", False, None, None),
        ("username", 13, "string", False, None, None),
        ("executable", 14, "string", False, None, None),
        ("cpu_count", 16, "uint32", False, None, None),
        ("cpu_count_logical", 17, "uint32", False, None, None),
        ("gpu_type", 18, "string", False, None, None),
        ("gpu_count", 19, "uint32", False, None, None),
        ("apple", 23, "message", False, "AppleInfo", None),
        ("gpu_nvidia", 24, "message", True, "GpuNvidiaInfo", None),
        ("cuda_version", 25, "string", False, None, None),
        ("gpu_amd", 26, "message", True, "GpuAmdInfo", None),
    ],
    "GpuNvidiaInfo": [
        ("name", 1, "string", False, None, None),
        ("memory_total", 2, "uint64", False, None, None),
        ("architecture", 4, "string", False, None, None),
    ],
    "GpuAmdInfo": [
        ("id", 1, "string", False, None, None),
        ("series", 8, "string", False, None, None),
        ("model", 9, "string", False, None, None),
    ],
    "AppleInfo": [
        ("name", 1, "string", False, None, None),
    ],
    # google.protobuf.Timestamp's wire format, declared locally to keep the pool self-contained.
    "Timestamp": [
        ("seconds", 1, "int64", False, None, None),
        ("nanos", 2, "int32", False, None, None),
    ],
}

#: enum -> values (google.protobuf.NullValue, which HistoryItem.none uses)
ENUMS = {"NullValue": [("NULL_VALUE", 0)]}


def file_descriptor_proto() -> Any:
    """The declarations above as a ``FileDescriptorProto`` (proto3)."""
    from google.protobuf import descriptor_pb2

    fdp = descriptor_pb2.FileDescriptorProto(name=FILE_NAME, package=PACKAGE, syntax="proto3")
    for enum_name, values in ENUMS.items():
        enum = fdp.enum_type.add(name=enum_name)
        for value_name, number in values:
            enum.value.add(name=value_name, number=number)
    label = descriptor_pb2.FieldDescriptorProto
    for msg_name, fields in MESSAGES.items():
        msg = fdp.message_type.add(name=msg_name)
        oneofs: list[str] = []
        for name, number, kind, repeated, type_name, oneof in fields:
            field = msg.field.add(
                name=name,
                number=number,
                type=_TYPES[kind],
                label=label.LABEL_REPEATED if repeated else label.LABEL_OPTIONAL,
            )
            if type_name is not None:
                field.type_name = f".{PACKAGE}.{type_name}"
            if oneof is not None:
                if oneof not in oneofs:
                    oneofs.append(oneof)
                    msg.oneof_decl.add(name=oneof)
                field.oneof_index = oneofs.index(oneof)
    return fdp


@cache
def record_class() -> Any:
    """The message class of one log record (``wandb_internal.Record``), as declared here."""
    from google.protobuf import descriptor_pool, message_factory

    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(file_descriptor_proto().SerializeToString())
    desc = pool.FindMessageTypeByName(f"{PACKAGE}.Record")
    get_class = getattr(message_factory, "GetMessageClass", None)  # protobuf >= 4.21
    if get_class is not None:
        return get_class(desc)
    return message_factory.MessageFactory(pool).GetPrototype(desc)  # older protobuf
