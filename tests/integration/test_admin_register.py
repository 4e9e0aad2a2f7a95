"""Shared-secret registration (/_synapse/admin/v1/register) and scripts/register_new_user."""

import hashlib
import hmac
import os
import subprocess
import sys

from tests.support.client import CS, Api
from tests.support.server import ROOT

SECRET = "test-shared-secret"  # what tests/support/server.py writes into the config
PATH = "/_synapse/admin/v1/register"


def _mac(nonce: str, user: str, password: str, admin: bool, secret: str = SECRET) -> str:
    m = hmac.new(secret.encode(), digestmod=hashlib.sha1)
    m.update(f"{nonce}\0{user}\0{password}\0{'admin' if admin else 'notadmin'}".encode())
    return m.hexdigest()


def test_register_admin_with_hmac(api: Api, homeserver) -> None:
    nonce = api.request("GET", PATH).json["nonce"]
    body = {"nonce": nonce, "username": "opsadmin", "password": "pw", "admin": True,
            "mac": _mac(nonce, "opsadmin", "pw", True)}
    r = api.request("POST", PATH, body)
    assert r.status == 200, r.json
    assert r.json["user_id"] == f"@opsadmin:{homeserver.server_name}"
    who = api.request("GET", CS + "/account/whoami", token=r.json["access_token"]).json
    assert who["user_id"] == r.json["user_id"]
    # an admin may look up anyone through whois
    whois = api.request("GET", CS + f"/admin/whois/{r.json['user_id']}", token=r.json["access_token"])
    assert whois.status == 200 and r.json["device_id"] in whois.json["devices"]
    # the nonce is single-use
    r = api.request("POST", PATH, body)
    assert r.status == 400


def test_wrong_mac_forbidden_and_nonce_burnt(api: Api) -> None:
    nonce = api.request("GET", PATH).json["nonce"]
    body = {"nonce": nonce, "username": "mallory", "password": "pw", "admin": True,
            "mac": _mac(nonce, "mallory", "pw", False)}
    r = api.request("POST", PATH, body)
    assert (r.status, r.errcode()) == (403, "M_FORBIDDEN")
    body["mac"] = _mac(nonce, "mallory", "pw", True)
    assert api.request("POST", PATH, body).status == 400
    r = api.request("POST", PATH, {"nonce": "made-up", "username": "m", "password": "p", "mac": "00"})
    assert r.status == 400
    r = api.request("POST", PATH, {"nonce": nonce})
    assert (r.status, r.errcode()) == (400, "M_MISSING_PARAM")
    # An empty password, even with a valid MAC, creates nothing.
    nonce = api.request("GET", PATH).json["nonce"]
    r = api.request("POST", PATH, {"nonce": nonce, "username": "blank", "password": "", "admin": False,
                                   "mac": _mac(nonce, "blank", "", False)})
    assert (r.status, r.errcode()) == (400, "M_WEAK_PASSWORD")
    assert api.request("GET", "/_matrix/client/v3/register/available",
                       params={"username": "blank"}).json == {"available": True}


def test_whois_refused_for_non_admins(api: Api) -> None:
    from tests.support.client import register

    u, v = register(api), register(api)
    r = u.req("GET", f"admin/whois/{v.user_id}")
    assert (r.status, r.errcode()) == (403, "M_FORBIDDEN")
    assert u.ok("GET", f"admin/whois/{u.user_id}")["user_id"] == u.user_id


def test_register_new_user_script(api: Api, homeserver) -> None:
    script = os.path.join(ROOT, "scripts", "register_new_user")
    # the script must run on a bare interpreter: -I ignores the environment and user site-packages
    run = subprocess.run([sys.executable, "-I", script, "-c", homeserver.config_path, "-u", "scripted",
                          "-p", "pw-1", "--no-admin", homeserver.base_url],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert f"@scripted:{homeserver.server_name}" in run.stdout
    r = api.request("POST", CS + "/login", {"type": "m.login.password", "user": "scripted", "password": "pw-1"})
    assert r.status == 200
    again = subprocess.run([sys.executable, "-I", script, "-k", "wrong-secret", "-u", "x2", "-p", "p", "-a",
                            homeserver.base_url], capture_output=True, text=True, timeout=60)
    assert again.returncode == 1 and "HMAC incorrect" in again.stderr
