"""Paddock from a stock Python gRPC client beside the Docker Engine API from
the `docker` package, alternated sample by sample on one sandbox container.

Run by the benchmark (benches/paddock/python.rs), which starts the server
and the sandbox; prints one JSON object per operation on stdout:
{"operation", "paddock", "floor", "floor_name", "bytes"} with the samples'
seconds. Paddock's side uses the client library in clients/python as a user
would (its upload and download helpers check sha256 and sizes); the floor
is the engine's archive API with the tar built beforehand, and `exec_run`.
"""

import argparse
import io
import json
import os
import tarfile
import time

import docker

from paddock import Client
from paddock.v1 import exec_pb2

IDLE_SECONDS = 0.05


def timed(work):
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def alternate(rounds, ours, floor, idle=0.0):
    """`rounds` samples of each, alternated; with `idle`, each sample
    follows that much quiet, as an agent's calls do."""
    paddock, engine = [], []
    for _ in range(rounds):
        for samples, work in ((paddock, ours), (engine, floor)):
            if idle:
                time.sleep(idle)
            samples.append(timed(work))
    return paddock, engine


def one_file_tar(name, data):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--address", required=True)
    parser.add_argument("--sandbox", required=True)
    parser.add_argument("--container", required=True)
    parser.add_argument("--command-rounds", type=int, required=True)
    parser.add_argument("--transfer-rounds", type=int, required=True)
    parser.add_argument("--bytes", type=int, required=True)
    args = parser.parse_args()

    client = Client(args.address)
    container = docker.from_env().containers.get(args.container)
    report = []

    def run_true():
        answer = client.run(args.sandbox, ["true"])
        assert answer.exit_code == 0, answer

    def exec_true():
        result = container.exec_run(["true"])
        assert result.exit_code == 0, result

    # Warm both paths (connections, the agent's first command).
    run_true()
    exec_true()
    ours, floor = alternate(args.command_rounds, run_true, exec_true, idle=IDLE_SECONDS)
    report.append(
        {
            "operation": "Python client: RunCommand of `true` after 50 ms idle",
            "paddock": ours,
            "floor_name": "docker package: exec_run of `true` after 50 ms idle",
            "floor": floor,
            "bytes": 0,
        }
    )

    data = os.urandom(args.bytes)
    tar = one_file_tar("python-floor.bin", data)

    def upload():
        client.upload(args.sandbox, io.BytesIO(data), "/tmp/python-upload.bin", overwrite=True)

    def put_archive():
        assert container.put_archive("/tmp", tar)

    ours, floor = alternate(args.transfer_rounds, upload, put_archive)
    report.append(
        {
            "operation": f"Python client: Upload of {args.bytes >> 20} MiB",
            "paddock": ours,
            "floor_name": "docker package: put_archive (tar built beforehand)",
            "floor": floor,
            "bytes": args.bytes,
        }
    )

    def download():
        sink = io.BytesIO()
        info, _ = client.download(args.sandbox, "/tmp/python-upload.bin", sink)
        assert info.size == args.bytes, info

    def get_archive():
        stream, _ = container.get_archive("/tmp/python-floor.bin")
        received = sum(len(chunk) for chunk in stream)
        assert received >= args.bytes, received

    ours, floor = alternate(args.transfer_rounds, download, get_archive)
    report.append(
        {
            "operation": f"Python client: Download of {args.bytes >> 20} MiB",
            "paddock": ours,
            "floor_name": "docker package: get_archive",
            "floor": floor,
            "bytes": args.bytes,
        }
    )
    for entry in report:
        print(json.dumps(entry))


if __name__ == "__main__":
    main()
