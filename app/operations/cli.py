"""The `breakwater` command: run the gateway, and look after a fallback store."""

from __future__ import annotations

import asyncio
import base64
import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from ..catalog import Catalog, CatalogError, Compatibility, load_catalog
from ..settings import get_settings, split_urls
from ..store.fallback import StoredEvent, StoreError, StoreReader

cli = typer.Typer(
    add_completion=False,
    no_args_is_help=False,
    help="Breakwater, a store-and-forward event gateway for RabbitMQ.",
)
store_cli = typer.Typer(
    no_args_is_help=True,
    help="Inspect, export, replay or purge a fallback store (BREAKWATER_STORE_PATH by default).",
)
cli.add_typer(store_cli, name="store")
catalog_cli = typer.Typer(
    no_args_is_help=True,
    help="Check a channel catalog, or whether a new catalog is compatible with the old one.",
)
cli.add_typer(catalog_cli, name="catalog")

CatalogArgument = Annotated[
    str | None,
    typer.Argument(
        help="A catalog file, package.module:attribute or entry point name;"
        " default: BREAKWATER_CATALOG (or the installed catalog, else the default)."
    ),
]

StorePath = Annotated[
    Path | None,
    typer.Option("--path", help="Store file; default: BREAKWATER_STORE_PATH."),
]


@cli.callback(invoke_without_command=True)
def _default(ctx: typer.Context) -> None:
    if ctx.invoked_subcommand is None:
        run()


@cli.command()
def run() -> None:
    """Serve HTTP and AMQP ingress (the same as `python -m app`)."""
    from .server import serve

    serve()


@store_cli.callback()
def _store_logging() -> None:
    from .logs import configure_logging

    configure_logging(get_settings().log_format)


def _path(path: Path | None) -> Path:
    return path or get_settings().store_path


def _fail(exc: StoreError) -> typer.Exit:
    typer.echo(f"breakwater: {exc}", err=True)
    return typer.Exit(2)


def _event_record(row: StoredEvent) -> dict[str, object]:
    event = row.event
    record: dict[str, object] = {
        "seq": row.seq,
        "channel": event.channel,
        "message_id": event.message_id,
        "correlation_id": event.correlation_id,
        "timestamp": event.timestamp.isoformat(timespec="milliseconds"),
    }
    if event.headers:
        record["headers"] = dict(event.headers)
    try:
        record["payload"] = json.loads(event.body)
    except ValueError:  # bodies are the gateway's own JSON; keep anything else intact anyway
        record["body_base64"] = base64.b64encode(event.body).decode()
    return record


@store_cli.command("stats")
def store_stats(path: StorePath = None) -> None:
    """Print the store's state as one JSON object (depth, bytes, oldest age, per channel, and
    the stored channels that the configured catalog does not have)."""
    try:
        with StoreReader(_path(path)) as reader:
            stats = reader.stats()
    except StoreError as exc:
        raise _fail(exc) from None
    try:
        catalog = load_catalog(get_settings().catalog)
    except CatalogError as exc:
        typer.echo(f"breakwater: not compared with the catalog: {exc}", err=True)
    else:
        channels = stats["channels"]
        assert isinstance(channels, dict)
        stats["catalog"] = catalog.source
        # Kept in the store, not replayed: `export`/`purge --channel` them, or load a catalog
        # that has them again.
        stats["not_in_catalog"] = sorted(name for name in channels if name not in catalog)
    typer.echo(json.dumps(stats))


@store_cli.command("list")
def store_list(
    path: StorePath = None,
    channel: Annotated[str | None, typer.Option(help="Only this channel.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="Show at most this many events.")] = 20,
) -> None:
    """Show the oldest stored events, one line each."""
    try:
        with StoreReader(_path(path)) as reader:
            for count, row in enumerate(reader.events(channel), start=1):
                event = row.event
                typer.echo(
                    f"{row.seq:>10}  {event.timestamp:%Y-%m-%dT%H:%M:%S.%f}"[:-3]
                    + f"Z  {event.channel:<20} {event.message_id}  {len(event.body)} B"
                )
                if count >= limit:
                    break
    except StoreError as exc:
        raise _fail(exc) from None


@store_cli.command("export")
def store_export(
    path: StorePath = None,
    channel: Annotated[str | None, typer.Option(help="Only this channel.")] = None,
    jsonl: Annotated[bool, typer.Option("--jsonl", help="One JSON object per line.")] = True,
) -> None:
    """Write every stored event to standard output as JSON lines, oldest first."""
    try:
        with StoreReader(_path(path)) as reader:
            for row in reader.events(channel):
                sys.stdout.write(json.dumps(_event_record(row)) + "\n")
    except StoreError as exc:
        raise _fail(exc) from None


@store_cli.command("replay")
def store_replay(
    path: StorePath = None,
    rate: Annotated[
        float | None, typer.Option(min=0.001, help="Events/s; default: BREAKWATER_REPLAY_RATE.")
    ] = None,
    broker_url: Annotated[str | None, typer.Option(help="Default: BREAKWATER_BROKER_URL.")] = None,
    connect_timeout_s: Annotated[float, typer.Option(help="Give up if no broker answers.")] = 30.0,
) -> None:
    """Drain a store file to the broker without the HTTP server (e.g. a volume from a dead pod)."""
    from ..store.drain import drain_store

    settings = get_settings()
    try:
        replayed = asyncio.run(
            drain_store(
                settings,
                path=_path(path),
                rate=rate or settings.replay_rate,
                broker_urls=split_urls(broker_url) if broker_url else settings.broker_urls,
                connect_timeout_s=connect_timeout_s,
            )
        )
    except StoreError as exc:
        raise _fail(exc) from None
    except TimeoutError as exc:
        typer.echo(f"breakwater: {exc}", err=True)
        raise typer.Exit(3) from None
    typer.echo(json.dumps({"replayed": replayed}))


@store_cli.command("purge")
def store_purge(
    channel: Annotated[str, typer.Option(help="Delete the stored events of this channel.")],
    yes: Annotated[bool, typer.Option("--yes", help="Really delete them.")] = False,
    path: StorePath = None,
) -> None:
    """Delete a channel's stored events for good (the gateway must be stopped)."""
    if not yes:
        typer.echo("breakwater: refusing to delete events without --yes", err=True)
        raise typer.Exit(2)
    from ..store.drain import purge_channel

    try:
        deleted = asyncio.run(purge_channel(get_settings(), _path(path), channel))
    except StoreError as exc:
        raise _fail(exc) from None
    typer.echo(json.dumps({"channel": channel, "deleted": deleted}))


def _load_catalog(catalog: str | None) -> Catalog:
    """The catalog named on the command line, else the one the gateway would load."""
    return load_catalog(catalog if catalog is not None else get_settings().catalog)


def _catalog_failure(exc: CatalogError, *, err: bool = True, code: int = 1) -> typer.Exit:
    """Every problem of a catalog on a line of its own, and the exit to raise."""
    for problem in exc.problems:
        typer.echo(f"{exc.source}: {problem}", err=err)
    return typer.Exit(code)


@catalog_cli.command("validate")
def catalog_validate(catalog: CatalogArgument = None) -> None:
    """Exit 0 if the catalog loads, else print one line per problem (channel, JSON Pointer, what
    is wrong) and exit 1. The gateway runs the same check at start."""
    try:
        loaded = _load_catalog(catalog)
    except CatalogError as exc:
        raise _catalog_failure(exc, err=False) from None
    count = f"{len(loaded)} channel{'' if len(loaded) == 1 else 's'}"
    typer.echo(f"{loaded.source}: {count}, no problems ({', '.join(loaded)})")


@catalog_cli.command("check")
def catalog_check(
    old: Annotated[str, typer.Argument(help="The catalog in use, or its asyncapi.yaml.")],
    new: Annotated[str, typer.Argument(help="The catalog about to replace it.")],
    mode: Annotated[
        Compatibility | None,
        typer.Option(help="Check every channel this way; default: each new channel's own."),
    ] = None,
) -> None:
    """Is NEW compatible with OLD, channel by channel (BACKWARD by default: NEW accepts every
    event OLD did)? Prints each break with its reason and exits 1 if there is any."""
    from ..catalog.evolution import check_catalogs, read_schemas

    try:
        breaks = check_catalogs(read_schemas(old), read_schemas(new), mode)
    except CatalogError as exc:
        raise _catalog_failure(exc, code=2) from None
    for line in breaks:
        typer.echo(line)
    if breaks:
        raise typer.Exit(1)
    typer.echo("compatible")


@cli.command()
def asyncapi(
    catalog: Annotated[
        str | None, typer.Option(help="The catalog to document; default: as `run` would load.")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Write here; default: standard output.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON instead of YAML.")] = False,
) -> None:
    """Write the AsyncAPI document of a catalog: for a team's own repository and CI."""
    from ..documents.asyncapi import document_for

    try:
        loaded = _load_catalog(catalog)
    except CatalogError as exc:
        raise _catalog_failure(exc) from None
    document = document_for(loaded, get_settings())
    text = document.to_json() if as_json else document.to_yaml()
    if out is None:
        sys.stdout.write(text)
    else:
        out.write_text(text, encoding="utf-8")


@cli.command()
def openapi(
    catalog: Annotated[
        str | None, typer.Option(help="The catalog to document; default: as `run` would load.")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Write here; default: standard output.")] = None,
) -> None:
    """Write the OpenAPI 3.1 document of a catalog's HTTP ingress, as the gateway serves it at
    /docs/openapi.json (bearer token required when BREAKWATER_API_TOKENS is set)."""
    from ..documents.openapi import document_for, to_json

    try:
        loaded = _load_catalog(catalog)
    except CatalogError as exc:
        raise _catalog_failure(exc) from None
    text = to_json(document_for(loaded, get_settings()))
    if out is None:
        sys.stdout.write(text)
    else:
        out.write_text(text, encoding="utf-8")


def main() -> None:
    cli()
