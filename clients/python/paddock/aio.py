"""The asyncio client (``grpc.aio``): ``AsyncClient`` and its
``AsyncExecSession``, the same helpers as the blocking ``Client``."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from typing import IO, AsyncIterator, Mapping, Optional, Sequence, Union

import grpc
import grpc.aio

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


class _Metadata(
    grpc.aio.UnaryUnaryClientInterceptor,
    grpc.aio.UnaryStreamClientInterceptor,
    grpc.aio.StreamUnaryClientInterceptor,
    grpc.aio.StreamStreamClientInterceptor,
):
    """Adds the API key to every call made through the channel."""

    def __init__(self, metadata: Sequence[tuple[str, str]]) -> None:
        self._metadata = list(metadata)

    def _details(self, details: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
        metadata = grpc.aio.Metadata(*(details.metadata or ()), *self._metadata)
        return details._replace(metadata=metadata)  # type: ignore[attr-defined, no-any-return]

    async def intercept_unary_unary(self, continuation, details, request):  # type: ignore[no-untyped-def]
        return await continuation(self._details(details), request)

    async def intercept_unary_stream(self, continuation, details, request):  # type: ignore[no-untyped-def]
        return await continuation(self._details(details), request)

    async def intercept_stream_unary(self, continuation, details, requests):  # type: ignore[no-untyped-def]
        return await continuation(self._details(details), requests)

    async def intercept_stream_stream(self, continuation, details, requests):  # type: ignore[no-untyped-def]
        return await continuation(self._details(details), requests)


class AsyncClient:
    """A connection to a Paddock server for asyncio programs; see ``Client``
    for the address, the key and the stubs. Use it as ``async with``."""

    def __init__(
        self,
        address: Optional[str] = None,
        *,
        api_key: Optional[str] = None,
        root_certificates: Optional[bytes] = None,
        options: Sequence[tuple[str, object]] = (),
    ) -> None:
        target = _shared.parse_address(address)
        metadata = _shared.auth_metadata(api_key)
        interceptors = [_Metadata(metadata)] if metadata else None
        if target.tls:
            self.channel = grpc.aio.secure_channel(
                target.grpc_target,
                _shared.channel_credentials(root_certificates),
                options=options,
                interceptors=interceptors,
            )
        else:
            self.channel = grpc.aio.insecure_channel(target.grpc_target, options=options, interceptors=interceptors)
        self.sandboxes: sandbox_pb2_grpc.SandboxServiceAsyncStub = sandbox_pb2_grpc.SandboxServiceStub(self.channel)
        self.exec: exec_pb2_grpc.ExecServiceAsyncStub = exec_pb2_grpc.ExecServiceStub(self.channel)
        self.files: file_pb2_grpc.FileServiceAsyncStub = file_pb2_grpc.FileServiceStub(self.channel)
        self.ports: port_pb2_grpc.PortServiceAsyncStub = port_pb2_grpc.PortServiceStub(self.channel)
        self.volumes: volume_pb2_grpc.VolumeServiceAsyncStub = volume_pb2_grpc.VolumeServiceStub(self.channel)
        self.templates: template_pb2_grpc.TemplateServiceAsyncStub = template_pb2_grpc.TemplateServiceStub(
            self.channel
        )

    async def close(self) -> None:
        await self.channel.close()

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def create_sandbox(
        self, image: str = "", *, name: Optional[str] = None, **fields: object
    ) -> sandbox_pb2.Sandbox:
        """As ``Client.create_sandbox``."""
        request = _shared.create_request(image, name, fields)
        try:
            return (await self.sandboxes.CreateSandbox(request)).sandbox
        except grpc.RpcError as e:
            raise error_from(e) from None

    async def delete_sandbox(self, sandbox_id: str) -> None:
        try:
            await self.sandboxes.DeleteSandbox(sandbox_pb2.DeleteSandboxRequest(sandbox_id=sandbox_id))
        except grpc.RpcError as e:
            raise error_from(e) from None

    @contextlib.asynccontextmanager
    async def sandbox(
        self, image: str = "", *, name: Optional[str] = None, **fields: object
    ) -> AsyncIterator[sandbox_pb2.Sandbox]:
        """A sandbox for the ``async with`` block, deleted when it ends."""
        sandbox = await self.create_sandbox(image, name=name, **fields)
        try:
            yield sandbox
        finally:
            await self.delete_sandbox(sandbox.id)

    async def run(
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
        """As ``Client.run``."""
        spec = _shared.command_spec(command, env=env, workdir=workdir, user=user, timeout=timeout)
        request = exec_pb2.RunCommandRequest(
            sandbox_id=sandbox_id, spec=spec, stdin=stdin, max_output_bytes=max_output_bytes
        )
        try:
            return await self.exec.RunCommand(request)
        except grpc.RpcError as e:
            raise error_from(e) from None

    async def exec_command(
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
    ) -> "AsyncExecSession":
        """As ``Client.exec_command``."""
        start = exec_pb2.ExecStart(
            sandbox_id=sandbox_id,
            spec=_shared.command_spec(
                command, env=env, workdir=workdir, user=user, timeout=timeout, tty=tty, rows=rows, cols=cols
            ),
            on_disconnect=(
                exec_pb2.ON_DISCONNECT_KEEP_RUNNING if detach_keeps_running else exec_pb2.ON_DISCONNECT_KILL
            ),
        )
        return await AsyncExecSession.open(self.exec, exec_pb2.ExecRequest(start=start))

    async def attach(self, sandbox_id: str, command_id: str, *, after_seq: int = 0) -> "AsyncExecSession":
        """As ``Client.attach``."""
        attach = exec_pb2.ExecAttach(sandbox_id=sandbox_id, command_id=command_id, after_seq=after_seq)
        return await AsyncExecSession.open(self.exec, exec_pb2.ExecRequest(attach=attach))

    async def upload(
        self,
        sandbox_id: str,
        source: Union[str, IO[bytes]],
        path: str,
        *,
        mode: int = 0,
        overwrite: bool = False,
    ) -> file_pb2.UploadResponse:
        """As ``Client.upload``; the local file is read in a worker thread."""
        digest = hashlib.sha256()

        async def requests() -> AsyncIterator[file_pb2.UploadRequest]:
            yield _shared.upload_header(sandbox_id, path, mode, overwrite)
            file = open(source, "rb") if isinstance(source, str) else source
            try:
                while chunk := await asyncio.to_thread(file.read, _shared.CHUNK_BYTES):
                    digest.update(chunk)
                    yield file_pb2.UploadRequest(chunk=chunk)
            finally:
                if isinstance(source, str):
                    file.close()

        try:
            answer = await self.files.Upload(requests())
        except grpc.RpcError as e:
            raise error_from(e) from None
        _shared.check_upload(digest, answer, path)
        return answer

    async def download(
        self, sandbox_id: str, path: str, destination: Union[str, IO[bytes]]
    ) -> tuple[file_pb2.FileInfo, str]:
        """As ``Client.download``; the local file is written in a worker
        thread."""
        digest = hashlib.sha256()
        info = file_pb2.FileInfo()
        received = 0
        file = open(destination, "wb") if isinstance(destination, str) else destination
        try:
            async for message in self.files.Download(file_pb2.DownloadRequest(sandbox_id=sandbox_id, path=path)):
                if message.HasField("info"):
                    info = message.info
                else:
                    digest.update(message.chunk)
                    await asyncio.to_thread(file.write, message.chunk)
                    received += len(message.chunk)
        except grpc.RpcError as e:
            raise error_from(e) from None
        finally:
            if isinstance(destination, str):
                file.close()
        _shared.check_download(received, info, path)
        return info, digest.hexdigest()


class AsyncExecSession:
    """One Exec stream: ``async for`` gives ``ExecOutput`` chunks; when it
    ends, ``exited`` says how the command ended."""

    def __init__(
        self, call: grpc.aio.StreamStreamCall[exec_pb2.ExecRequest, exec_pb2.ExecResponse], command_id: str
    ) -> None:
        self._call = call
        self.command_id = command_id
        self.exited: Optional[exec_pb2.ExecExited] = None

    @classmethod
    async def open(cls, stub: exec_pb2_grpc.ExecServiceAsyncStub, first: exec_pb2.ExecRequest) -> "AsyncExecSession":
        call = stub.Exec()
        try:
            await call.write(first)
            started = await call.read()
        except grpc.RpcError as e:
            raise error_from(e) from None
        if not isinstance(started, exec_pb2.ExecResponse):
            raise PaddockError(grpc.StatusCode.UNAVAILABLE, "the stream ended before the command started")
        return cls(call, started.started.command_id)

    async def __aiter__(self) -> AsyncIterator[exec_pb2.ExecOutput]:
        try:
            while isinstance(message := await self._call.read(), exec_pb2.ExecResponse):
                kind = message.WhichOneof("response")
                if kind == "output":
                    yield message.output
                elif kind == "exited":
                    self.exited = message.exited
        except grpc.RpcError as e:
            raise error_from(e) from None

    async def wait(self) -> exec_pb2.ExecExited:
        """Reads the rest of the output (dropping it) and returns how the
        command ended."""
        async for _ in self:
            pass
        if self.exited is None:
            raise PaddockError(grpc.StatusCode.UNAVAILABLE, "the stream ended before the command did")
        return self.exited

    async def write(self, data: bytes) -> None:
        """Sends bytes to the command's stdin."""
        for message in _shared.stdin_messages(data):
            await self._call.write(message)

    async def close_stdin(self) -> None:
        await self._call.write(exec_pb2.ExecRequest(close_stdin=exec_pb2.CloseStdin()))

    async def resize(self, rows: int, cols: int) -> None:
        await self._call.write(exec_pb2.ExecRequest(resize=exec_pb2.Resize(rows=rows, cols=cols)))

    async def signal(self, name: str) -> None:
        """Signals the command's process group."""
        await self._call.write(exec_pb2.ExecRequest(signal=exec_pb2.Signal(name=name)))

    def detach(self) -> None:
        """Ends the stream; the command goes on or is killed as started."""
        self._call.cancel()
