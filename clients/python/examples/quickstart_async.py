"""Paddock from Python with asyncio: the quickstart's steps, and three
commands in three sandboxes at once.

    PADDOCK_ADDR=http://127.0.0.1:50051 python examples/quickstart_async.py
"""

import asyncio
import hashlib
import io
import os
import sys

from paddock import AsyncClient, PaddockError
from paddock.v1 import sandbox_pb2

IMAGE = os.environ.get("PADDOCK_IMAGE", "")


async def main() -> None:
    async with AsyncClient() as client:
        async with client.sandbox(IMAGE, labels={"example": "quickstart-async"}) as sandbox:
            ran = await client.run(sandbox.id, ["sh", "-c", "echo $((6 * 7))"])
            print(f"run: {ran.stdout.decode().strip()}")
            assert ran.stdout == b"42\n", ran

            shell = await client.exec_command(sandbox.id, "read line; echo got: $line; exit 5")
            await shell.write(b"a line\n")
            output = b""
            async for chunk in shell:
                output += chunk.data
            assert shell.exited is not None, "iterating to the end gives how it ended"
            print(f"exec: {output.decode().strip()!r}, exit {shell.exited.exit_code}")
            assert output == b"got: a line\n" and shell.exited.exit_code == 5

            data = os.urandom(2 << 20)
            uploaded = await client.upload(sandbox.id, io.BytesIO(data), "inbox/async.bin")
            received = io.BytesIO()
            _, digest = await client.download(sandbox.id, "inbox/async.bin", received)
            assert received.getvalue() == data
            assert digest == uploaded.sha256 == hashlib.sha256(data).hexdigest()
            print(f"upload + download: {len(data)} bytes, sha256 matches")

        async def one(n: int) -> bytes:
            async with client.sandbox(IMAGE, labels={"example": "quickstart-async"}) as sandbox:
                return (await client.run(sandbox.id, f"echo sandbox {n}")).stdout

        outputs = await asyncio.gather(*(one(n) for n in range(3)))
        print(f"at once: {[o.decode().strip() for o in outputs]}")
        assert outputs == [b"sandbox 0\n", b"sandbox 1\n", b"sandbox 2\n"]

        try:
            await client.run("sbx_0123456789abcdef0123456789abcdef", "true")
        except PaddockError as error:
            print(f"refused: {error}")
            assert error.code.name == "NOT_FOUND"

        listed = await client.sandboxes.ListSandboxes(
            sandbox_pb2.ListSandboxesRequest(label_selector="example=quickstart-async")
        )
        assert not listed.sandboxes, "every sandbox was deleted"
    print("quickstart_async: every step passed")


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except PaddockError as error:
        sys.exit(f"quickstart_async: {error}")
