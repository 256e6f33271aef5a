"""Files in sessions, end to end: attached files read by the agent, outputs kept as session files."""

from __future__ import annotations

import io
from typing import Any

import anthropic
import pytest

from agenthost.testing.fake_anthropic import Text, ToolUse
from tests.conftest import BWRAP_PROBLEM, Script
from tests.engine.conftest import ONE_TOOL_TURN, Recorder, assert_stream_equals_list, types
from tests.engine.test_turns import TOOLSET, say

pytestmark = pytest.mark.skipif(
    BWRAP_PROBLEM is not None, reason=f"the /mnt/session mounts need a sandbox: {BWRAP_PROBLEM}"
)


def _results(listed: list[Any]) -> list[tuple[bool, str]]:
    return [(bool(e.is_error), e.content[0].text) for e in listed if e.type == "agent.tool_result"]


def _session(client: anthropic.Anthropic, script: Script, environment: Any, **create: Any) -> Any:
    agent = script.agent(client, tools=[TOOLSET])
    return client.beta.sessions.create(agent=agent.id, environment_id=environment.id, **create)


def test_attached_file_is_read_and_outputs_become_downloadable_files(
    client: anthropic.Anthropic, script: Script, environment: Any, recorders: list[Recorder]
) -> None:
    uploaded = client.beta.files.upload(file=("data.csv", io.BytesIO(b"city,pop\nOslo,700000\n"), "text/csv"))
    script(
        ToolUse("read", {"file_path": "/mnt/session/uploads/data.csv"}),
        ToolUse(
            "bash",
            {
                "command": "wc -l < /mnt/session/uploads/data.csv > /mnt/session/outputs/count.txt; "
                "mkdir -p /mnt/session/outputs/deep/er && printf '\\x00\\x01' > /mnt/session/outputs/deep/er/b.bin; "
                "ln -s /etc/passwd /mnt/session/outputs/leak; mkfifo /mnt/session/outputs/pipe; "
                "echo no > /mnt/session/uploads/data.csv"
            },
        ),
        ToolUse("write", {"file_path": "/mnt/session/outputs/count.txt", "content": "two lines\n"}),
        Text("counted"),
    )
    session = _session(
        client, script, environment, resources=[{"type": "file", "file_id": uploaded.id, "mount_path": "data.csv"}]
    )
    recorder = Recorder(client, session.id)
    recorders.append(recorder)
    client.beta.sessions.events.send(session.id, events=[say("count the rows")])
    listed = assert_stream_equals_list(recorder.idles(), client, session.id)
    assert types(listed)[:5] == ONE_TOOL_TURN[:5]
    read, bash, write = _results(listed)
    assert read == (False, "     1\tcity,pop\n     2\tOslo,700000")
    assert bash[0] is True and "Read-only file system" in bash[1]  # the uploads mount refuses writes
    assert write[0] is False

    outputs = {f.filename: f for f in client.beta.files.list(scope_id=session.id)}
    assert sorted(outputs) == ["b.bin", "count.txt"]  # no symlink, no FIFO
    count = outputs["count.txt"]
    assert count.downloadable is True and count.scope is not None and count.scope.id == session.id
    assert count.mime_type == "text/plain" and count.size_bytes == len(b"two lines\n")
    assert client.beta.files.download(count.id).read() == b"two lines\n"  # the write replaced the bash output
    assert client.beta.files.download(outputs["b.bin"].id).read() == b"\x00\x01"
    # Outputs are listed with the workspace's files too, but the session's copy of the upload is not.
    everything = {f.id for f in client.beta.files.list()}
    assert everything == {uploaded.id, count.id, outputs["b.bin"].id}

    client.beta.sessions.delete(session.id)
    assert list(client.beta.files.list(scope_id=session.id)) == []
    with pytest.raises(anthropic.NotFoundError):
        client.beta.files.retrieve_metadata(count.id)
    assert client.beta.files.retrieve_metadata(uploaded.id).id == uploaded.id


def test_files_added_and_removed_while_a_session_lives_appear_and_go(
    client: anthropic.Anthropic, script: Script, environment: Any, recorders: list[Recorder]
) -> None:
    first = client.beta.files.upload(file=("a.txt", io.BytesIO(b"alpha"), "text/plain"))
    second = client.beta.files.upload(file=("b.txt", io.BytesIO(b"beta"), "text/plain"))
    listing = "find /mnt/session/uploads -type f | sort; cat /mnt/session/uploads/in/*"
    script(ToolUse("bash", {"command": listing}), Text("one"), ToolUse("bash", {"command": listing}), Text("two"))
    session = _session(client, script, environment)
    recorder = Recorder(client, session.id)
    recorders.append(recorder)
    kept = client.beta.sessions.resources.add(session.id, type="file", file_id=first.id, mount_path="/in/a.txt")
    dropped = client.beta.sessions.resources.add(session.id, type="file", file_id=second.id, mount_path="/in/b.txt")
    client.beta.sessions.events.send(session.id, events=[say("look")])
    recorder.idles(1)
    client.beta.sessions.resources.delete(dropped.id, session_id=session.id)
    client.beta.sessions.events.send(session.id, events=[say("look again")])
    listed = assert_stream_equals_list(recorder.idles(2), client, session.id)
    before, after = _results(listed)
    assert before == (False, "/mnt/session/uploads/in/a.txt\n/mnt/session/uploads/in/b.txt\nalphabeta")
    assert after == (False, "/mnt/session/uploads/in/a.txt\nalpha")
    assert [r.id for r in client.beta.sessions.resources.list(session.id)] == [kept.id]


def test_an_unchanged_output_is_kept_once(
    client: anthropic.Anthropic, script: Script, environment: Any, recorders: list[Recorder]
) -> None:
    script(
        ToolUse("bash", {"command": "echo report > /mnt/session/outputs/r.txt"}),
        ToolUse("bash", {"command": "cat /mnt/session/outputs/r.txt"}),
        Text("done"),
    )
    session = _session(client, script, environment)
    recorder = Recorder(client, session.id)
    recorders.append(recorder)
    client.beta.sessions.events.send(session.id, events=[say("report")])
    recorder.idles(1)
    (kept,) = client.beta.files.list(scope_id=session.id)
    assert kept.filename == "r.txt" and client.beta.files.download(kept.id).read() == b"report\n"
