"""MCP toolsets end to end: a real MCP server (the official ``mcp`` SDK) reached with vault credentials.

The server runs in this process on a loopback port, behind a bearer check that records every
token it sees; it also plays the OAuth token endpoint for refreshes.
"""

from __future__ import annotations

import secrets
import socket
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import anthropic
import orjson
import pytest

from agenthost.testing.fake_anthropic import Text, ToolUse
from tests.conftest import LiveServer, Script
from tests.engine.conftest import Recorder, assert_stream_equals_list, types
from tests.engine.observe import Weather, database_text, files_containing
from tests.engine.test_turns import TOOLSET, say

PAUSE = ["session.usage", "session.status_idle"]


def _mcp_agent(
    client: anthropic.Anthropic, script: Script, url: str, policy: str = "always_allow", **extra: Any
) -> Any:
    toolset = {
        "type": "mcp_toolset",
        "mcp_server_name": "weather",
        "default_config": {"permission_policy": {"type": policy}},
        **extra,
    }
    return script.agent(client, mcp_servers=[{"type": "url", "name": "weather", "url": url}], tools=[TOOLSET, toolset])


def _session(
    client: anthropic.Anthropic, agent: Any, environment: Any, vault_ids: list[str], recorders: list[Recorder]
) -> tuple[Any, Recorder]:
    session = client.beta.sessions.create(agent=agent.id, environment_id=environment.id, vault_ids=vault_ids)
    recorder = Recorder(client, session.id)
    recorders.append(recorder)
    return session, recorder


def _bearer_vault(client: anthropic.Anthropic, url: str, token: str) -> Any:
    vault = client.beta.vaults.create(display_name=f"user-{uuid.uuid4().hex[:6]}")
    auth = {"type": "static_bearer", "mcp_server_url": url, "token": token}
    client.beta.vaults.credentials.create(vault.id, auth=auth)
    return vault


def test_mcp_tool_runs_with_the_vault_token_which_appears_nowhere_else(
    client: anthropic.Anthropic,
    script: Script,
    environment: Any,
    recorders: list[Recorder],
    weather: Weather,
    server: LiveServer,
    logged: list[str],
) -> None:
    token = f"bearer-{secrets.token_hex(12)}"
    weather.valid.add(token)
    # The credential's URL is written differently from the agent's: matching normalises both.
    vault = _bearer_vault(client, weather.mcp_url.replace("http://", "HTTP://") + "/", token)
    agent = _mcp_agent(client, script, weather.mcp_url, configs=[{"name": "alerts", "enabled": False}])
    script(
        ToolUse("mcp__weather__forecast", {"city": "Oslo"}),
        ToolUse("bash", {"command": "env > /workspace/env.txt; ls /workspace"}),
        Text("Sunny in Oslo."),
    )
    session, recorder = _session(client, agent, environment, [vault.id], recorders)
    client.beta.sessions.events.send(session.id, events=[say("weather in Oslo?")])
    listed = assert_stream_equals_list(recorder.idles(), client, session.id)
    assert types(listed) == [
        "user.message",
        "session.status_running",
        "span.model_request_start",
        "agent.mcp_tool_use",
        "span.model_request_end",
        "agent.mcp_tool_result",
        "span.model_request_start",
        "agent.tool_use",
        "span.model_request_end",
        "agent.tool_result",
        "span.model_request_start",
        "agent.message",
        "span.model_request_end",
        *PAUSE,
    ]
    use, result = listed[3], listed[5]
    assert use.type == "agent.mcp_tool_use" and use.mcp_server_name == "weather" and use.name == "forecast"
    assert use.input == {"city": "Oslo"} and use.evaluated_permission == "allow"
    assert result.type == "agent.mcp_tool_result" and result.mcp_tool_use_id == use.id and not result.is_error
    assert result.content is not None and result.content[0].type == "text" and result.content[0].text == "sunny in Oslo"

    first, second, _ = script.requests()
    offered = {tool["name"]: tool for tool in first["tools"]}
    assert "mcp__weather__forecast" in offered and "mcp__weather__alerts" not in offered  # disabled in the toolset
    assert offered["mcp__weather__forecast"]["input_schema"]["required"] == ["city"]
    call = second["messages"][1]["content"][0]
    assert call == {"type": "tool_use", "id": use.id, "name": "mcp__weather__forecast", "input": {"city": "Oslo"}}
    assert second["messages"][2]["content"][0]["tool_use_id"] == use.id

    assert token in weather.seen
    assert token not in orjson.dumps([e.model_dump(mode="json") for e in listed]).decode()
    assert token not in database_text(server)
    assert any(weather.mcp_url in line for line in logged)  # the server's own requests are in the log
    assert [line for line in logged if token in line] == []
    assert server.sandbox_dir is not None
    assert files_containing(server.sandbox_dir / session.id, token.encode()) == []
    assert (server.sandbox_dir / session.id / "workspace" / "env.txt").exists()  # the sandbox did run


def test_mcp_tools_ask_by_default_and_a_denial_reaches_the_model(
    client: anthropic.Anthropic, script: Script, environment: Any, recorders: list[Recorder], weather: Weather
) -> None:
    token = f"bearer-{secrets.token_hex(12)}"
    weather.valid.add(token)
    vault = _bearer_vault(client, weather.mcp_url, token)
    toolset = {"type": "mcp_toolset", "mcp_server_name": "weather"}
    agent = script.agent(
        client, mcp_servers=[{"type": "url", "name": "weather", "url": weather.mcp_url}], tools=[toolset]
    )
    script(
        ToolUse("mcp__weather__forecast", {"city": "Rome"}, more=[("mcp__weather__alerts", {"region": "Lazio"})]),
        Text("Done."),
    )
    session, recorder = _session(client, agent, environment, [vault.id], recorders)
    client.beta.sessions.events.send(session.id, events=[say("weather?")])
    paused = recorder.idles(1)
    forecast, alerts = [e for e in paused if e.type == "agent.mcp_tool_use"]
    assert forecast.evaluated_permission == "ask" and forecast.evaluation is not None
    assert forecast.evaluation.type == "always_ask"
    assert paused[-1].type == "session.status_idle" and paused[-1].stop_reason.type == "requires_action"
    assert paused[-1].stop_reason.event_ids == [forecast.id, alerts.id]
    client.beta.sessions.events.send(
        session.id,
        events=[
            {"type": "user.tool_confirmation", "tool_use_id": forecast.id, "result": "allow"},
            {"type": "user.tool_confirmation", "tool_use_id": alerts.id, "result": "deny", "deny_message": "no"},
        ],
    )
    listed = assert_stream_equals_list(recorder.idles(2), client, session.id)
    results = {e.mcp_tool_use_id: e for e in listed if e.type == "agent.mcp_tool_result"}
    assert results[forecast.id].is_error is False and results[forecast.id].content[0].text == "sunny in Rome"
    assert results[alerts.id].is_error is True and "no" in results[alerts.id].content[0].text
    assert types(listed)[-5:] == ["span.model_request_start", "agent.message", "span.model_request_end", *PAUSE]


def test_a_refused_token_is_a_session_error_and_the_turn_goes_on(
    client: anthropic.Anthropic, script: Script, environment: Any, recorders: list[Recorder], weather: Weather
) -> None:
    vault = _bearer_vault(client, weather.mcp_url, "not-a-valid-token")
    agent = _mcp_agent(client, script, weather.mcp_url)
    script(Text("I cannot reach the weather service."))
    session, recorder = _session(client, agent, environment, [vault.id], recorders)
    client.beta.sessions.events.send(session.id, events=[say("weather?")])
    listed = assert_stream_equals_list(recorder.idles(), client, session.id)
    assert types(listed) == [
        "user.message",
        "session.status_running",
        "session.error",
        "span.model_request_start",
        "agent.message",
        "span.model_request_end",
        *PAUSE,
    ]
    error = listed[2]
    assert error.type == "session.error" and error.error.type == "mcp_authentication_failed_error"
    assert error.error.mcp_server_name == "weather" and error.error.retry_status.type == "retrying"
    assert "not-a-valid-token" not in error.error.message
    assert listed[-1].stop_reason.type == "end_turn"
    assert not any(t["name"].startswith("mcp__") for t in script.requests()[0].get("tools", []))


def test_an_unreachable_server_is_a_connection_error(
    client: anthropic.Anthropic, script: Script, environment: Any, recorders: list[Recorder]
) -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there
    agent = _mcp_agent(client, script, f"http://127.0.0.1:{port}/mcp")
    script(Text("No weather today."))
    session, recorder = _session(client, agent, environment, [], recorders)
    client.beta.sessions.events.send(session.id, events=[say("weather?")])
    listed = assert_stream_equals_list(recorder.idles(), client, session.id)
    error = next(e for e in listed if e.type == "session.error")
    assert error.error.type == "mcp_connection_failed_error" and error.error.mcp_server_name == "weather"
    assert listed[-1].type == "session.status_idle" and listed[-1].stop_reason.type == "end_turn"


def test_an_expired_oauth_token_is_refreshed_and_kept(
    client: anthropic.Anthropic, script: Script, environment: Any, recorders: list[Recorder], weather: Weather
) -> None:
    vault = client.beta.vaults.create(display_name="oauth user")
    credential = client.beta.vaults.credentials.create(
        vault.id,
        auth={
            "type": "mcp_oauth",
            "mcp_server_url": weather.mcp_url,
            "access_token": "stale-access-token",  # the server refuses it: it is refreshed
            "expires_at": datetime.now(UTC) + timedelta(hours=1),
            "refresh": {
                "client_id": "agenthost-test",
                "refresh_token": "refresh-me",
                "token_endpoint": f"{weather.url}/token",
                "token_endpoint_auth": {"type": "client_secret_post", "client_secret": "shh"},
            },
        },
    )
    agent = _mcp_agent(client, script, weather.mcp_url)
    script(ToolUse("mcp__weather__forecast", {"city": "Lima"}), Text("Sunny."))
    session, recorder = _session(client, agent, environment, [vault.id], recorders)
    client.beta.sessions.events.send(session.id, events=[say("weather?")])
    listed = assert_stream_equals_list(recorder.idles(), client, session.id)
    assert "session.error" not in types(listed)
    result = next(e for e in listed if e.type == "agent.mcp_tool_result")
    assert result.content is not None and result.content[0].text == "sunny in Lima"
    refresh = weather.refreshes[-1]
    assert refresh["grant_type"] == "refresh_token" and refresh["refresh_token"] == "refresh-me"
    assert refresh["client_id"] == "agenthost-test" and refresh["client_secret"] == "shh"
    kept = client.beta.vaults.credentials.retrieve(credential.id, vault_id=vault.id)
    assert kept.auth.type == "mcp_oauth" and kept.auth.expires_at is not None
    assert kept.auth.expires_at > datetime.now(UTC) + timedelta(minutes=50)


def _oauth(url: str, access_token: str, token_endpoint: str) -> dict[str, Any]:
    return {
        "type": "mcp_oauth",
        "mcp_server_url": url,
        "access_token": access_token,
        "refresh": {
            "client_id": "agenthost-test",
            "refresh_token": "refresh-me",
            "token_endpoint": token_endpoint,
            "token_endpoint_auth": {"type": "none"},
        },
    }


def test_mcp_oauth_validate(client: anthropic.Anthropic, weather: Weather) -> None:
    vault = client.beta.vaults.create(display_name="validate")
    credentials = client.beta.vaults.credentials
    good = f"good-{secrets.token_hex(6)}"
    weather.valid.add(good)
    valid = credentials.create(vault.id, auth=_oauth(weather.mcp_url, good, f"{weather.url}/token"))
    checked = credentials.mcp_oauth_validate(valid.id, vault_id=vault.id)
    assert checked.type == "vault_credential_validation" and checked.status == "valid"
    assert checked.credential_id == valid.id and checked.vault_id == vault.id and checked.has_refresh_token is True
    assert checked.mcp_probe is None and checked.refresh is None

    credentials.archive(valid.id, vault_id=vault.id)  # frees the server URL for the next one
    refreshed = credentials.create(
        vault.id, auth=_oauth(weather.mcp_url.replace("/mcp", "/mcp/"), "stale", f"{weather.url}/token")
    )
    checked = credentials.mcp_oauth_validate(refreshed.id, vault_id=vault.id)
    assert checked.status == "valid" and checked.refresh is not None and checked.refresh.status == "succeeded"

    credentials.archive(refreshed.id, vault_id=vault.id)
    denied = credentials.create(vault.id, auth=_oauth(weather.mcp_url, "stale", f"{weather.url}/token-denied"))
    checked = credentials.mcp_oauth_validate(denied.id, vault_id=vault.id)
    assert checked.status == "invalid" and checked.mcp_probe is not None
    assert checked.mcp_probe.http_response is not None and checked.mcp_probe.http_response.status_code == 401
    assert checked.refresh is not None and checked.refresh.status == "failed"
    assert checked.refresh.http_response is not None and checked.refresh.http_response.status_code == 400
    assert "invalid_grant" in checked.refresh.http_response.body

    bearer = credentials.create(
        vault.id, auth={"type": "static_bearer", "mcp_server_url": "https://other.example.com/mcp", "token": "t"}
    )
    with pytest.raises(anthropic.BadRequestError, match="only mcp_oauth"):
        credentials.mcp_oauth_validate(bearer.id, vault_id=vault.id)
