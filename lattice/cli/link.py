"""``lattice link put|del``: bind an actor to a provider for one contract (docs/wire.md §4).

ACTOR and PROVIDER may be public keys or the ``name`` in their claims (the lattice's claims
are looked up through the control interface); ``lattice get links`` lists the result.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib

from lattice.cli._common import (
    CliError,
    add_lattice_options,
    ctl_session,
    emit,
    parse_pairs,
    resolve_claim,
    run_async,
)
from lattice.ctl import CtlClient, CtlError, CtlTimeout, Event
from lattice.keys import KeyRole, is_public_key
from lattice.links import link_id


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("link", help="add or remove link definitions")
    action = p.add_subparsers(dest="link_command", metavar="ACTION", required=True)

    put = action.add_parser(
        "put", help="link an actor to a provider for a contract",
        description="Link an actor to a provider: the actor's calls on CONTRACT (with the link "
        "name) go to PROVIDER, which receives the KEY=VALUE settings for this actor.",
        epilog="example: lattice link put echo keyvalue-nats wasmcloud:keyvalue BUCKET=demo")
    put.add_argument("actor", metavar="ACTOR", help="actor public key (M…) or claims name")
    put.add_argument("provider", metavar="PROVIDER",
                     help="provider public key (V…) or claims name")
    put.add_argument("contract", metavar="CONTRACT", help="contract id, e.g. wasmcloud:keyvalue")
    put.add_argument("values", nargs="*", metavar="KEY=VALUE",
                     help="settings the provider gets for this actor")
    put.add_argument("--link-name", default="default", metavar="NAME",
                     help="link name (default: default)")
    put.add_argument("--wait", type=float, default=10.0, metavar="SECONDS",
                     help="wait this long for the provider to accept or refuse the link, when "
                     "a host runs it (default: 10; 0: only store the link)")
    add_lattice_options(put)
    put.set_defaults(handler=lambda a: run_async(_put(a)))

    rm = action.add_parser("del", help="remove the link of an actor for a contract")
    rm.add_argument("actor", metavar="ACTOR", help="actor public key (M…) or claims name")
    rm.add_argument("contract", metavar="CONTRACT", help="contract id, e.g. wasmcloud:keyvalue")
    rm.add_argument("--link-name", default="default", metavar="NAME",
                    help="link name (default: default)")
    add_lattice_options(rm)
    rm.set_defaults(handler=lambda a: run_async(_del(a)))


async def _put(args: argparse.Namespace) -> int:
    values = parse_pairs(args.values, "KEY=VALUE")
    async with ctl_session(args) as ctl:
        claims = [] if _both_keys(args.actor, args.provider) else await ctl.get_claims()
        actor = resolve_claim(claims, args.actor, "actor")
        provider = resolve_claim(claims, args.provider, "provider")
        ident = link_id(actor, args.contract, args.link_name)
        outcome: Event | None = None
        async with ctl.events({"linkdef_set", "linkdef_set_failed"}) as stream:
            runners = (asyncio.create_task(_hosts_running(ctl, provider, args.link_name))
                       if args.wait > 0 else None)
            try:
                await ctl.put_link(actor, provider, args.contract, args.link_name, values)
            except BaseException:
                if runners is not None:  # refused: nobody will look at the answer
                    runners.cancel()
                    with contextlib.suppress(BaseException):
                        await runners
                raise
            hosts = await runners if runners else []
            if hosts:
                def verdict(e: Event) -> bool:  # the provider's own word, from its host
                    return (e.data.get("id") == ident and e.data.get("provider_id") == provider
                            and (e.name == "linkdef_set_failed"
                                 or e.data.get("provider_answered") is True))
                with contextlib.suppress(CtlTimeout):
                    outcome = await stream.wait_for(verdict, args.wait)
    result = {"accepted": True, "actor_id": actor, "provider_id": provider,
              "contract_id": args.contract, "link_name": args.link_name, "values": values}
    text = (f"Linked actor {actor} to provider {provider} for {args.contract} "
            f"(link name {args.link_name})")
    if outcome is not None and outcome.name == "linkdef_set_failed":
        error = str(outcome.data.get("error") or "no reason given")
        raise CliError(f"the link is stored, but provider {provider} refused it: {error}. Fix "
                       f"the values and put the link again, or remove it with `lattice link del "
                       f"{actor} {args.contract} --link-name {args.link_name}`")
    if outcome is not None:
        result["provider_accepted"] = True
        text += "; the provider accepted it"
    elif hosts:
        result["provider_accepted"] = None
        text += f"; the provider did not answer within {args.wait:g} s"
    elif args.wait > 0:
        text += "; no host runs that provider yet (it gets the link when it starts)"
    emit(result, args.json, text)
    return 0


async def _hosts_running(ctl: CtlClient, provider: str, link_name: str) -> list[str]:
    """Ids of the hosts whose inventory lists ``provider`` with ``link_name``."""
    hosts = await ctl.ping_hosts(wait=1.0)

    async def runs(host_id: str) -> bool:
        try:
            inv = await ctl.inventory(host_id)
        except CtlError:
            return False
        return any(p.id == provider and p.link_name == link_name for p in inv.providers)

    found = await asyncio.gather(*(runs(h.id) for h in hosts))
    return [h.id for h, yes in zip(hosts, found, strict=True) if yes]


async def _del(args: argparse.Namespace) -> int:
    async with ctl_session(args) as ctl:
        claims = [] if _both_keys(args.actor) else await ctl.get_claims()
        actor = resolve_claim(claims, args.actor, "actor")
        await ctl.del_link(actor, args.contract, args.link_name)
    emit({"accepted": True, "actor_id": actor, "contract_id": args.contract,
          "link_name": args.link_name}, args.json,
         f"Removed the link of actor {actor} for {args.contract} (link name {args.link_name})")
    return 0


def _both_keys(actor: str, provider: str | None = None) -> bool:
    """Skip the claims lookup when keys were given (works even before anything started)."""
    return is_public_key(actor, KeyRole.MODULE) and (
        provider is None or is_public_key(provider, KeyRole.SERVICE))
