"""What the blocking and the asyncio clients share: where the server is, the
API key, request building and error translation. No I/O happens here."""

from __future__ import annotations

import dataclasses
import hashlib
import os
from typing import Iterable, Mapping, Optional, Sequence, Union

import grpc
from google.protobuf import duration_pb2

from paddock.v1 import exec_pb2, file_pb2, sandbox_pb2

#: Where a client connects when given no address and PADDOCK_ADDR is unset.
DEFAULT_ADDRESS = "http://127.0.0.1:50051"
#: The size of the chunks uploads send; the server takes at most 1 MiB.
CHUNK_BYTES = 1 << 20

Command = Union[str, Sequence[str]]
"""A shell command line (run by ``/bin/sh -c``) or a program and its arguments."""


class PaddockError(Exception):
    """A call the server refused or that failed, with the server's sentence.

    ``code`` is the gRPC status code (``grpc.StatusCode``); ``str(error)`` is
    the server's message, which names the field or the state at fault.
    """

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return f"{self.code.name}: {self.message}"


class ChecksumMismatch(PaddockError):
    """A transfer whose bytes did not arrive as sent."""

    def __init__(self, message: str) -> None:
        super().__init__(grpc.StatusCode.DATA_LOSS, message)


def error_from(rpc_error: grpc.RpcError) -> PaddockError:
    """The PaddockError for a failed call."""
    code = rpc_error.code() if hasattr(rpc_error, "code") else grpc.StatusCode.UNKNOWN
    details = rpc_error.details() if hasattr(rpc_error, "details") else str(rpc_error)
    return PaddockError(code, details or "")


@dataclasses.dataclass(frozen=True)
class Target:
    """A server address parsed as the Paddock CLI parses ``--addr``."""

    #: The address in gRPC's target syntax.
    grpc_target: str
    #: Whether the connection uses TLS.
    tls: bool


def parse_address(address: Optional[str]) -> Target:
    """Reads ``http://HOST:PORT``, ``https://HOST:PORT``, ``HOST:PORT`` or
    ``unix:PATH``; ``None`` means ``$PADDOCK_ADDR``, else the default."""
    address = address or os.environ.get("PADDOCK_ADDR") or DEFAULT_ADDRESS
    if address.startswith("unix:"):
        path = address[len("unix:") :]
        if not path.startswith("/"):
            path = os.path.abspath(path)
        return Target(f"unix:{path}", tls=False)
    for scheme, tls in (("https://", True), ("http://", False)):
        if address.startswith(scheme):
            return Target(address[len(scheme) :].rstrip("/"), tls=tls)
    if "://" in address:
        raise ValueError(f"{address!r}: use http://, https:// or unix:PATH")
    return Target(address, tls=False)


def auth_metadata(api_key: Optional[str]) -> list[tuple[str, str]]:
    """The metadata every call carries: the API key, when there is one
    (``api_key``, else ``$PADDOCK_API_KEY``)."""
    key = api_key if api_key is not None else os.environ.get("PADDOCK_API_KEY")
    return [("authorization", f"Bearer {key}")] if key else []


def channel_credentials(root_certificates: Optional[bytes]) -> grpc.ChannelCredentials:
    """TLS with the system's CAs, or with ``root_certificates`` (PEM)."""
    return grpc.ssl_channel_credentials(root_certificates=root_certificates)


def duration(seconds: Optional[float]) -> Optional[duration_pb2.Duration]:
    if seconds is None:
        return None
    value = duration_pb2.Duration()
    value.FromNanoseconds(round(seconds * 1e9))
    return value


def command_spec(
    command: Command,
    *,
    env: Optional[Mapping[str, str]] = None,
    workdir: str = "",
    user: str = "",
    timeout: Optional[float] = None,
    tty: bool = False,
    rows: int = 0,
    cols: int = 0,
) -> exec_pb2.CommandSpec:
    """What to run: a string is a shell command line, a list is a program
    and its arguments run directly."""
    spec = exec_pb2.CommandSpec(
        env=dict(env or {}),
        workdir=workdir,
        user=user,
        tty=tty,
        rows=rows,
        cols=cols,
        timeout=duration(timeout),
    )
    if isinstance(command, str):
        spec.shell = command
    else:
        spec.command.extend(command)
    return spec


def create_request(image: str, name: Optional[str], fields: Mapping[str, object]) -> sandbox_pb2.CreateSandboxRequest:
    """A CreateSandboxRequest; ``fields`` are any of its other fields by name
    (``timeout`` may be given in seconds)."""
    fields = dict(fields)
    if isinstance(fields.get("timeout"), (int, float)):
        fields["timeout"] = duration(float(fields["timeout"]))  # type: ignore[arg-type]
    request = sandbox_pb2.CreateSandboxRequest(image=image, **fields)  # type: ignore[arg-type]
    if name is not None:
        request.name = name
    return request


def upload_header(sandbox_id: str, path: str, mode: int, overwrite: bool) -> file_pb2.UploadRequest:
    return file_pb2.UploadRequest(
        header=file_pb2.UploadHeader(sandbox_id=sandbox_id, path=path, mode=mode, overwrite=overwrite)
    )


def check_upload(sent: "hashlib._Hash", answer: file_pb2.UploadResponse, path: str) -> None:
    if answer.sha256 != sent.hexdigest():
        raise ChecksumMismatch(
            f"{path}: the server wrote sha256 {answer.sha256}, but {sent.hexdigest()} was sent"
        )


def check_download(received: int, info: file_pb2.FileInfo, path: str) -> None:
    if info.size and received != info.size:
        raise ChecksumMismatch(f"{path}: {received} bytes arrived of {info.size}")


def stdin_messages(data: Union[bytes, Iterable[bytes]]) -> Iterable[exec_pb2.ExecRequest]:
    """Stdin as Exec messages of at most 1 MiB each."""
    chunks: Iterable[bytes] = [data] if isinstance(data, (bytes, bytearray)) else data
    for chunk in chunks:
        for start in range(0, len(chunk), CHUNK_BYTES):
            yield exec_pb2.ExecRequest(stdin=bytes(chunk[start : start + CHUNK_BYTES]))
