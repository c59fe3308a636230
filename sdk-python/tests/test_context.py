"""Credentials and `ctx.sg` (behaviour 5 of the SDK behaviour spec): read once from the
environment, all three or none, the key never shown; the connection made lazily, once, with the
plugin's own credentials; clear errors when it cannot be made."""

from __future__ import annotations

import sys
import types
import unittest
from typing import Any, Dict, List, Optional
from unittest import mock

import _support
from _support import shot_new_event
from sgevents import Context, Credentials, MissingCredentials, Plugin, SdkError, ShotgunNotInstalled
from sgevents._context import read_credentials
from sgevents.testing import PluginRunner

CREDS = {
    "SGEVENTS_SITE_URL": "https://studio.shotgrid.autodesk.com",
    "SGEVENTS_SCRIPT_NAME": "task_status",
    "SGEVENTS_SCRIPT_KEY": "s3cr3t-key",
}


class CredentialTests(_support.TestCase):
    def test_all_three_or_none(self) -> None:
        creds, missing = read_credentials(CREDS)
        self.assertEqual(creds, Credentials("https://studio.shotgrid.autodesk.com", "task_status", "s3cr3t-key"))
        self.assertEqual(missing, [])
        self.assertEqual(read_credentials({}), (None, []))
        self.assertEqual(read_credentials({"PATH": "/bin"}), (None, []))
        partial = dict(CREDS, SGEVENTS_SCRIPT_KEY="")
        self.assertEqual(read_credentials(partial), (None, ["SGEVENTS_SCRIPT_KEY"]))
        only_url = {"SGEVENTS_SITE_URL": CREDS["SGEVENTS_SITE_URL"]}
        self.assertEqual(read_credentials(only_url), (None, ["SGEVENTS_SCRIPT_NAME", "SGEVENTS_SCRIPT_KEY"]))
        self.assertEqual(Credentials.from_environ(CREDS), creds)
        self.assertIsNone(Credentials.from_environ(partial))

    def test_the_key_is_never_shown(self) -> None:
        creds = Credentials.from_environ(CREDS)
        for text in (repr(creds), str(creds), f"{creds}", repr([creds])):
            self.assertNotIn("s3cr3t-key", text)
            self.assertIn("<redacted>", text)
            self.assertIn("task_status", text)

    def test_callbacks_get_the_credentials_and_the_context_hides_the_key(self) -> None:
        plugin = Plugin()
        seen: List[Context] = []
        plugin.subscribe(lambda ctx, event: seen.append(ctx), ["*"], name="a")
        PluginRunner(plugin, environ=CREDS).run([shot_new_event()])
        self.assertEqual(seen[0].credentials, Credentials.from_environ(CREDS))
        self.assertNotIn("s3cr3t-key", repr(seen[0]))

    def test_partial_credentials_are_warned_about_at_start(self) -> None:
        plugin = Plugin()
        plugin.subscribe(lambda ctx, event: None, ["*"], name="a")
        result = PluginRunner(plugin, environ={"SGEVENTS_SITE_URL": "https://x"}).run([])
        self.assertIn(
            ("warn", "only some ShotGrid credentials are set (missing: SGEVENTS_SCRIPT_NAME, SGEVENTS_SCRIPT_KEY); `ctx.sg` will not work"),
            result.logs,
        )


class FakeShotgun:
    """Stands in for `shotgun_api3.Shotgun` and remembers how it was made."""

    made: List["FakeShotgun"] = []

    def __init__(self, base_url: str, script_name: Optional[str] = None, api_key: Optional[str] = None, **kw: Any) -> None:
        self.args = (base_url, script_name, api_key, kw)
        FakeShotgun.made.append(self)


def fake_shotgun_api3() -> types.ModuleType:
    module = types.ModuleType("shotgun_api3")
    module.Shotgun = FakeShotgun  # type: ignore[attr-defined]
    FakeShotgun.made = []
    return module


class ShotgunTests(_support.TestCase):
    def plugin_using_sg(self, errors: List[BaseException], conns: List[Any]) -> Plugin:
        plugin = Plugin()

        @plugin.on("*")
        def uses_sg(ctx: Context, event: Dict[str, Any]) -> None:
            if event["id"] % 2 == 0:  # odd events do not touch ctx.sg
                return
            try:
                conns.append(ctx.sg)
            except SdkError as err:
                errors.append(err)
                raise

        return plugin

    def test_the_connection_is_made_lazily_once_with_the_plugins_credentials(self) -> None:
        errors: List[BaseException] = []
        conns: List[Any] = []
        with mock.patch.dict(sys.modules, {"shotgun_api3": fake_shotgun_api3()}):
            with PluginRunner(self.plugin_using_sg(errors, conns), environ=CREDS).start() as session:
                session.deliver(shot_new_event(2))
                self.assertEqual(session.read()["type"], "ack")
                self.assertEqual(FakeShotgun.made, [], "not made before first use")
                for event_id in (3, 5, 7):
                    session.deliver(shot_new_event(event_id))
                    self.assertEqual(session.read(), {"type": "ack", "event_id": event_id})
        self.assertEqual(errors, [])
        self.assertEqual(len(FakeShotgun.made), 1, "made once, then reused")
        self.assertEqual(FakeShotgun.made[0].args, (CREDS["SGEVENTS_SITE_URL"], "task_status", "s3cr3t-key", {}))
        self.assertTrue(all(c is FakeShotgun.made[0] for c in conns))

    def test_without_credentials_the_error_says_where_to_set_them(self) -> None:
        errors: List[BaseException] = []
        with mock.patch.dict(sys.modules, {"shotgun_api3": fake_shotgun_api3()}):
            result = PluginRunner(self.plugin_using_sg(errors, []), plugin_name="task-status").run([shot_new_event(1)])
        (err,) = errors
        self.assertIsInstance(err, MissingCredentials)
        self.assertIsInstance(err, SdkError)
        message = str(err)
        self.assertTrue(message.startswith("cannot make `ctx.sg`: plugin `task-status` has no ShotGrid credentials"), message)
        self.assertIn("SGEVENTS_SITE_URL", message)
        self.assertTrue(
            message.endswith("\nhint: set script_name and script_key_env in the plugin's [plugin.task-status] table"), message
        )
        self.assertEqual(result.answer(1)["type"], "nack")
        self.assertIn("hint: set script_name", result.answer(1)["error"])
        self.assertEqual(FakeShotgun.made, [])

    def test_without_shotgun_api3_the_error_says_what_to_install(self) -> None:
        errors: List[BaseException] = []
        # None in sys.modules makes `import shotgun_api3` raise ImportError.
        with mock.patch.dict(sys.modules, {"shotgun_api3": None}):
            PluginRunner(self.plugin_using_sg(errors, []), environ=CREDS).run([shot_new_event(1)])
        (err,) = errors
        self.assertIsInstance(err, ShotgunNotInstalled)
        message = str(err)
        self.assertTrue(message.startswith("cannot make `ctx.sg`: `shotgun_api3` cannot be imported by `"), message)
        self.assertIn(sys.executable, message)
        self.assertTrue(message.endswith("\nhint: pip install shotgun_api3 into the plugin's Python"), message)

    def test_a_runner_can_hand_out_a_fake_connection(self) -> None:
        fake = object()
        conns: List[Any] = []
        PluginRunner(self.plugin_using_sg([], conns), sg=fake).run([shot_new_event(1)])
        self.assertEqual(conns, [fake])


if __name__ == "__main__":
    unittest.main()
