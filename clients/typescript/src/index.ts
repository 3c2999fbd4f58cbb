/**
 * Paddock's TypeScript client: the generated descriptors of every service
 * (`./gen/paddock/v1/*_pb.js`, by protoc-gen-es) used through Connect, and a
 * thin layer where raw gRPC is clumsy. It works over any Connect transport:
 * `connect()` from `./node.js` speaks gRPC over HTTP/2 in Node,
 * `connectWeb()` from `./web.js` speaks gRPC-Web with `fetch`, as browsers
 * do (gRPC-Web has no client streaming, so Exec and Upload need gRPC).
 *
 * Errors are Connect's `ConnectError`: `code` is the gRPC status code and
 * `rawMessage` the server's sentence.
 */

import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { createClient, type Client, type Interceptor, type Transport } from "@connectrpc/connect";

import {
  CommandSpecSchema,
  ExecRequestSchema,
  ExecService,
  OnDisconnect,
  type ExecExited,
  type ExecOutput,
  type ExecRequest,
  type ExecResponse,
  type RunCommandResponse,
} from "./gen/paddock/v1/exec_pb.js";
import { FileService } from "./gen/paddock/v1/file_pb.js";
import { PortService } from "./gen/paddock/v1/port_pb.js";
import { TemplateService } from "./gen/paddock/v1/template_pb.js";
import { VolumeService } from "./gen/paddock/v1/volume_pb.js";
import { CreateSandboxRequestSchema, SandboxService, type Sandbox } from "./gen/paddock/v1/sandbox_pb.js";

export * from "./gen/paddock/v1/exec_pb.js";
export * from "./gen/paddock/v1/file_pb.js";
export * from "./gen/paddock/v1/port_pb.js";
export * from "./gen/paddock/v1/template_pb.js";
export * from "./gen/paddock/v1/volume_pb.js";
export * from "./gen/paddock/v1/sandbox_pb.js";

/** Where a client connects when given no address and PADDOCK_ADDR is unset. */
export const DEFAULT_ADDRESS = "http://127.0.0.1:50051";

/** A shell command line (run by `/bin/sh -c`) or a program and its arguments. */
export type Command = string | string[];

/** How a command runs; the fields of CommandSpec with the timeout in seconds. */
export interface CommandOptions {
  env?: Record<string, string>;
  workdir?: string;
  user?: string;
  timeoutSeconds?: number;
}

/** Sends `authorization: Bearer <key>` on every call. */
export function apiKeyInterceptor(apiKey: string): Interceptor {
  return (next) => async (request) => {
    request.header.set("authorization", `Bearer ${apiKey}`);
    return next(request);
  };
}

/** The CommandSpec for `command`: a string runs under the shell, a list directly. */
export function commandSpec(command: Command, options: CommandOptions & { tty?: boolean } = {}) {
  return create(CommandSpecSchema, {
    ...(typeof command === "string" ? { shell: command } : { command }),
    env: options.env ?? {},
    workdir: options.workdir ?? "",
    user: options.user ?? "",
    tty: options.tty ?? false,
    timeout: options.timeoutSeconds === undefined ? undefined : durationFromMs(options.timeoutSeconds * 1000),
  });
}

/** A connection to a Paddock server: the generated clients and the helpers. */
export class PaddockClient {
  readonly sandboxes: Client<typeof SandboxService>;
  readonly exec: Client<typeof ExecService>;
  readonly files: Client<typeof FileService>;
  readonly ports: Client<typeof PortService>;
  readonly volumes: Client<typeof VolumeService>;
  readonly templates: Client<typeof TemplateService>;

  constructor(readonly transport: Transport) {
    this.sandboxes = createClient(SandboxService, transport);
    this.exec = createClient(ExecService, transport);
    this.files = createClient(FileService, transport);
    this.ports = createClient(PortService, transport);
    this.volumes = createClient(VolumeService, transport);
    this.templates = createClient(TemplateService, transport);
  }

  /** Creates a sandbox; it comes back RUNNING, or FAILED with `stateReason`. */
  async createSandbox(request: MessageInitShape<typeof CreateSandboxRequestSchema> = {}): Promise<Sandbox> {
    const made = await this.sandboxes.createSandbox(request);
    if (!made.sandbox) throw new Error("CreateSandbox answered without a sandbox");
    return made.sandbox;
  }

  async deleteSandbox(sandboxId: string): Promise<void> {
    await this.sandboxes.deleteSandbox({ sandboxId });
  }

  /** Runs `body` with a new sandbox and deletes the sandbox however it ends. */
  async withSandbox<T>(
    request: MessageInitShape<typeof CreateSandboxRequestSchema>,
    body: (sandbox: Sandbox) => Promise<T>,
  ): Promise<T> {
    const sandbox = await this.createSandbox(request);
    try {
      return await body(sandbox);
    } finally {
      await this.deleteSandbox(sandbox.id);
    }
  }

  /** Runs a command to its end; the answer holds its exit code and output. */
  async run(
    sandboxId: string,
    command: Command,
    options: CommandOptions & { stdin?: Uint8Array; maxOutputBytes?: number } = {},
  ): Promise<RunCommandResponse> {
    return this.exec.runCommand({
      sandboxId,
      spec: commandSpec(command, options),
      stdin: options.stdin ?? new Uint8Array(),
      maxOutputBytes: BigInt(options.maxOutputBytes ?? 0),
    });
  }

  /** Starts an interactive command on an Exec stream (gRPC transports only). */
  async execCommand(
    sandboxId: string,
    command: Command,
    options: CommandOptions & { tty?: boolean; killOnDisconnect?: boolean } = {},
  ): Promise<ExecSession> {
    const onDisconnect = options.killOnDisconnect ? OnDisconnect.KILL : OnDisconnect.KEEP_RUNNING;
    const start = { sandboxId, spec: commandSpec(command, options), onDisconnect };
    return ExecSession.open(this, create(ExecRequestSchema, { request: { case: "start", value: start } }));
  }

  /** Follows a command started earlier: its retained output, then live. */
  async attach(sandboxId: string, commandId: string, afterSeq = 0n): Promise<ExecSession> {
    const attach = { sandboxId, commandId, afterSeq };
    return ExecSession.open(this, create(ExecRequestSchema, { request: { case: "attach", value: attach } }));
  }
}

/**
 * One Exec stream. `for await (const chunk of session)` gives its output
 * (`stream`, `data`, `seq`) as it comes; `exited` resolves when the command
 * has ended. `write`, `closeStdin`, `resize` and `signal` may be called
 * meanwhile.
 */
export class ExecSession implements AsyncIterable<ExecOutput> {
  /** How the command ended, once it has. */
  readonly exited: Promise<ExecExited>;
  private resolveExited!: (exited: ExecExited) => void;
  private rejectExited!: (error: unknown) => void;

  private constructor(
    private readonly responses: AsyncIterator<ExecResponse>,
    private readonly requests: RequestQueue,
    private readonly abort: AbortController,
    readonly commandId: string,
  ) {
    this.exited = new Promise((resolve, reject) => {
      this.resolveExited = resolve;
      this.rejectExited = reject;
    });
    // A caller that only iterates must not meet an unhandled rejection.
    this.exited.catch(() => {});
  }

  static async open(client: PaddockClient, first: ExecRequest): Promise<ExecSession> {
    const requests = new RequestQueue(first);
    const abort = new AbortController();
    const responses = client.exec.exec(requests, { signal: abort.signal })[Symbol.asyncIterator]();
    const started = await responses.next();
    if (started.done || started.value.response.case !== "started") {
      requests.end();
      abort.abort();
      throw new Error("the Exec stream ended before the command started");
    }
    return new ExecSession(responses, requests, abort, started.value.response.value.commandId);
  }

  async *[Symbol.asyncIterator](): AsyncIterator<ExecOutput> {
    try {
      for (;;) {
        const next = await this.responses.next();
        if (next.done) break;
        const response = next.value.response;
        if (response.case === "output") yield response.value;
        if (response.case === "exited") this.resolveExited(response.value);
      }
      this.rejectExited(new Error("the Exec stream ended before the command did"));
    } catch (error) {
      this.rejectExited(error);
      throw error;
    } finally {
      this.requests.end();
    }
  }

  /** Reads the rest of the output (dropping it) and returns how it ended. */
  async wait(): Promise<ExecExited> {
    for await (const _ of this) {
      // dropped
    }
    return this.exited;
  }

  /** Sends bytes to the command's stdin. */
  write(data: Uint8Array): void {
    for (let at = 0; at < data.length; at += MAX_STDIN_MESSAGE) {
      this.send({ case: "stdin", value: data.subarray(at, at + MAX_STDIN_MESSAGE) });
    }
  }

  closeStdin(): void {
    this.send({ case: "closeStdin", value: {} });
  }

  resize(rows: number, cols: number): void {
    this.send({ case: "resize", value: { rows, cols } });
  }

  /** Signals the command's process group ("SIGINT", "TERM", "9"). */
  signal(name: string): void {
    this.send({ case: "signal", value: { name } });
  }

  /** Ends the stream; the command goes on or is killed as it was started. */
  detach(): void {
    this.requests.end();
    this.abort.abort();
  }

  private send(request: MessageInitShape<typeof ExecRequestSchema>["request"]): void {
    this.requests.push(create(ExecRequestSchema, { request }));
  }
}

/** The most stdin bytes in one Exec message. */
const MAX_STDIN_MESSAGE = 1 << 20;

/** The messages an Exec stream sends: the first, then what the session queues. */
class RequestQueue implements AsyncIterable<ExecRequest> {
  private readonly queue: ExecRequest[];
  private wake: (() => void) | undefined;
  private ended = false;

  constructor(first: ExecRequest) {
    this.queue = [first];
  }

  push(request: ExecRequest): void {
    if (this.ended) return;
    this.queue.push(request);
    this.wake?.();
  }

  end(): void {
    this.ended = true;
    this.wake?.();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<ExecRequest> {
    for (;;) {
      const next = this.queue.shift();
      if (next) {
        yield next;
      } else if (this.ended) {
        return;
      } else {
        await new Promise<void>((resolve) => (this.wake = resolve));
        this.wake = undefined;
      }
    }
  }
}
