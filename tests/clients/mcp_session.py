"""An agent's session with `paddock mcp`, through the official MCP Python SDK.

    mcp_session.py stdio PADDOCK_BINARY SERVER_ADDR
    mcp_session.py http URL

Lists the tools, then creates a sandbox, writes a program, edits it, greps
it, runs it with a timeout, reads it back, copies files both ways, meets a
refusal as a tool error with the server's sentence, and deletes the sandbox.
"""

import asyncio
import os
import sys
import tempfile

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client

TOOLS = {
    "create_sandbox", "delete_sandbox", "list_sandboxes", "run_command", "read_file",
    "write_file", "edit_file", "list_files", "find_files", "grep", "upload_file", "download_file",
}


async def call(session: ClientSession, tool: str, **arguments: object) -> str:
    result = await session.call_tool(tool, arguments)
    text = "".join(block.text for block in result.content if block.type == "text")
    assert not result.is_error, f"{tool} failed: {text}"
    return text


async def refused(session: ClientSession, tool: str, **arguments: object) -> str:
    result = await session.call_tool(tool, arguments)
    text = "".join(block.text for block in result.content if block.type == "text")
    assert result.is_error, f"{tool} should have failed: {text}"
    return text


async def session_steps(session: ClientSession) -> None:
    await session.initialize()
    tools = {tool.name: tool for tool in (await session.list_tools()).tools}
    assert set(tools) == TOOLS, sorted(tools)
    for tool in tools.values():
        assert tool.description and len(tool.description) > 20, tool
    assert "sandbox" in tools["run_command"].input_schema["required"]

    made = await call(session, "create_sandbox", name="mcp-session")
    assert made.startswith("created sandbox sbx_"), made
    again = await call(session, "create_sandbox", name="mcp-session")
    assert again.startswith("found sandbox ") and made.split()[2] == again.split()[2], (made, again)

    s = "mcp-session"
    await call(session, "write_file", sandbox=s, path="app/hello.sh", content="echo hello\necho bye\n")
    edited = await call(session, "edit_file", sandbox=s, path="app/hello.sh", old_text="hello", new_text="hello, agent")
    assert "replaced once" in edited, edited
    found = await call(session, "grep", sandbox=s, pattern="agent", path="app")
    assert found.strip().endswith("hello.sh:1:echo hello, agent"), found
    ran = await call(session, "run_command", sandbox=s, command="sh app/hello.sh", timeout_seconds=30)
    assert ran.startswith("exit code 0") and "hello, agent\nbye" in ran, ran
    slow = await call(session, "run_command", sandbox=s, command="sleep 30", timeout_seconds=1)
    assert slow.startswith("timed out after 1"), slow
    read = await call(session, "read_file", sandbox=s, path="app/hello.sh", offset=2, limit=1)
    assert read == "     2\techo bye\n", repr(read)
    listed = await call(session, "list_files", sandbox=s, path="app")
    assert "hello.sh (" in listed, listed
    globbed = await call(session, "find_files", sandbox=s, pattern="**/*.sh")
    assert "hello.sh" in globbed, globbed

    refusal = await refused(session, "edit_file", sandbox=s, path="app/hello.sh", old_text="absent", new_text="x")
    assert "old_text does not appear in" in refusal, refusal
    missing = await refused(session, "read_file", sandbox="no-such-sandbox", path="x")
    assert "no-such-sandbox" in missing, missing

    with tempfile.TemporaryDirectory() as local:
        sent = os.path.join(local, "sent.bin")
        with open(sent, "wb") as file:
            file.write(os.urandom(3 << 20))
        await call(session, "upload_file", sandbox=s, local_path=sent, path="data/blob.bin")
        back = os.path.join(local, "back.bin")
        await call(session, "download_file", sandbox=s, path="data/blob.bin", local_path=back)
        with open(sent, "rb") as a, open(back, "rb") as b:
            assert a.read() == b.read(), "the file came back byte for byte"

    # A template the test made beforehand, keeping one sandbox warm: claimed
    # at once, the env given here reaching its commands.
    warm = await call(session, "create_sandbox", name="mcp-warm", template="mcp-ready", env={"WHO": "agent"})
    assert warm.startswith("created sandbox sbx_"), warm
    ran = await call(session, "run_command", sandbox="mcp-warm", command="echo $STAGE $WHO; cat setup.log")
    assert "template agent\nset-up" in ran, ran
    missing = await refused(session, "create_sandbox", template="no-such-template")
    assert "no-such-template" in missing, missing
    await call(session, "delete_sandbox", sandbox="mcp-warm")

    deleted = await call(session, "delete_sandbox", sandbox=s)
    assert deleted.startswith("deleted sandbox sbx_"), deleted
    assert "mcp-session" not in await call(session, "list_sandboxes")


async def main() -> None:
    mode = sys.argv[1]
    if mode == "stdio":
        server = StdioServerParameters(command=sys.argv[2], args=["mcp", "--server", sys.argv[3]])
        async with stdio_client(server) as (read, write), ClientSession(read, write) as session:
            await session_steps(session)
    else:
        async with streamable_http_client(sys.argv[2]) as (read, write), ClientSession(read, write) as session:
            await session_steps(session)
    print(f"mcp session over {mode}: every step passed")


asyncio.run(main())
