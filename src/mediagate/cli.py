"""`mediagate`: the command line for operators, scripts and local development."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import os
import sys
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from mediagate.config import Settings, SettingsError, load_settings
from mediagate.events.topology import QueueMismatch
from mediagate.observability.logging import configure_logging

log = logging.getLogger("mediagate")


def _uuid(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a UUID") from None


def _add_tenant_commands(commands: Any) -> None:
    """`org` (an organization's storage) and `webhooks` (its deliveries)."""
    org = commands.add_parser("org", help="an organization's storage")
    org_commands = org.add_subparsers(dest="org_command", required=True)
    shown = org_commands.add_parser("usage", help="print its usage and quota (JSON)")
    shown.add_argument("--org", type=_uuid, required=True)
    quota = org_commands.add_parser("quota", help="set its own quota; prints its usage (JSON)")
    quota.add_argument("--org", type=_uuid, required=True)
    amount = quota.add_mutually_exclusive_group(required=True)
    amount.add_argument("--bytes", type=_non_negative_int, help="its quota in bytes")
    amount.add_argument("--none", action="store_true", help="no quota at all")
    amount.add_argument("--default", action="store_true", help="back to ORG_STORAGE_QUOTA_BYTES")

    webhooks = commands.add_parser("webhooks", help="webhook deliveries")
    webhook_commands = webhooks.add_subparsers(dest="webhooks_command", required=True)
    redeliver = webhook_commands.add_parser(
        "redeliver", help="send failed deliveries of events since a time again; prints how many"
    )
    redeliver.add_argument(
        "--since", type=_timestamp, required=True, help="ISO 8601, with its time zone"
    )
    redeliver.add_argument("--endpoint", type=_uuid, default=None, help="only this endpoint's")
    redeliver.add_argument(
        "--include-delivered", action="store_true", help="replay delivered ones too"
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mediagate", description="Presigned uploads, scanned and sanitized."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the GraphQL API")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument(
        "--workers",
        type=_positive_int,
        default=len(os.sched_getaffinity(0)),
        help="API processes (default: one per CPU core this process may run on)",
    )

    commands.add_parser("migrate", help="apply database migrations (idempotent)")
    queues = commands.add_parser("queues", help="the broker's queues")
    queue_commands = queues.add_subparsers(dest="queues_command", required=True)
    queue_commands.add_parser(
        "migrate",
        help="replace queues of another type than QUEUE_TYPE, moving their messages"
        " (stop the API and the workers first)",
    )
    worker = commands.add_parser(
        "worker", help="consume bucket events and jobs; scan and process media"
    )
    worker.add_argument(
        "--heartbeat", type=Path, default=None, help="file to touch while healthy (healthchecks)"
    )

    session = commands.add_parser("session", help="upload sessions")
    session_commands = session.add_subparsers(dest="session_command", required=True)
    create = session_commands.add_parser("create", help="create a session; prints its id")
    create.add_argument("--org", type=_uuid, required=True)
    create.add_argument("--id", type=_uuid, default=None)

    token = commands.add_parser("token", help="print an HS256 token signed with JWT_SECRET")
    token.add_argument("--user", type=_uuid, required=True)
    token.add_argument("--org", type=_uuid, required=True)
    token.add_argument("--ttl", type=int, default=3600, help="seconds")
    token.add_argument(
        "--service", action="store_true", help="a service token: the organization's backend"
    )

    requeue = commands.add_parser(
        "requeue-failed", help="queue SCAN_FAILED uploads again (after a scanner outage)"
    )
    requeue.add_argument("--limit", type=int, default=1000)

    audit = commands.add_parser(
        "audit", help="print the audit trail of a session or a media item (JSON lines)"
    )
    which = audit.add_mutually_exclusive_group(required=True)
    which.add_argument("--session", type=_uuid)
    which.add_argument("--media", type=_uuid)
    which.add_argument(
        "--purge", action="store_true", help="delete events past AUDIT_RETENTION_DAYS"
    )
    audit.add_argument("--limit", type=_positive_int, default=1000)

    reconcile = commands.add_parser(
        "reconcile", help="compare rows, store and clock once; prints what it found (JSON)"
    )
    reconcile.add_argument(
        "--dry-run", action="store_true", help="report only: queue, close and delete nothing"
    )

    purge = commands.add_parser(
        "purge", help="delete a session: its files, its rows (audit events stay); prints items"
    )
    purge.add_argument("--session", type=_uuid, required=True)

    _add_tenant_commands(commands)

    storage = commands.add_parser("storage", help="object storage")
    storage_commands = storage.add_subparsers(dest="storage_command", required=True)
    setup = storage_commands.add_parser(
        "setup", help="create and configure the bucket (idempotent)"
    )
    setup.add_argument(
        "--bucket-events",
        "--minio-notifications",
        dest="bucket_events",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="send bucket events to RabbitMQ as BUCKET_EVENTS_SOURCE says (minio or rgw)",
    )
    setup.add_argument(
        "--require-tls",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="deny plain-HTTP access in the bucket policy (default: when S3_ENDPOINT is https)",
    )
    settings = commands.add_parser("settings", help="the settings' reference")
    settings.add_argument(
        "--markdown", action="store_true", help="the table of docs/configuration.md"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "settings":  # needs no environment: it documents it
        from mediagate.config.reference import markdown_table, variables

        print(markdown_table() if args.markdown else "\n".join(variables()) + "\n", end="")
        return 0
    try:
        settings = load_settings()
    except SettingsError as error:
        print(f"mediagate: configuration error: {error}", file=sys.stderr)
        return 2
    configure_logging(settings.logging.level)
    log.debug("settings", extra={"settings": settings.public()})
    handler = _HANDLERS[args.command]
    try:
        return handler(settings, args)
    except QueueMismatch as error:
        print(f"mediagate: {error}", file=sys.stderr)
        return 2


def _timestamp(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO 8601 time") from None
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} names no time zone (add Z or +hh:mm)")
    return moment


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return value


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    from mediagate.api.http_server import serve
    from mediagate.events.topology import declare_before_start

    asyncio.run(declare_before_start(settings))
    serve(settings, args.host, args.port, args.workers)
    return 0


def _with_database(settings: Settings, work: Callable[[], Awaitable[int]]) -> int:
    from mediagate.db.engine import bind_engine, start_pool

    async def run() -> int:
        engine = bind_engine(settings)
        await start_pool(engine, 2)
        try:
            return await work()
        finally:
            await engine.close_connection_pool()

    return asyncio.run(run())


def _migrate(settings: Settings, _args: argparse.Namespace) -> int:
    from mediagate.db.engine import migrate

    async def work() -> int:
        return 0 if await migrate() else 1

    return _with_database(settings, work)


def _session(settings: Settings, args: argparse.Namespace) -> int:
    from mediagate.db.session_rows import create_session

    async def work() -> int:
        print(await create_session(args.org, args.id))
        return 0

    return _with_database(settings, work)


def _token(settings: Settings, args: argparse.Namespace) -> int:
    from mediagate.auth.tokens import issue_token
    from mediagate.db.session_rows import ensure_user
    from mediagate.domain.principal import Principal

    principal = Principal(user_id=args.user, organization_id=args.org, is_service=args.service)

    async def work() -> int:
        await ensure_user(principal.user_id, principal.organization_id)
        print(issue_token(settings, principal, args.ttl))
        return 0

    return _with_database(settings, work)


def _worker(settings: Settings, args: argparse.Namespace) -> int:
    from mediagate.worker.runner import run_worker

    return asyncio.run(run_worker(settings, args.heartbeat))


def _queues(settings: Settings, args: argparse.Namespace) -> int:
    from mediagate.events.queue_migration import migrate

    for moved in asyncio.run(migrate(settings)):
        kind = settings.broker.queue_type
        print(f"{moved.queue}: {moved.messages} message(s) moved to a {kind} queue")
    return 0


def _requeue_failed(settings: Settings, args: argparse.Namespace) -> int:
    from mediagate.events.publisher import JobPublisher
    from mediagate.services.operations import requeue_scan_failed
    from mediagate.storage.object_store import ObjectStore

    async def work() -> int:
        publisher = await JobPublisher.connect(settings)
        try:
            queued = await requeue_scan_failed(ObjectStore(settings), publisher, args.limit)
        finally:
            await publisher.close()
        print(queued)
        return 0

    return _with_database(settings, work)


def _audit(settings: Settings, args: argparse.Namespace) -> int:
    from mediagate.db import audit_rows
    from mediagate.services.audit import purge_expired

    async def work() -> int:
        if args.purge:
            print(await purge_expired(settings.reconciler.audit_retention_days))
            return 0
        events = await audit_rows.audit_events(
            None, session_id=args.session, media_id=args.media, after_id=0, limit=args.limit
        )
        for event in events:
            print(json.dumps(dataclasses.asdict(event), default=str))
        return 0

    return _with_database(settings, work)


def _reconcile(settings: Settings, args: argparse.Namespace) -> int:

    from mediagate.events.publisher import JobPublisher
    from mediagate.storage.object_store import ObjectStore
    from mediagate.worker.reconciler import Bounds, Reconciler

    bounds = Bounds.of(settings.reconciler)

    async def work() -> int:
        publisher = None if args.dry_run else await JobPublisher.connect(settings)
        try:
            findings = await Reconciler(ObjectStore(settings), publisher, bounds).run()
        finally:
            if publisher is not None:
                await publisher.close()
        print(json.dumps(dataclasses.asdict(findings)))
        return 0

    return _with_database(settings, work)


def _purge(settings: Settings, args: argparse.Namespace) -> int:
    from mediagate.errors import ClientError
    from mediagate.services.operations import purge_session
    from mediagate.storage.object_store import ObjectStore

    async def work() -> int:
        try:
            print(await purge_session(ObjectStore(settings), args.session))
        except ClientError as error:
            print(f"mediagate: {error.message}", file=sys.stderr)
            return 1
        return 0

    return _with_database(settings, work)


def _org(settings: Settings, args: argparse.Namespace) -> int:
    from mediagate.services.usage import set_quota, usage_of

    async def work() -> int:
        if args.org_command == "quota":
            shown = await set_quota(args.org, args.bytes, not args.default, settings.uploads)
        else:
            shown = await usage_of(args.org, settings.uploads)
        print(json.dumps(dataclasses.asdict(shown), default=str))
        return 0

    return _with_database(settings, work)


def _webhooks(settings: Settings, args: argparse.Namespace) -> int:
    from mediagate.services.webhooks import redeliver_since

    async def work() -> int:
        print(await redeliver_since(args.since, args.endpoint, args.include_delivered))
        return 0

    return _with_database(settings, work)


def _storage(settings: Settings, args: argparse.Namespace) -> int:
    from mediagate.storage.setup import setup_storage

    report = setup_storage(
        settings,
        bucket_events=args.bucket_events,
        require_tls=args.require_tls,
    )
    for line in report:
        print(line)
    return 0


_HANDLERS: dict[str, Callable[[Settings, argparse.Namespace], int]] = {
    "serve": _serve,
    "migrate": _migrate,
    "session": _session,
    "token": _token,
    "worker": _worker,
    "queues": _queues,
    "storage": _storage,
    "requeue-failed": _requeue_failed,
    "audit": _audit,
    "purge": _purge,
    "reconcile": _reconcile,
    "webhooks": _webhooks,
    "org": _org,
}

if __name__ == "__main__":
    raise SystemExit(main())
