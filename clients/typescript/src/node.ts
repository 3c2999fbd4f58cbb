/**
 * Paddock from Node: `connect()` speaks gRPC over HTTP/2 (plaintext, TLS
 * or a Unix socket), and files move between this machine and a sandbox with
 * their sha256 checked.
 */

import { createHash } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { once } from "node:events";
import { connect as netConnect } from "node:net";
import { create } from "@bufbuild/protobuf";
import type { Interceptor } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";

import { DEFAULT_ADDRESS, PaddockClient, apiKeyInterceptor } from "./index.js";
import { UploadRequestSchema, type FileInfo, type UploadRequest, type UploadResponse } from "./gen/paddock/v1/file_pb.js";

export * from "./index.js";

export interface ConnectOptions {
  /** The API key; default: $PADDOCK_API_KEY. */
  apiKey?: string;
  /** More interceptors, run after the one that adds the key. */
  interceptors?: Interceptor[];
}

/**
 * Connects to a server at `address`: `http://HOST:PORT`, `https://HOST:PORT`,
 * `HOST:PORT` or `unix:PATH` (default: $PADDOCK_ADDR, else
 * http://127.0.0.1:50051).
 */
export function connect(address?: string, options: ConnectOptions = {}): PaddockClient {
  const target = address ?? process.env.PADDOCK_ADDR ?? DEFAULT_ADDRESS;
  const apiKey = options.apiKey ?? process.env.PADDOCK_API_KEY;
  const interceptors = [...(apiKey ? [apiKeyInterceptor(apiKey)] : []), ...(options.interceptors ?? [])];
  if (target.startsWith("unix:")) {
    const path = target.slice("unix:".length);
    return new PaddockClient(
      createGrpcTransport({
        baseUrl: "http://localhost",
        interceptors,
        nodeOptions: { createConnection: () => netConnect(path) },
      }),
    );
  }
  const baseUrl = /^[a-z]+:\/\//.test(target) ? target : `http://${target}`;
  return new PaddockClient(createGrpcTransport({ baseUrl, interceptors }));
}

/** The size of upload chunks; the server takes at most 1 MiB. */
const CHUNK_BYTES = 1 << 20;

/**
 * Streams a local file to `path` in the sandbox; rejects unless the server
 * wrote the sha256 that was sent.
 */
export async function uploadFile(
  client: PaddockClient,
  sandboxId: string,
  localPath: string,
  path: string,
  options: { mode?: number; overwrite?: boolean } = {},
): Promise<UploadResponse> {
  const digest = createHash("sha256");
  async function* requests(): AsyncIterable<UploadRequest> {
    yield create(UploadRequestSchema, {
      request: {
        case: "header",
        value: { sandboxId, path, mode: options.mode ?? 0, overwrite: options.overwrite ?? false },
      },
    });
    for await (const chunk of createReadStream(localPath, { highWaterMark: CHUNK_BYTES })) {
      digest.update(chunk as Buffer);
      yield create(UploadRequestSchema, { request: { case: "chunk", value: chunk as Buffer } });
    }
  }
  const answer = await client.files.upload(requests());
  const sent = digest.digest("hex");
  if (answer.sha256 !== sent) {
    throw new Error(`${path}: the server wrote sha256 ${answer.sha256}, but ${sent} was sent`);
  }
  return answer;
}

/**
 * Streams `path` from the sandbox into a local file; returns the file's
 * info and the sha256 of what arrived, and rejects when fewer or more bytes
 * arrived than the file holds.
 */
export async function downloadFile(
  client: PaddockClient,
  sandboxId: string,
  path: string,
  localPath: string,
): Promise<{ info: FileInfo | undefined; sha256: string }> {
  const digest = createHash("sha256");
  const out = createWriteStream(localPath);
  let info: FileInfo | undefined;
  let received = 0n;
  try {
    for await (const message of client.files.download({ sandboxId, path })) {
      if (message.response.case === "info") info = message.response.value;
      if (message.response.case === "chunk") {
        const chunk = message.response.value;
        digest.update(chunk);
        received += BigInt(chunk.length);
        if (!out.write(chunk)) await once(out, "drain");
      }
    }
  } finally {
    out.end();
    await once(out, "close");
  }
  if (info && received !== info.size) {
    throw new Error(`${path}: ${received} bytes arrived of ${info.size}`);
  }
  return { info, sha256: digest.digest("hex") };
}
