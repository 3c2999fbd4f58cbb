"""Paddock from Python, blocking: create a sandbox, run a command, talk to an
interactive shell, upload and download a file, and delete the sandbox.

    PADDOCK_ADDR=http://127.0.0.1:50051 python examples/quickstart.py

PADDOCK_API_KEY is sent when set; PADDOCK_IMAGE names the image (default:
the server's).
"""

import hashlib
import os
import sys
import tempfile

from paddock import Client, PaddockError
from paddock.v1 import sandbox_pb2


def main() -> None:
    with Client() as client, client.sandbox(os.environ.get("PADDOCK_IMAGE", ""), labels={"example": "quickstart"}) as sandbox:
        print(f"created {sandbox.id} ({sandbox_pb2.SandboxState.Name(sandbox.state)})")

        # A command to its end: a string runs under /bin/sh -c.
        ran = client.run(sandbox.id, "echo hello from $(uname -s)", timeout=30)
        print(f"run: {ran.stdout.decode().strip()} (exit {ran.exit_code})")
        assert ran.exit_code == 0 and ran.stdout.startswith(b"hello from"), ran

        # An interactive shell: stdin in, output as it comes.
        shell = client.exec_command(sandbox.id, ["sh"])
        shell.write(b"echo typed into the shell\n")
        shell.write(b"echo to stderr >&2; exit 3\n")
        shell.close_stdin()
        output = {1: b"", 2: b""}
        for chunk in shell:
            output[chunk.stream] += chunk.data
        assert shell.exited is not None, "iterating to the end gives how it ended"
        print(f"exec: {output[1].decode().strip()!r} / {output[2].decode().strip()!r}, exit {shell.exited.exit_code}")
        assert output[1] == b"typed into the shell\n" and output[2] == b"to stderr\n", output
        assert shell.exited.exit_code == 3, shell.exited

        # A file in and out, its sha256 checked both ways.
        with tempfile.TemporaryDirectory() as local:
            sent = os.path.join(local, "sent.bin")
            with open(sent, "wb") as file:
                file.write(os.urandom(3 << 20) + b"end")
            uploaded = client.upload(sandbox.id, sent, "inbox/data.bin")
            print(f"upload: {uploaded.info.size} bytes, sha256 {uploaded.sha256[:12]}…")
            back = os.path.join(local, "back.bin")
            info, digest = client.download(sandbox.id, "inbox/data.bin", back)
            with open(sent, "rb") as file:
                assert digest == hashlib.sha256(file.read()).hexdigest() == uploaded.sha256
            print(f"download: {info.size} bytes, the same sha256")

        # The server's sentence for a mistake, as an exception.
        try:
            client.run(sandbox.id, [])
        except PaddockError as error:
            print(f"refused: {error}")

    gone = client_state(sandbox.id)
    print(f"deleted: {gone}")
    assert gone == "SANDBOX_STATE_DELETED", gone
    print("quickstart: every step passed")


def client_state(sandbox_id: str) -> str:
    with Client() as client:
        got = client.sandboxes.GetSandbox(sandbox_pb2.GetSandboxRequest(sandbox_id=sandbox_id))
        return sandbox_pb2.SandboxState.Name(got.sandbox.state)


if __name__ == "__main__":
    try:
        main()
    except PaddockError as error:
        sys.exit(f"quickstart: {error}")
