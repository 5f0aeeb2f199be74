"""The embedded broker (kombu's filesystem transport) keeps every file under CELERY_BROKER_DIR.

kombu resolves any folder it is not given relative to the working directory (``control/``,
``data_in/``, ...), which once left ``control/celery.exchange`` in the repository. The
settings are loaded afresh with the filesystem broker forced on (CI runs the suite with
Redis), and kombu itself is asked which folders it uses, then made to write.
"""
import runpy
from pathlib import Path

import pytest
from kombu import Connection, Exchange, Queue

BASE_SETTINGS = Path(__file__).resolve().parent.parent / "config" / "settings" / "base.py"


@pytest.fixture
def broker_settings(tmp_path, monkeypatch):
    """The base settings as `make run` sees them, with the broker folder in tmp_path."""
    monkeypatch.setenv("CELERY_BROKER_URL", "filesystem://")
    monkeypatch.setenv("CELERY_BROKER_DIR", str(tmp_path / "broker"))
    return runpy.run_path(str(BASE_SETTINGS))


def _connection(settings):
    return Connection(
        settings["CELERY_BROKER_URL"],
        transport_options=settings["CELERY_BROKER_TRANSPORT_OPTIONS"],
    )


def test_every_folder_kombu_uses_lies_under_the_broker_dir(broker_settings, tmp_path):
    broker_dir = broker_settings["CELERY_BROKER_DIR"]
    assert broker_dir == tmp_path / "broker"
    with _connection(broker_settings) as conn:
        channel = conn.default_channel
        folders = {
            "data_folder_in": channel.data_folder_in,
            "data_folder_out": channel.data_folder_out,
            "processed_folder": channel.processed_folder,
            "control_folder": channel.control_folder,
        }
    for name, folder in folders.items():
        folder = Path(folder)
        assert folder.is_absolute(), f"{name} {folder} would follow the working directory"
        assert folder.is_relative_to(broker_dir), f"{name} {folder} is outside {broker_dir}"
        assert folder.is_dir(), f"{name} {folder} is not created with the settings"


def test_a_round_trip_writes_nothing_outside_the_broker_dir(broker_settings, tmp_path, monkeypatch):
    """Publish and consume through a direct and a fanout (pidbox-like) exchange."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    direct = Queue("tasks", Exchange("tasks", type="direct"), routing_key="tasks")
    fanout = Queue("w1.pidbox", Exchange("w.pidbox", type="fanout"))
    with _connection(broker_settings) as conn:
        for queue, exchange in ((direct, "tasks"), (fanout, "w.pidbox")):
            bound = queue(conn.default_channel)
            bound.declare()
            conn.Producer().publish({"hello": exchange}, exchange=exchange, routing_key="tasks")
            message = bound.get(no_ack=False)
            assert message is not None and message.payload == {"hello": exchange}
            message.ack()
    assert list(cwd.iterdir()) == []
    broker_dir = broker_settings["CELERY_BROKER_DIR"]
    assert sorted(p.name for p in (broker_dir / "control").iterdir()) == [
        "tasks.exchange",
        "w.pidbox.exchange",
    ]
