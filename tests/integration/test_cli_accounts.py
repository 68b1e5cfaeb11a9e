"""Dify's account operator commands (`eddy create-tenant`, `reset-password`, `reset-email`)
against real Postgres and Redis, run as an operator would (`cli.main`), their effect checked
through the console a user logs in to."""

from __future__ import annotations

import httpx

from config import Settings
from tests.harness import Node, eventually, everything_recorded, running_node
from tests.integration.test_cli_operations import eddy


async def _login(node: Node, email: str, password: str) -> httpx.Response:
    return await node.client.post("/console/api/login",
                                  json={"email": email, "password": password})


async def _logs_in(node: Node, email: str, password: str) -> bool:
    return (await _login(node, email, password)).status_code == 200


async def test_create_tenant_makes_an_account_and_a_workspace(settings: Settings) -> None:
    async with running_node(settings) as node:
        await node.setup_and_login()
        code, out, err = await eddy("create-tenant", "--email", " ada@acme.test ",
                                    "--name", "Acme", "--language", "de-DE")
        assert code == 0, err
        lines = out.splitlines()
        assert lines[:2] == ["Account and tenant created.", "Account: ada@acme.test"]
        password = lines[2].removeprefix("Password: ")
        assert len(password) >= 16

        await eventually(lambda: _logs_in(node, "ada@acme.test", password))
        assert not any(password.encode() in blob for blob in await everything_recorded(node))
        headers = await node.console_login("ada@acme.test", password)
        profile = await node.client.get("/console/api/apps", headers=headers)
        assert profile.status_code == 200 and profile.json()["total"] == 0

        # an existing account gets another workspace; its password stays
        code, out, err = await eddy("create-tenant", "--email", "ada@acme.test")
        assert code == 0, err
        assert out.startswith("Tenant created.\nAccount: ada@acme.test\n")
        assert await _logs_in(node, "ada@acme.test", password)

        code, _, err = await eddy("create-tenant", "--email", "not-an-email")
        assert code == 1 and "Invalid email address." in err


async def test_reset_password_as_dify_checks_it(settings: Settings) -> None:
    async with running_node(settings) as node:
        await node.setup_and_login()
        # a session from before the reset (the account's taker's, say)
        tokens = (await _login(node, "owner@example.com", "passw0rd1")).json()["data"]
        stolen = {"Authorization": f"Bearer {tokens['access_token']}"}
        assert (await node.client.get("/console/api/apps", headers=stolen)).status_code == 200
        # wrong passwords lock the account out; the reset lets it in again (as Dify's does)
        for _ in range(settings.LOGIN_LOCKOUT_ATTEMPTS + 1):
            await _login(node, "owner@example.com", "wrong-password1")
        assert (await _login(node, "owner@example.com", "passw0rd1")).status_code == 429

        for argv, message in (
                (("--email", "owner@example.com", "--new-password", "newpassw0rd",
                  "--password-confirm", "otherpassw0rd"), "Passwords do not match."),
                (("--email", "nobody@example.com", "--new-password", "newpassw0rd",
                  "--password-confirm", "newpassw0rd"),
                 "Account not found for email: nobody@example.com"),
                (("--email", "owner@example.com", "--new-password", "short",
                  "--password-confirm", "short"), "Invalid password. Must match")):
            code, _, err = await eddy("reset-password", *argv)
            assert code == 1 and message in err
        code, out, err = await eddy("reset-password", "--email", "owner@example.com",
                                    "--new-password", "newpassw0rd",
                                    "--password-confirm", "newpassw0rd")
        assert code == 0 and out == "Password reset successfully.\n", err
        await eventually(lambda: _logs_in(node, "owner@example.com", "newpassw0rd"))
        assert not await _logs_in(node, "owner@example.com", "passw0rd1")
        # the reset ended every session from before it, as a forgotten-password reset does
        assert (await node.client.get("/console/api/apps", headers=stolen)).status_code == 401
        refreshed = await node.client.post("/console/api/refresh-token",
                                           json={"refresh_token": tokens["refresh_token"]})
        assert refreshed.status_code == 401
        fresh = await node.console_login("owner@example.com", "newpassw0rd")
        assert (await node.client.get("/console/api/apps", headers=fresh)).status_code == 200
        # the password reached no event, command, topic or read model in plaintext
        assert not any(b"newpassw0rd" in blob for blob in await everything_recorded(
            node, "console_v1.accounts"))

        # an option left out is asked for; with no terminal to ask at, it is required
        code, _, err = await eddy("reset-password", "--email", "owner@example.com")
        assert code == 2 and "--new-password is required" in err


async def test_reset_email_moves_the_login_and_keeps_the_address_unique(
        settings: Settings) -> None:
    async with running_node(settings) as node:
        await node.setup_and_login()
        for argv, message in (
                (("--email", "owner@example.com", "--new-email", "a@example.com",
                  "--email-confirm", "b@example.com"), "New emails do not match."),
                (("--email", "nobody@example.com", "--new-email", "a@example.com",
                  "--email-confirm", "a@example.com"),
                 "Account not found for email: nobody@example.com"),
                (("--email", "owner@example.com", "--new-email", "nope",
                  "--email-confirm", "nope"), "Invalid email: nope")):
            code, _, err = await eddy("reset-email", *argv)
            assert code == 1 and message in err
        code, out, err = await eddy("reset-email", "--email", "owner@example.com",
                                    "--new-email", "Boss@Example.com",
                                    "--email-confirm", "Boss@Example.com")
        assert code == 0 and out == "Email updated successfully.\n", err
        await eventually(lambda: _logs_in(node, "boss@example.com", "passw0rd1"))
        assert not await _logs_in(node, "owner@example.com", "passw0rd1")

        # the new address is taken: create-tenant finds its account, registers none
        code, out, err = await eddy("create-tenant", "--email", "boss@example.com")
        assert code == 0 and out.startswith("Tenant created."), err
        # another account cannot take it either
        code, out, err = await eddy("create-tenant", "--email", "dev@example.com")
        assert code == 0, err
        await eventually(lambda: _logs_in(
            node, "dev@example.com", out.splitlines()[2].removeprefix("Password: ")))
        code, _, err = await eddy("reset-email", "--email", "dev@example.com",
                                  "--new-email", "boss@example.com",
                                  "--email-confirm", "boss@example.com")
        assert code == 1 and "The email is already in use." in err
