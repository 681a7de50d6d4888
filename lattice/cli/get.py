"""``lattice get hosts | inventory [HOST] | links | claims``: what runs on the lattice."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from lattice.cli._common import (
    add_lattice_options,
    ctl_session,
    emit,
    note,
    resolve_host,
    run_async,
    table,
)
from lattice.ctl import CtlClient, HostInfo, HostInventory, LinkDefinition


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("get", help="show the hosts, inventories, links or claims of a lattice")
    what = p.add_subparsers(dest="get_command", metavar="WHAT", required=True)

    hosts = what.add_parser("hosts", help="list the hosts that answer a ping")
    hosts.add_argument("--wait", type=float, default=1.0, metavar="SECONDS",
                       help="how long to collect answers (default: 1)")
    add_lattice_options(hosts)
    hosts.set_defaults(handler=lambda a: run_async(_hosts(a)))

    inv = what.add_parser("inventory", help="actors and providers running on one or every host")
    inv.add_argument("host", nargs="?", metavar="HOST",
                     help="host id or friendly name (default: every host)")
    add_lattice_options(inv)
    inv.set_defaults(handler=lambda a: run_async(_inventory(a)))

    links = what.add_parser("links", help="list the link definitions")
    add_lattice_options(links)
    links.set_defaults(handler=lambda a: run_async(_links(a)))

    claims = what.add_parser("claims", help="list the claims of actors and providers seen")
    add_lattice_options(claims)
    claims.set_defaults(handler=lambda a: run_async(_claims(a)))


# --- rendering (pure, so tests can check them without a lattice) --------------------------------


def hosts_table(hosts: list[HostInfo]) -> str:
    rows = [[h.id, h.friendly_name, h.uptime_human or f"{h.uptime_seconds}s", h.version,
             ",".join(f"{k}={v}" for k, v in sorted(h.labels.items())
                      if not k.startswith("hostcore."))]
            for h in hosts]
    return table(["HOST ID", "FRIENDLY NAME", "UPTIME", "VERSION", "LABELS"], rows)


def inventory_text(inv: HostInventory) -> str:
    labels = ", ".join(f"{k}={v}" for k, v in sorted(inv.labels.items())) or "none"
    parts = [f"Host {inv.host_id} ({inv.friendly_name})", f"  labels: {labels}"]
    if inv.actors:
        rows = [[a.id, a.name, str(a.count), a.image_ref] for a in inv.actors]
        parts.append(_indent(table(["ACTOR ID", "NAME", "COUNT", "IMAGE REF"], rows)))
    else:
        parts.append("  no actors")
    if inv.providers:
        rows = [[p.id, p.name, p.contract_id, p.link_name, p.state or "-", p.image_ref]
                for p in inv.providers]
        parts.append(_indent(table(["PROVIDER ID", "NAME", "CONTRACT", "LINK NAME", "STATE",
                                    "IMAGE REF"], rows)))
    else:
        parts.append("  no providers")
    return "\n".join(parts)


def links_table(links: list[LinkDefinition]) -> str:
    rows = [[ld.actor_id, ld.contract_id, ld.link_name, ld.provider_id,
             ",".join(f"{k}={v}" for k, v in sorted(ld.values.items()))]
            for ld in sorted(links, key=lambda x: (x.actor_id, x.contract_id, x.link_name))]
    return table(["ACTOR", "CONTRACT", "LINK NAME", "PROVIDER", "VALUES"], rows)


def claims_table(claims: list[dict[str, str]]) -> str:
    rows = []
    for c in sorted(claims, key=lambda c: (c.get("name", ""), c.get("sub", ""))):
        kind = "provider" if c.get("sub", "").startswith("V") else "actor"
        what = c.get("contract_id") if kind == "provider" else c.get("caps", "")
        rows.append([c.get("name", ""), c.get("sub", ""), kind, what or "",
                     c.get("version", ""), c.get("rev", ""), c.get("call_alias", "")])
    return table(["NAME", "PUBLIC KEY", "KIND", "CAPABILITIES/CONTRACT", "VERSION", "REV",
                  "CALL ALIAS"], rows)


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.splitlines())


def _asdicts(items: list[Any]) -> list[dict[str, Any]]:
    return [dataclasses.asdict(i) for i in items]


# --- commands -----------------------------------------------------------------------------------


def _nothing(ctl: CtlClient) -> str:
    return (f"no hosts on lattice {ctl.lattice} at {ctl.nats_url}: start one with `lattice up` "
            "(or check --lattice and --nats-url)")


async def _hosts(args: argparse.Namespace) -> int:
    async with ctl_session(args) as ctl:
        hosts = await ctl.ping_hosts(args.wait)
    if args.json:
        emit(_asdicts(hosts), True)
    elif hosts:
        print(hosts_table(hosts))
    else:
        note(_nothing(ctl))
    return 0


async def _inventory(args: argparse.Namespace) -> int:
    async with ctl_session(args) as ctl:
        if args.host:
            host_ids = [(await resolve_host(ctl, args.host)).id]
        else:
            host_ids = [h.id for h in await ctl.ping_hosts()]
        inventories = [await ctl.inventory(h) for h in host_ids]
    if args.json:
        doc: Any = (dataclasses.asdict(inventories[0]) if args.host
                    else _asdicts(inventories))
        emit(doc, True)
    elif inventories:
        print("\n\n".join(inventory_text(inv) for inv in inventories))
    else:
        note(_nothing(ctl))
    return 0


async def _links(args: argparse.Namespace) -> int:
    async with ctl_session(args) as ctl:
        links = await ctl.get_links()
    if args.json:
        emit(_asdicts(links), True)
    elif links:
        print(links_table(links))
    else:
        note(f"no links on lattice {args.lattice}: add one with `lattice link put ACTOR PROVIDER "
             "CONTRACT`")
    return 0


async def _claims(args: argparse.Namespace) -> int:
    async with ctl_session(args) as ctl:
        claims = await ctl.get_claims()
    if args.json:
        emit(claims, True)
    elif claims:
        print(claims_table(claims))
    else:
        note(f"no claims on lattice {args.lattice}: they appear when actors or providers start")
    return 0
