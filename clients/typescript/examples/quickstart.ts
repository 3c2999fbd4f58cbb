/**
 * Paddock from TypeScript: create a sandbox, run a command, talk to an
 * interactive shell, move a file both ways, delete the sandbox.
 *
 *   npm run build
 *   PADDOCK_ADDR=http://127.0.0.1:50051 node dist/examples/quickstart.js
 *
 * With PADDOCK_TRANSPORT=grpc-web it talks gRPC-Web (as a browser does) to a
 * server started with --grpc-web, and does what gRPC-Web can: run commands,
 * write and read files, download, watch, delete. PADDOCK_API_KEY is sent
 * when set; PADDOCK_IMAGE names the image (default: the server's).
 */

import { randomBytes, createHash } from "node:crypto";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ConnectError, Code } from "@connectrpc/connect";

import { connect, downloadFile, uploadFile, OutputStream, SandboxState, type PaddockClient } from "../src/node.js";
import { connectWeb } from "../src/web.js";

const transport = process.env.PADDOCK_TRANSPORT ?? "grpc";
const image = process.env.PADDOCK_IMAGE ?? "";
const decoder = new TextDecoder();

function check(condition: unknown, what: string): asserts condition {
  if (!condition) throw new Error(`check failed: ${what}`);
}

async function overGrpc(client: PaddockClient): Promise<void> {
  await client.withSandbox({ image, labels: { example: "quickstart-ts" } }, async (sandbox) => {
    console.log(`created ${sandbox.id} (${SandboxState[sandbox.state]})`);

    const ran = await client.run(sandbox.id, "echo hello from $(uname -s)", { timeoutSeconds: 30 });
    console.log(`run: ${decoder.decode(ran.stdout).trim()} (exit ${ran.exitCode})`);
    check(ran.exitCode === 0 && decoder.decode(ran.stdout).startsWith("hello from"), "run");

    const shell = await client.execCommand(sandbox.id, ["sh"]);
    shell.write(new TextEncoder().encode("echo typed into the shell\necho to stderr >&2; exit 3\n"));
    shell.closeStdin();
    const output = { out: "", err: "" };
    for await (const chunk of shell) {
      if (chunk.stream === OutputStream.STDERR) output.err += decoder.decode(chunk.data);
      else output.out += decoder.decode(chunk.data);
    }
    const exited = await shell.exited;
    console.log(`exec: ${JSON.stringify(output)}, exit ${exited.exitCode}`);
    check(output.out === "typed into the shell\n" && output.err === "to stderr\n", "exec output");
    check(exited.exitCode === 3, "exec exit code");

    const local = await mkdtemp(join(tmpdir(), "paddock-ts-"));
    try {
      const data = Buffer.concat([randomBytes(3 << 20), Buffer.from("end")]);
      await writeFile(join(local, "sent.bin"), data);
      const uploaded = await uploadFile(client, sandbox.id, join(local, "sent.bin"), "inbox/data.bin");
      const back = await downloadFile(client, sandbox.id, "inbox/data.bin", join(local, "back.bin"));
      check((await readFile(join(local, "back.bin"))).equals(data), "the file came back byte for byte");
      check(back.sha256 === uploaded.sha256 && back.sha256 === createHash("sha256").update(data).digest("hex"), "sha256");
      console.log(`upload + download: ${data.length} bytes, sha256 ${uploaded.sha256.slice(0, 12)}…`);
    } finally {
      await rm(local, { recursive: true, force: true });
    }

    try {
      await client.run(sandbox.id, []);
      check(false, "an empty command is refused");
    } catch (error) {
      const refused = ConnectError.from(error);
      console.log(`refused: ${Code[refused.code]}: ${refused.rawMessage}`);
      check(refused.code === Code.InvalidArgument, "INVALID_ARGUMENT");
    }
  });
}

async function overGrpcWeb(client: PaddockClient): Promise<void> {
  await client.withSandbox({ image, labels: { example: "quickstart-ts-web" } }, async (sandbox) => {
    console.log(`created ${sandbox.id} over gRPC-Web`);
    const ran = await client.run(sandbox.id, ["sh", "-c", "echo $((6 * 7))"]);
    check(decoder.decode(ran.stdout) === "42\n", "run over gRPC-Web");
    console.log(`run: ${decoder.decode(ran.stdout).trim()}`);

    const content = new TextEncoder().encode("line one\nline two\n".repeat(20_000));
    await client.files.writeFile({ sandboxId: sandbox.id, path: "notes/big.txt", content });
    const read = await client.files.readFile({ sandboxId: sandbox.id, path: "notes/big.txt", offset: 2n, limit: 1n });
    check(decoder.decode(read.content) === "line two\n", "ReadFile by line");
    let downloaded = 0;
    for await (const message of client.files.download({ sandboxId: sandbox.id, path: "notes/big.txt" })) {
      if (message.response.case === "chunk") downloaded += message.response.value.length;
    }
    check(downloaded === content.length, "a server stream over gRPC-Web");
    console.log(`write, read and download: ${downloaded} bytes`);
  });
}

async function main(): Promise<void> {
  const address = process.env.PADDOCK_ADDR ?? "http://127.0.0.1:50051";
  if (transport === "grpc-web") {
    await overGrpcWeb(connectWeb(address, { apiKey: process.env.PADDOCK_API_KEY }));
  } else {
    await overGrpc(connect(address));
  }
  console.log(`quickstart (${transport}): every step passed`);
}

main().catch((error) => {
  console.error(`quickstart (${transport}): ${error instanceof ConnectError ? `${Code[error.code]}: ${error.rawMessage}` : error}`);
  process.exit(1);
});
