"""Configuration parsing: every bad value names its key; generated configs load."""

import os

import pytest
import yaml

from homeserver.config import ConfigError, generate_config_yaml, load_config, parse_config, parse_size

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def base() -> dict:
    return {
        "server_name": "example.com",
        "listeners": [{"port": 8008, "type": "http", "resources": [{"names": ["client"]}]}],
        "database": {"name": "sqlite3", "args": {"database": "hs.db"}},
        "signing_key_path": "key",
    }


def test_sample_config_loads() -> None:
    cfg = load_config(os.path.join(ROOT, "config", "homeserver.sample.yaml"))
    assert cfg.server_name == "example.com"
    assert cfg.max_upload_size == 50 * 1024 * 1024
    assert cfg.rc_login["failed_attempts"].burst_count == 3


def test_generated_config_loads(tmp_path) -> None:
    text = generate_config_yaml("chat.example.org", str(tmp_path), port=8123, open_registration=True)
    path = tmp_path / "homeserver.yaml"
    path.write_text(text)
    cfg = load_config(str(path))
    assert cfg.listeners[0].port == 8123
    assert cfg.enable_registration and cfg.enable_registration_without_verification
    assert cfg.database.args["database"] == str(tmp_path / "homeserver.db")


def test_generated_postgres_config(tmp_path) -> None:
    text = generate_config_yaml("x.org", str(tmp_path), database_url="postgresql://bob:pw@db.local:5433/chat")
    raw = yaml.safe_load(text)
    assert raw["database"] == {"name": "psycopg2", "args": {"dbname": "chat", "user": "bob", "password": "pw",
                                                            "host": "db.local", "port": 5433}}


@pytest.mark.parametrize(
    "change, key",
    [
        ({"surprise": 1}, "surprise"),
        ({"server_name": "bad name!"}, "server_name"),
        ({"listeners": []}, "listeners"),
        ({"listeners": [{"port": "80"}]}, "listeners[0].port"),
        ({"listeners": [{"port": 99999, "resources": [{"names": ["client"]}]}]}, "listeners[0].port"),
        ({"listeners": [{"port": 1, "resources": [{"names": ["gopher"]}]}]}, "listeners[0].resources[0].names"),
        ({"database": {"name": "mysql"}}, "database.name"),
        ({"database": {"name": "sqlite3", "args": {}}}, "database.args.database"),
        ({"enable_registration": "yes"}, "enable_registration"),
        ({"enable_registration": True}, "enable_registration"),
        ({"rc_message": {"per_second": -1}}, "rc_message"),
        ({"rc_message": {"persecond": 1}}, "rc_message"),
        ({"rc_login": {"adress": {}}}, "rc_login"),
        ({"max_upload_size": "lots"}, "max_upload_size"),
        ({"default_room_version": "1"}, "default_room_version"),
        ({"app_service_config_files": "x.yaml"}, "app_service_config_files"),
        ({"log_level": "LOUD"}, "log_level"),
        ({"registration_shared_secret": "change me"}, "registration_shared_secret"),
        ({"registration_shared_secret": "short"}, "registration_shared_secret"),
        ({"room_list_publication_rules": [{"action": "deny"}]}, "room_list_publication_rules"),
        ({"bcrypt_rounds": 2}, "bcrypt_rounds"),
    ],
)
def test_bad_values_name_their_key(change: dict, key: str) -> None:
    raw = base()
    raw.update(change)
    with pytest.raises(ConfigError) as e:
        parse_config(raw, "/tmp")
    assert key in str(e.value)


def test_sizes() -> None:
    assert parse_size("50M", "k") == 50 * 1024 * 1024
    assert parse_size("512K", "k") == 512 * 1024
    assert parse_size(1000, "k") == 1000
    with pytest.raises(ConfigError):
        parse_size(True, "k")


def test_unreadable_and_invalid_yaml(tmp_path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(str(tmp_path / "missing.yaml"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("server_name: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(str(bad))


def test_database_defaults_to_sqlite_beside_the_config() -> None:
    raw = base()
    del raw["database"]
    raw["report_stats"] = False  # a Synapse key that changes nothing here is accepted
    cfg = parse_config(raw, "/srv/tocsin")
    assert cfg.database.name == "sqlite3"
    assert cfg.database.args["database"] == "/srv/tocsin/homeserver.db"
