// Command example uses Paddock from Go through the generated code: create
// a sandbox, run a command, talk to an interactive shell, move a file both
// ways, delete the sandbox.
//
//	PADDOCK_ADDR=127.0.0.1:50051 go run ./example
//
// PADDOCK_ADDR is HOST:PORT or unix:PATH; PADDOCK_API_KEY is sent when set.
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log"
	"os"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	paddock "paddock.dev/client/gen/paddock/v1"
)

func main() {
	log.SetFlags(0)
	addr := os.Getenv("PADDOCK_ADDR")
	if addr == "" {
		addr = "127.0.0.1:50051"
	}
	// grpc.WithInsecure: plaintext; Debian's grpc-go 1.33 predates credentials/insecure.
	conn, err := grpc.Dial(addr, grpc.WithInsecure())
	check(err, "dial")
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if key := os.Getenv("PADDOCK_API_KEY"); key != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+key)
	}
	sandboxes := paddock.NewSandboxServiceClient(conn)
	execs := paddock.NewExecServiceClient(conn)
	files := paddock.NewFileServiceClient(conn)

	made, err := sandboxes.CreateSandbox(ctx, &paddock.CreateSandboxRequest{
		Image:  os.Getenv("PADDOCK_IMAGE"),
		Labels: map[string]string{"example": "quickstart-go"},
	})
	check(err, "create")
	id := made.GetSandbox().GetId()
	fmt.Printf("created %s (%s)\n", id, made.GetSandbox().GetState())
	defer func() {
		_, err := sandboxes.DeleteSandbox(ctx, &paddock.DeleteSandboxRequest{SandboxId: id})
		check(err, "delete")
		fmt.Println("quickstart (go): every step passed")
	}()

	ran, err := execs.RunCommand(ctx, &paddock.RunCommandRequest{
		SandboxId: id,
		Spec:      &paddock.CommandSpec{Shell: "echo hello from $(uname -s)"},
	})
	check(err, "run")
	expect(ran.GetExitCode() == 0 && bytes.HasPrefix(ran.GetStdout(), []byte("hello from")), "run: %v", ran)
	fmt.Printf("run: %s", ran.GetStdout())

	// An interactive shell on an Exec stream.
	stream, err := execs.Exec(ctx)
	check(err, "exec")
	check(stream.Send(&paddock.ExecRequest{Request: &paddock.ExecRequest_Start{Start: &paddock.ExecStart{
		SandboxId: id,
		Spec:      &paddock.CommandSpec{Command: []string{"sh"}},
	}}}), "start")
	for _, line := range []string{"echo typed into the shell\n", "echo to stderr >&2; exit 3\n"} {
		check(stream.Send(&paddock.ExecRequest{Request: &paddock.ExecRequest_Stdin{Stdin: []byte(line)}}), "stdin")
	}
	check(stream.Send(&paddock.ExecRequest{Request: &paddock.ExecRequest_CloseStdin{CloseStdin: &paddock.CloseStdin{}}}), "close")
	var out, errOut bytes.Buffer
	var exited *paddock.ExecExited
	for exited == nil {
		message, err := stream.Recv()
		check(err, "exec output")
		if output := message.GetOutput(); output != nil {
			if output.GetStream() == paddock.OutputStream_OUTPUT_STREAM_STDERR {
				errOut.Write(output.GetData())
			} else {
				out.Write(output.GetData())
			}
		}
		exited = message.GetExited()
	}
	check(stream.CloseSend(), "close send")
	expect(out.String() == "typed into the shell\n" && errOut.String() == "to stderr\n", "exec: %q %q", out.String(), errOut.String())
	expect(exited.GetExitCode() == 3, "exit code %d", exited.GetExitCode())
	fmt.Printf("exec: %q / %q, exit %d\n", out.String(), errOut.String(), exited.GetExitCode())

	// A file up in 1 MiB chunks and back, its sha256 checked.
	data := make([]byte, 3<<20+3)
	_, err = rand.Read(data)
	check(err, "random")
	upload, err := files.Upload(ctx)
	check(err, "upload")
	check(upload.Send(&paddock.UploadRequest{Request: &paddock.UploadRequest_Header{Header: &paddock.UploadHeader{
		SandboxId: id, Path: "inbox/data.bin",
	}}}), "upload header")
	for start := 0; start < len(data); start += 1 << 20 {
		end := start + 1<<20
		if end > len(data) {
			end = len(data)
		}
		check(upload.Send(&paddock.UploadRequest{Request: &paddock.UploadRequest_Chunk{Chunk: data[start:end]}}), "chunk")
	}
	uploaded, err := upload.CloseAndRecv()
	check(err, "upload answer")
	sum := sha256.Sum256(data)
	expect(uploaded.GetSha256() == hex.EncodeToString(sum[:]), "sha256 %s", uploaded.GetSha256())
	download, err := files.Download(ctx, &paddock.DownloadRequest{SandboxId: id, Path: "inbox/data.bin"})
	check(err, "download")
	var back bytes.Buffer
	for {
		message, err := download.Recv()
		if err == io.EOF {
			break
		}
		check(err, "download chunk")
		back.Write(message.GetChunk())
	}
	expect(bytes.Equal(back.Bytes(), data), "the file came back byte for byte")
	fmt.Printf("upload + download: %d bytes, sha256 %s…\n", len(data), uploaded.GetSha256()[:12])
}

func check(err error, what string) {
	if err != nil {
		log.Fatalf("quickstart (go): %s: %v", what, err)
	}
}

func expect(ok bool, format string, args ...interface{}) {
	if !ok {
		log.Fatalf("quickstart (go): "+format, args...)
	}
}
