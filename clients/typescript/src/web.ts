/**
 * Paddock from a browser (or any runtime with `fetch`): `connectWeb()`
 * speaks gRPC-Web to a server started with `--grpc-web`. gRPC-Web carries
 * unary and server-streaming calls only: everything but Exec, Upload and
 * UploadArchive, whose client streams need gRPC (`connect()` in Node).
 */

import type { Interceptor } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";

import { PaddockClient, apiKeyInterceptor } from "./index.js";

export * from "./index.js";

/** Connects to `baseUrl` (such as `https://paddock.example:50051`) with gRPC-Web. */
export function connectWeb(
  baseUrl: string,
  options: { apiKey?: string; interceptors?: Interceptor[] } = {},
): PaddockClient {
  const interceptors = [...(options.apiKey ? [apiKeyInterceptor(options.apiKey)] : []), ...(options.interceptors ?? [])];
  return new PaddockClient(createGrpcWebTransport({ baseUrl, interceptors }));
}
