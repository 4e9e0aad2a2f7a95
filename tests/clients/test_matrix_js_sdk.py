"""matrix-js-sdk, the SDK inside Element Web/Desktop, against a real homeserver on SQLite and on PostgreSQL.

``tests/clients/js/scenario.mjs`` drives two js-sdk ``MatrixClient``s the way Element does (lazy-loaded members,
thread support, detached pending events, rust crypto from WASM with an in-memory store) and prints one JSON
object with what each SDK computed. The assertions below are on those SDK-side values: the timeline bodies,
the edited content, the Thread object, the unread count, member names, the decrypted plaintext.

Needs Node.js 20+ and npm; ``npm ci`` runs in ``tests/clients/js`` once, when ``node_modules`` is missing.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
from typing import Any

import pytest

from tests.support.server import HomeserverProcess

JS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "js")
SCENARIO_TIMEOUT_S = 120
NPM_INSTALL_TIMEOUT_S = 300
INSTALLED_MARKER = os.path.join(JS_DIR, "node_modules", ".tocsin-npm-installed")


def _node_ready() -> str:
    """Path of a Node.js >= 20 with the locked packages installed; fails the test (never skips) otherwise."""
    node = shutil.which("node")
    npm = shutil.which("npm")
    if not node or not npm:
        pytest.fail("matrix-js-sdk tests need Node.js 20+ and npm on PATH")
    version = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=10).stdout.strip()
    if int(version.lstrip("v").split(".")[0]) < 20:
        pytest.fail(f"matrix-js-sdk tests need Node.js 20+, found {version}")
    # The SQLite and PostgreSQL runs sit on different xdist workers: one installs while the other waits on the
    # lock, and a marker written after a complete install (never a half-extracted node_modules) says it is done.
    with open(os.path.join(JS_DIR, ".npm-install.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not os.path.exists(INSTALLED_MARKER):
            locked = os.path.exists(os.path.join(JS_DIR, "package-lock.json"))
            cmd = [npm, "ci" if locked else "install", "--no-audit", "--no-fund"]
            proc = subprocess.run(cmd, cwd=JS_DIR, capture_output=True, text=True, timeout=NPM_INSTALL_TIMEOUT_S)
            if proc.returncode != 0:
                pytest.fail(f"{' '.join(cmd)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
            with open(INSTALLED_MARKER, "w") as marker:
                marker.write(" ".join(cmd) + "\n")
    return node


def _run_scenario(homeserver: HomeserverProcess) -> dict[str, Any]:
    """Run the scenario against ``homeserver``; returns its ``results`` or fails with the script's output."""
    node = _node_ready()
    env = dict(os.environ, SCENARIO_TIMEOUT_MS=str((SCENARIO_TIMEOUT_S - 10) * 1000))
    proc = subprocess.run([node, "scenario.mjs", homeserver.base_url], cwd=JS_DIR, env=env, capture_output=True,
                          text=True, timeout=SCENARIO_TIMEOUT_S)
    lines = proc.stdout.strip().splitlines()
    diagnostics = (f"exit {proc.returncode}\n--- stdout ---\n{proc.stdout[-6000:]}\n--- stderr ---\n"
                   f"{proc.stderr[-6000:]}\n--- homeserver log ---\n{homeserver.log_tail(60)}")
    try:
        outcome = json.loads(lines[-1])
    except (IndexError, ValueError):
        pytest.fail(f"scenario printed no JSON result\n{diagnostics}")
    if not outcome["ok"] or proc.returncode != 0:
        pytest.fail(f"scenario failed: {outcome['error']}\n{diagnostics}")
    return outcome["results"]


def test_element_sdk_flow(homeserver: HomeserverProcess) -> None:
    results = _run_scenario(homeserver)
    alice, bob = results["users"]
    assert results["prepared"] is True
    p = results["plain"]

    # Start-up: what js-sdk reads before PREPARED.
    assert "v1.4" in p["versions"]  # threads (MSC3440) are stable from v1.4; the SDK gates thread support on it
    assert p["threads_supported"] is True
    assert {"m.change_password", "m.room_versions", "m.set_displayname"} <= set(p["capabilities"])
    assert p["pushrules_loaded"] is True

    assert p["bob_invite_name"] == "js-sdk incident"
    assert p["alice_room_members"] == sorted([alice, bob])
    assert p["alice_timeline"] == ["disk full on db-1", "on it"]
    assert p["bob_timeline"] == ["disk full on db-1", "on it"]

    # Unread notification count as the SDK computes it, and back to zero after a read receipt.
    assert p["unread_after_message"] >= 1
    assert p["unread_after_receipt"] == 0
    assert p["alice_sees_bob_read_up_to"] == p["alert_event_id"]
    assert p["alice_sees_bob_typing"] is True and p["alice_sees_bob_stopped_typing"] is True

    assert p["edited_body_bob_sees"] == "disk full on db-1 (90 GB)"
    assert p["edit_original_body"] == "disk full on db-1"
    assert p["reactions_alice_sees"] == [["\N{EYES}", 1]]

    # Threads: the receiver's Thread object, /relations back-fill on the other side, threaded receipts.
    assert p["thread"] == {"root": p["alert_event_id"], "length": 1, "reply_body": "restarted the service",
                           "root_body": "CPU 98% on web-3", "in_main_timeline": False}
    assert p["bob_thread"] == {"length": 2, "root_count_in_aggregation": 2,
                               "bodies": ["CPU 98% on web-3", "restarted the service",
                                          "confirmed, load is back to normal"]}
    assert p["alice_thread_bodies"] == ["restarted the service", "confirmed, load is back to normal"]
    assert p["alice_root_thread_summary"] == {"count": 2, "current_user_participated": True,
                                              "latest_event_id": p["thread_answer_id"]}
    assert p["receipt_thread_id_sent"] == p["alert_event_id"]
    assert p["thread_receipt_alice_sees"] == p["thread_answer_id"]
    assert p["bob_thread_unread_before_receipt"] == 1  # alice's answer; bob's own reply never counts
    assert p["bob_thread_unread_after_receipt"] == 0

    assert p["bob_member_name_alice_sees"] == "Bob (on call)"

    # Media: the SDK builds the authenticated v1 URL (server advertises v1.11); legacy media is frozen.
    assert p["content_uri"].startswith(f"mxc://{homeserver.server_name}/")
    assert p["download_auth"] == {"status": 200, "body": "stack trace line 1\nline 2\n", "content_type": "text/plain"}
    assert p["download_legacy"]["status"] == 404
    assert json.loads(p["download_legacy"]["body"])["errcode"] == "M_NOT_FOUND"

    assert p["redacted"] == {"content": {}, "reason": "posted by mistake", "in_timeline": True}

    assert p["bob_membership_after_leave"] == "leave"
    assert p["alice_sees_bob_membership"] == "leave"

    # A new device's first sync: the summary names the unnamed room from its heroes, whose memberships come with
    # lazy-loading even though carol never spoke; back-pagination reaches the first message.
    f = results["fresh_device"]
    alice_local = alice[1:].split(":")[0]
    assert f["room_name"] == f"{alice_local} and Carol (SRE)"
    assert f["joined_member_count"] == 3
    assert f["initial_timeline"] == [f"alert {i}" for i in range(8, 13)]
    assert f["unread_total"] == 12
    assert f["carol_loaded_before_members"] is True and f["alice_loaded_before_members"] is True
    assert len(f["joined_after_members"]) == 3 and bob in f["joined_after_members"]
    assert f["timeline_after_scrollback"] == [f"alert {i}" for i in range(1, 13)]

    # Rust crypto (WASM) in Node: megolm both ways between the two SDKs.
    assert results["crypto_init"] == "ok"
    e = results["encrypted"]
    assert e["alice_room_encrypted"] is True and e["bob_room_encrypted"] is True
    assert len(e["alice_knows_bob_devices"]) == 1
    assert e["wire_type"] == "m.room.encrypted" and e["alice_reply_wire_type"] == "m.room.encrypted"
    assert e["bob_decrypted_body"] == "encrypted: page the DBA"
    assert e["bob_sees_sender"] == alice
    assert e["alice_decrypted_body"] == "encrypted: DBA paged"
    # Before cross-signing alice's device is unsigned: red shield (EventShieldColour.RED, UNSIGNED_DEVICE).
    assert e["bob_encryption_info"] == {"shieldColour": 2, "shieldReason": 2}
    # After bootstrapCrossSigning (through password UIA) bob's crypto re-queried her keys on device_lists.changed.
    assert e["alice_cross_signing_ready"] is True
    assert e["bob_sees_alice_device"] == {"signedByOwner": True, "crossSigningVerified": False}
    assert e["bob_third_body"] == "encrypted: after cross-signing"
    assert e["bob_third_shield"] == {"shieldColour": 0, "shieldReason": None}
    # Key backup: the version the SDK created is active, and both megolm sessions alice holds (her outbound one
    # and bob's, received over to-device) were uploaded to it.
    assert e["backup_version_active"] == e["backup_info_version"] and e["backup_version_active"]
    assert e["backed_up_sessions"] == 2
