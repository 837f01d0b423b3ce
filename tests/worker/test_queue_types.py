"""Quorum queues by default, a queue of another type found at start-up, and moving an
earlier deployment's classic queues to quorum ones without losing a message."""

from __future__ import annotations

import subprocess

import aio_pika
import pytest

from mediagate.config import Settings, load_settings
from mediagate.events import topology
from tests.support.broker import drain
from tests.support.daemons import run_cli
from tests.support.environment import own_names


@pytest.fixture
def fresh_env(env: dict[str, str]) -> dict[str, str]:
    """The session's environment with queue names of its own and the default queue
    type (the session's own are classic)."""
    return {
        **{name: value for name, value in env.items() if name != "QUEUE_TYPE"},
        **own_names("types"),
        "RETRY_DELAYS_MS": "600000,1200000",
    }


def _queue_types() -> dict[str, str]:
    listed = subprocess.run(
        ["rabbitmqctl", "-q", "--no-table-headers", "list_queues", "name", "type"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return dict(line.split("\t") for line in listed.stdout.splitlines() if "\t" in line)


async def _declare(settings: Settings) -> None:
    connection = await aio_pika.connect(settings.broker.url)
    async with connection:
        await topology.declare(await connection.channel(), settings)


async def _publish(settings: Settings, queue: str, message_id: str) -> None:
    connection = await aio_pika.connect(settings.broker.url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        message = aio_pika.Message(b"{}", message_id=message_id, delivery_mode=2)
        await channel.default_exchange.publish(message, routing_key=queue, mandatory=True)


async def test_the_queues_are_quorum_queues_by_default(fresh_env: dict[str, str]) -> None:
    settings = load_settings(fresh_env)
    await _declare(settings)
    types = _queue_types()
    assert {types[name] for name in topology.declarations(settings)} == {"quorum"}


@pytest.mark.parametrize("command", [["worker"], ["serve", "--port", "0"]], ids=["worker", "serve"])
async def test_a_queue_of_another_type_stops_start_up_with_one_line(
    fresh_env: dict[str, str], command: list[str]
) -> None:
    earlier = load_settings({**fresh_env, "QUEUE_TYPE": "classic"})
    await _declare(earlier)
    started = run_cli(fresh_env, *command, check=False)
    assert started.returncode == 2
    lines = started.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    queue = topology.dead_letter_queue_name(earlier)  # the first one declared
    assert f"queue '{queue}' exists as a classic queue, not quorum" in lines[0]
    assert "mediagate queues migrate" in lines[0]


async def test_queues_migrate_moves_every_message_to_queues_of_the_new_type(
    fresh_env: dict[str, str],
) -> None:
    earlier = load_settings({**fresh_env, "QUEUE_TYPE": "classic"})
    await _declare(earlier)
    media, dead = earlier.broker.media_queue, topology.dead_letter_queue_name(earlier)
    retry = topology.retry_queue_name(earlier, earlier.retry.delays_ms[0])
    waiting = {f"job-{n}" for n in range(5)} | {f"retry-{n}" for n in range(3)}
    parked = {f"dead-{n}" for n in range(2)}
    for message_id in sorted(waiting | parked):
        queue = {"job": media, "retry": retry, "dead": dead}[message_id.split("-")[0]]
        await _publish(earlier, queue, message_id)

    migrated = run_cli(fresh_env, "queues", "migrate", check=False)
    assert migrated.returncode == 0, migrated.stderr
    now = load_settings(fresh_env)
    types = _queue_types()
    assert {types[name] for name in topology.declarations(now)} == {"quorum"}
    assert not [name for name in types if name.startswith(media) and "migrating" in name]
    assert {m.message_id for m in await drain(now, media)} == waiting
    assert {m.message_id for m in await drain(now, dead)} == parked
    # Run again: nothing left to move, and nothing breaks.
    again = run_cli(fresh_env, "queues", "migrate", check=False)
    assert again.returncode == 0 and again.stdout == ""


async def test_queues_migrate_on_a_broker_that_has_none_of_them_declares_them(
    fresh_env: dict[str, str],
) -> None:
    """A first deployment: neither the queues nor the store's exchange exist yet."""
    migrated = run_cli(fresh_env, "queues", "migrate", check=False)
    assert migrated.returncode == 0, migrated.stderr
    settings = load_settings(fresh_env)
    types = _queue_types()
    assert {types[name] for name in topology.declarations(settings)} == {"quorum"}
    assert not [
        name
        for name in types
        if "migrating" in name and name.startswith(settings.broker.media_queue)
    ]


async def test_a_message_redelivered_past_the_limit_is_dead_lettered(
    fresh_env: dict[str, str],
) -> None:
    settings = load_settings(fresh_env)
    await _declare(settings)
    await _publish(settings, settings.broker.media_queue, "poison")
    connection = await aio_pika.connect(settings.broker.url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.get_queue(settings.broker.media_queue)
        for _ in range(topology.DELIVERY_LIMIT + 1):
            message = await queue.get(no_ack=False, timeout=10)
            assert message is not None
            await message.nack(requeue=True)
        assert await queue.get(no_ack=False, fail=False) is None
    dead = await drain(settings, topology.dead_letter_queue_name(settings))
    assert [message.message_id for message in dead] == ["poison"]
