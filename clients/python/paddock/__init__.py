"""Paddock's Python client.

``Client`` (blocking) and ``AsyncClient`` (asyncio) connect to a Paddock
server and carry the generated stubs of every service (``paddock.v1``) plus
helpers: run or stream a command, upload and download files with their
checksums checked, and a sandbox that deletes itself. Errors from helpers are
``PaddockError`` with the server's sentence.
"""

from paddock._shared import ChecksumMismatch, PaddockError
from paddock.aio import AsyncClient, AsyncExecSession
from paddock.client import Client, ExecSession

__all__ = [
    "AsyncClient",
    "AsyncExecSession",
    "ChecksumMismatch",
    "Client",
    "ExecSession",
    "PaddockError",
]
