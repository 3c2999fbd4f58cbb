"""The blocking client: ``Client`` and its ``ExecSession``."""

from __future__ import annotations

import collections
import contextlib
import hashlib
import queue
import threading
from typing import IO, Iterator, Mapping, Optional, Sequence, Union

import grpc

from paddock import _shared
from paddock._shared import Command, PaddockError, error_from
from paddock.v1 import (
    exec_pb2,
    exec_pb2_grpc,
    file_pb2,
    file_pb2_grpc,
    port_pb2_grpc,
    sandbox_pb2,
    sandbox_pb2_grpc,
    template_pb2_grpc,
    volume_pb2_grpc,
)


class _CallDetails(
    collections.namedtuple(
        "_CallDetails", ("method", "timeout", "metadata", "credentials", "wait_for_ready", "compression")
    ),
    grpc.ClientCallDetails,
):
    pass


class _Metadata(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """Adds the API key to every call made through the channel."""

    def __init__(self, metadata: Sequence[tuple[str, str]]) -> None:
        self._metadata = list(metadata)

    def _details(self, details: grpc.ClientCallDetails) -> grpc.ClientCallDetails:
        return _CallDetails(
            details.method,
            details.timeout,
            list(details.metadata or []) + self._metadata,
            details.credentials,
            details.wait_for_ready,
            getattr(details, "compression", None),
        )

    def intercept_unary_unary(self, continuation, details, request):  # type: ignore[no-untyped-def]
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation, details, request):  # type: ignore[no-untyped-def]
        return continuation(self._details(details), request)

    def intercept_stream_unary(self, continuation, details, requests):  # type: ignore[no-untyped-def]
        return continuation(self._details(details), requests)

    def intercept_stream_stream(self, continuation, details, requests):  # type: ignore[no-untyped-def]
        return continuation(self._details(details), requests)


class Client:
    """A connection to a Paddock server.

    ``address`` is ``http://HOST:PORT``, ``https://HOST:PORT``, ``HOST:PORT``
    or ``unix:PATH`` (default: ``$PADDOCK_ADDR``, else
    ``http://127.0.0.1:50051``); ``api_key`` defaults to
    ``$PADDOCK_API_KEY``. The generated stubs are ``sandboxes``, ``exec`` and
    ``files``: every RPC is there, with the key attached. The methods below
    are helpers where raw gRPC is clumsy; they raise ``PaddockError``.
    """

    def __init__(
        self,
        address: Optional[str] = None,
        *,
        api_key: Optional[str] = None,
        root_certificates: Optional[bytes] = None,
        options: Sequence[tuple[str, object]] = (),
    ) -> None:
        target = _shared.parse_address(address)
        if target.tls:
            channel = grpc.secure_channel(
                target.grpc_target, _shared.channel_credentials(root_certificates), options=options
            )
        else:
            channel = grpc.insecure_channel(target.grpc_target, options=options)
        self._raw_channel = channel
        self.channel = grpc.intercept_channel(channel, _Metadata(_shared.auth_metadata(api_key)))
        self.sandboxes = sandbox_pb2_grpc.SandboxServiceStub(self.channel)
        self.exec = exec_pb2_grpc.ExecServiceStub(self.channel)
        self.files = file_pb2_grpc.FileServiceStub(self.channel)
        self.ports = port_pb2_grpc.PortServiceStub(self.channel)
        self.volumes = volume_pb2_grpc.VolumeServiceStub(self.channel)
        self.templates = template_pb2_grpc.TemplateServiceStub(self.channel)

    def close(self) -> None:
        self._raw_channel.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # Sandboxes.

    def create_sandbox(self, image: str = "", *, name: Optional[str] = None, **fields: object) -> sandbox_pb2.Sandbox:
        """Creates a sandbox and returns it RUNNING (or FAILED, with the reason
        in ``state_reason``). ``fields`` are CreateSandboxRequest's other
        fields by name; ``timeout`` may be seconds."""
        request = _shared.create_request(image, name, fields)
        try:
            return self.sandboxes.CreateSandbox(request).sandbox
        except grpc.RpcError as e:
            raise error_from(e) from None

    def delete_sandbox(self, sandbox_id: str) -> None:
        try:
            self.sandboxes.DeleteSandbox(sandbox_pb2.DeleteSandboxRequest(sandbox_id=sandbox_id))
        except grpc.RpcError as e:
            raise error_from(e) from None

    @contextlib.contextmanager
    def sandbox(self, image: str = "", *, name: Optional[str] = None, **fields: object) -> Iterator[sandbox_pb2.Sandbox]:
        """A sandbox for the ``with`` block, deleted when the block ends,
        however it ends."""
        sandbox = self.create_sandbox(image, name=name, **fields)
        try:
            yield sandbox
        finally:
            self.delete_sandbox(sandbox.id)

    # Commands.

    def run(
        self,
        sandbox_id: str,
        command: Command,
        *,
        stdin: bytes = b"",
        timeout: Optional[float] = None,
        env: Optional[Mapping[str, str]] = None,
        workdir: str = "",
        user: str = "",
        max_output_bytes: int = 0,
    ) -> exec_pb2.RunCommandResponse:
        """Runs a command to its end: a string runs under ``/bin/sh -c``, a
        list runs directly. The answer holds the exit code and the output
        (at most ``max_output_bytes`` of each stream, 1 MiB by default)."""
        spec = _shared.command_spec(command, env=env, workdir=workdir, user=user, timeout=timeout)
        request = exec_pb2.RunCommandRequest(
            sandbox_id=sandbox_id, spec=spec, stdin=stdin, max_output_bytes=max_output_bytes
        )
        try:
            return self.exec.RunCommand(request)
        except grpc.RpcError as e:
            raise error_from(e) from None

    def exec_command(
        self,
        sandbox_id: str,
        command: Command,
        *,
        tty: bool = False,
        rows: int = 0,
        cols: int = 0,
        env: Optional[Mapping[str, str]] = None,
        workdir: str = "",
        user: str = "",
        timeout: Optional[float] = None,
        detach_keeps_running: bool = True,
    ) -> "ExecSession":
        """Starts an interactive command: write to its stdin, read its output
        as it comes, resize its terminal, signal it."""
        start = exec_pb2.ExecStart(
            sandbox_id=sandbox_id,
            spec=_shared.command_spec(
                command, env=env, workdir=workdir, user=user, timeout=timeout, tty=tty, rows=rows, cols=cols
            ),
            on_disconnect=(
                exec_pb2.ON_DISCONNECT_KEEP_RUNNING if detach_keeps_running else exec_pb2.ON_DISCONNECT_KILL
            ),
        )
        return ExecSession(self.exec, exec_pb2.ExecRequest(start=start))

    def attach(self, sandbox_id: str, command_id: str, *, after_seq: int = 0) -> "ExecSession":
        """Follows a command started earlier: its retained output after
        ``after_seq`` first, then live output, then how it ended."""
        attach = exec_pb2.ExecAttach(sandbox_id=sandbox_id, command_id=command_id, after_seq=after_seq)
        return ExecSession(self.exec, exec_pb2.ExecRequest(attach=attach))

    # Files.

    def upload(
        self,
        sandbox_id: str,
        source: Union[str, IO[bytes]],
        path: str,
        *,
        mode: int = 0,
        overwrite: bool = False,
    ) -> file_pb2.UploadResponse:
        """Streams a local file (a path or a binary file object) to ``path``
        in the sandbox in 1 MiB chunks; raises ``ChecksumMismatch`` unless
        the server wrote the sha256 that was sent."""
        digest = hashlib.sha256()

        def requests() -> Iterator[file_pb2.UploadRequest]:
            yield _shared.upload_header(sandbox_id, path, mode, overwrite)
            with _opened(source, "rb") as file:
                while chunk := file.read(_shared.CHUNK_BYTES):
                    digest.update(chunk)
                    yield file_pb2.UploadRequest(chunk=chunk)

        try:
            answer = self.files.Upload(requests())
        except grpc.RpcError as e:
            raise error_from(e) from None
        _shared.check_upload(digest, answer, path)
        return answer

    def download(self, sandbox_id: str, path: str, destination: Union[str, IO[bytes]]) -> tuple[file_pb2.FileInfo, str]:
        """Streams ``path`` from the sandbox into a local file (a path or a
        binary file object); returns the file's info and the sha256 of the
        bytes received, and raises ``ChecksumMismatch`` if fewer or more
        bytes arrived than the file holds."""
        digest = hashlib.sha256()
        info = file_pb2.FileInfo()
        received = 0
        try:
            with _opened(destination, "wb") as file:
                for message in self.files.Download(file_pb2.DownloadRequest(sandbox_id=sandbox_id, path=path)):
                    if message.HasField("info"):
                        info = message.info
                    else:
                        digest.update(message.chunk)
                        file.write(message.chunk)
                        received += len(message.chunk)
        except grpc.RpcError as e:
            raise error_from(e) from None
        _shared.check_download(received, info, path)
        return info, digest.hexdigest()


@contextlib.contextmanager
def _opened(file: Union[str, IO[bytes]], mode: str) -> Iterator[IO[bytes]]:
    if isinstance(file, str):
        with open(file, mode) as opened:
            yield opened
    else:
        yield file


class ExecSession:
    """One Exec stream. Iterate it for ``ExecOutput`` chunks (``stream``,
    ``data``, ``seq``) as they come; when the iteration ends the command has
    ended and ``exited`` says how. ``write``, ``close_stdin``, ``resize`` and
    ``signal`` may be called from any thread meanwhile."""

    def __init__(self, stub: exec_pb2_grpc.ExecServiceStub, first: exec_pb2.ExecRequest) -> None:
        self._outgoing: "queue.Queue[Optional[exec_pb2.ExecRequest]]" = queue.Queue()
        self._outgoing.put(first)
        self._call = stub.Exec(self._requests())
        self._lock = threading.Lock()
        self.command_id = ""
        self.exited: Optional[exec_pb2.ExecExited] = None
        # The first answer names the command, or says why it did not start.
        try:
            started = next(self._call)
        except grpc.RpcError as e:
            raise error_from(e) from None
        self.command_id = started.started.command_id

    def _requests(self) -> Iterator[exec_pb2.ExecRequest]:
        while (request := self._outgoing.get()) is not None:
            yield request

    def __iter__(self) -> Iterator[exec_pb2.ExecOutput]:
        try:
            for message in self._call:
                kind = message.WhichOneof("response")
                if kind == "output":
                    yield message.output
                elif kind == "exited":
                    self.exited = message.exited
        except grpc.RpcError as e:
            raise error_from(e) from None
        finally:
            self._outgoing.put(None)

    def wait(self) -> exec_pb2.ExecExited:
        """Reads the rest of the output (dropping it) and returns how the
        command ended."""
        for _ in self:
            pass
        if self.exited is None:
            raise PaddockError(grpc.StatusCode.UNAVAILABLE, "the stream ended before the command did")
        return self.exited

    def write(self, data: bytes) -> None:
        """Sends bytes to the command's stdin."""
        for message in _shared.stdin_messages(data):
            self._outgoing.put(message)

    def close_stdin(self) -> None:
        self._outgoing.put(exec_pb2.ExecRequest(close_stdin=exec_pb2.CloseStdin()))

    def resize(self, rows: int, cols: int) -> None:
        self._outgoing.put(exec_pb2.ExecRequest(resize=exec_pb2.Resize(rows=rows, cols=cols)))

    def signal(self, name: str) -> None:
        """Signals the command's process group (``"SIGINT"``, ``"TERM"``, ``"9"``)."""
        self._outgoing.put(exec_pb2.ExecRequest(signal=exec_pb2.Signal(name=name)))

    def detach(self) -> None:
        """Ends the stream; the command goes on or is killed as started."""
        self._call.cancel()
        self._outgoing.put(None)
