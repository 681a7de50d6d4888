"""``lattice host``: run a lattice host in the foreground until SIGINT/SIGTERM or a ctl stop."""

from __future__ import annotations

import argparse
import asyncio
import os
import re
from typing import TYPE_CHECKING

from nats.errors import Error as NatsError

from lattice.cli._common import (
    CliError,
    add_lattice_options,
    check_lattice_arg,
    nats_options,
    parse_pairs,
)
from lattice.connect import NatsConnectError, NatsOptions
from lattice.keys import KeyPair, KeyRole, NKeyError, is_public_key

if TYPE_CHECKING:
    from lattice.host import HostConfig


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "host", help="run a lattice host in the foreground",
        description="Join a lattice and run actors and providers for it until interrupted "
        "(Ctrl-C, SIGTERM) or stopped through the control interface.",
        epilog="`lattice up` starts NATS and a host in one go; use `lattice host` to add hosts "
        "(e.g. with labels) to a running lattice. To call actors with `lattice call`, hosts and "
        "CLI must share a cluster seed: pass the same --cluster-seed (or "
        "$LATTICE_CLUSTER_SEED) to both. Give several --nats-url URLs of one NATS cluster, "
        "comma-separated, and the host fails over between them; a host behind a leaf node "
        "names the hub's JetStream domain with --js-domain. See docs/operations.md.")
    add_lattice_options(p, timeout=None, json_flag=False)
    ident = p.add_argument_group("identity and trust")
    ident.add_argument("--host-seed", default=os.environ.get("LATTICE_HOST_SEED"), metavar="SN…",
                       help="host seed; its public key is the host id (default: "
                       "$LATTICE_HOST_SEED, else a new one per start)")
    ident.add_argument("--cluster-seed", default=os.environ.get("LATTICE_CLUSTER_SEED"),
                       metavar="SC…", help="cluster seed that signs this host's invocations "
                       "(default: $LATTICE_CLUSTER_SEED, else a new one per start)")
    ident.add_argument("--cluster-issuer", action="append", default=None, metavar="C…",
                       help="also trust invocations signed by this cluster key (repeatable; "
                       "default: $LATTICE_CLUSTER_ISSUERS, comma-separated)")
    ident.add_argument("--label", action="append", default=[], metavar="KEY=VALUE",
                       help="host label, used by auction constraints (repeatable)")
    ident.add_argument("--allow-unsigned", action="store_true",
                       help="DEVELOPMENT ONLY: run unsigned, expired or tampered actor modules")
    tune = p.add_argument_group("tuning")
    tune.add_argument("--rpc-timeout", type=float, default=2.0, metavar="SECONDS",
                      help="deadline of each outbound invocation (default: 2)")
    tune.add_argument("--js-domain", default=os.environ.get("LATTICE_JS_DOMAIN"),
                      metavar="DOMAIN", help="JetStream domain of the lattice state (links, "
                      "claims, RPC chunks): on a host behind a leaf node, the hub's domain "
                      "(default: $LATTICE_JS_DOMAIN, else the domain of the server connected to)")
    tune.add_argument("--js-replicas", type=int,
                      default=os.environ.get("LATTICE_JS_REPLICAS") or "1", metavar="N",
                      help="replicas (1-5) of the JetStream buckets this host creates if missing "
                      "(the lattice store, RPC chunks): 3 in a 3-node NATS cluster, so a node "
                      "can fail without losing lattice state (default: $LATTICE_JS_REPLICAS or 1)")
    tune.add_argument("--heartbeat", type=float, default=30.0, metavar="SECONDS",
                      help="heartbeat interval (default: 30)")
    limits = p.add_argument_group("limits")
    limits.add_argument("--memory-limit", type=int, default=64, metavar="MIB",
                        help="linear memory cap per instance of a wasmbus actor in MiB (default: "
                        "64; per actor: lattice start actor --memory-limit)")
    limits.add_argument("--component-memory-limit", type=int, default=128, metavar="MIB",
                        help="the same for Python (component) actors, whose interpreter takes "
                        "~15 MiB before the first request (default: 128)")
    limits.add_argument("--max-instances", type=int, default=2000, metavar="N",
                        help="actor instances this host runs at most, all actors together; "
                        "starts and scales past it are refused (default: 2000)")
    apps = p.add_argument_group("app reconciler (docs/apps.md)")
    apps.add_argument("--host-expiry", type=float, default=None, metavar="SECONDS",
                      help="a host silent this long is gone and its app work is placed "
                      "elsewhere (default: 3 x --heartbeat; a killed host is noticed sooner)")
    apps.add_argument("--reconcile-interval", type=float, default=5.0, metavar="SECONDS",
                      help="seconds between periodic reconcile passes; events trigger more "
                      "(default: 5)")
    apps.add_argument("--no-reconciler", action="store_true",
                      help="never act as the app reconciler (other hosts still can)")
    apps.add_argument("--retry-backoff", type=float, default=1.0, metavar="SECONDS",
                      help="wait before retrying a failed start, doubling per failure "
                      "(default: 1)")
    apps.add_argument("--retry-backoff-max", type=float, default=60.0, metavar="SECONDS",
                      help="the longest wait between retries of a failed start (default: 60)")
    policy = p.add_argument_group("policy service (docs/operations.md)")
    policy.add_argument("--policy-topic", default=None, metavar="SUBJECT",
                        help="ask the policy service on this NATS subject before starting an "
                        "actor or provider and before the first invocation between two "
                        "entities (default: no policy service)")
    policy.add_argument("--policy-changes-topic", default=None, metavar="SUBJECT",
                        help="a message here drops (or overrides) cached policy decisions")
    policy.add_argument("--policy-timeout", type=float, default=1.0, metavar="SECONDS",
                        help="how long to wait for a decision (default: 1)")
    policy.add_argument("--policy-fail-open", action="store_true",
                        help="permit when the policy service does not answer (default: deny)")
    policy.add_argument("--policy-cache-ttl", type=float, default=None, metavar="SECONDS",
                        help="how long a decision counts when the service sets no expiry "
                        "(default: until revoked on --policy-changes-topic)")
    p.set_defaults(handler=run)


def host_config(args: argparse.Namespace) -> HostConfig:
    """The HostConfig for the parsed arguments; bad seeds and keys are CliErrors."""
    from lattice.host import HostConfig  # the host (wasmtime & co) loads only when needed

    check_lattice_arg(args)
    _check_seed(args.host_seed, KeyRole.SERVER, "--host-seed", "SN")
    _check_seed(args.cluster_seed, KeyRole.CLUSTER, "--cluster-seed", "SC")
    issuers = args.cluster_issuer
    if issuers is None:
        issuers = [i.strip() for i in os.environ.get("LATTICE_CLUSTER_ISSUERS", "").split(",")
                   if i.strip()]
    for issuer in issuers:
        if issuer.startswith("S"):  # a seed is a secret: never echo it
            raise CliError("--cluster-issuer takes a cluster public key (C…), not a seed: give "
                           "the public key of the other cluster's seed (as its hosts print it: "
                           "\"cluster key C…\")")
        if not is_public_key(issuer, KeyRole.CLUSTER):
            raise CliError(f"--cluster-issuer {issuer!r} is not a cluster public key (C…)")
    nats = nats_options(args, js_domain=args.js_domain)
    check_js_domain(args.js_domain, "--js-domain")
    check_js_replicas(args.js_replicas)
    if not NatsOptions(url=args.nats_url).servers:
        raise CliError("--nats-url is empty: give one NATS URL, or several of one cluster "
                       "separated by commas")
    for option, value in (("--rpc-timeout", args.rpc_timeout), ("--heartbeat", args.heartbeat),
                          ("--host-expiry", args.host_expiry or 1),
                          ("--reconcile-interval", args.reconcile_interval),
                          ("--retry-backoff", args.retry_backoff),
                          ("--retry-backoff-max", args.retry_backoff_max)):
        if value <= 0:
            raise CliError(f"{option} must be a positive number of seconds")
    for option, count in (("--memory-limit", args.memory_limit),
                          ("--component-memory-limit", args.component_memory_limit),
                          ("--max-instances", args.max_instances)):
        if count < 1:
            raise CliError(f"{option} must be a whole number of at least 1")
    check_policy_options(args)
    from lattice.runtime import RuntimeConfig

    runtime = RuntimeConfig(memory_limit=args.memory_limit << 20,
                            component_memory_limit=args.component_memory_limit << 20)
    return HostConfig(nats=nats, lattice=args.lattice, host_seed=args.host_seed,
                      cluster_seed=args.cluster_seed, cluster_issuers=issuers,
                      labels=parse_pairs(args.label, "--label"),
                      allow_unsigned=args.allow_unsigned, rpc_timeout=args.rpc_timeout,
                      js_domain=args.js_domain or None, js_replicas=args.js_replicas,
                      heartbeat_interval=args.heartbeat, host_expiry=args.host_expiry,
                      reconcile_interval=args.reconcile_interval,
                      reconciler=not args.no_reconciler, runtime=runtime,
                      max_instances=args.max_instances, retry_backoff=args.retry_backoff,
                      retry_backoff_max=args.retry_backoff_max,
                      policy_topic=args.policy_topic or None,
                      policy_changes_topic=args.policy_changes_topic or None,
                      policy_timeout=args.policy_timeout, policy_fail_open=args.policy_fail_open,
                      policy_cache_ttl=args.policy_cache_ttl)


_SUBJECT = re.compile(r"[^\s.*>]+(\.[^\s.*>]+)*")
_FILTER = re.compile(r"([^\s.*>]+|\*)(\.([^\s.*>]+|\*))*(\.>)?|>")


def check_policy_options(args: argparse.Namespace) -> None:
    topic, changes = args.policy_topic, args.policy_changes_topic
    if topic is not None and not _SUBJECT.fullmatch(topic):
        raise CliError(f"--policy-topic {topic!r} is not a NATS subject to send requests to: "
                       "dot-separated tokens without spaces or wildcards (e.g. wasmcloud.policy)")
    if changes is not None and not _FILTER.fullmatch(changes):
        raise CliError(f"--policy-changes-topic {changes!r} is not a NATS subject (tokens "
                       "separated by dots, no spaces; * and a final > are allowed)")
    if not topic and (changes or args.policy_fail_open or args.policy_cache_ttl is not None):
        raise CliError("--policy-changes-topic, --policy-fail-open and --policy-cache-ttl need "
                       "--policy-topic (the policy service to ask)")
    if args.policy_timeout <= 0:
        raise CliError("--policy-timeout must be a positive number of seconds")
    if args.policy_cache_ttl is not None and args.policy_cache_ttl < 0:
        raise CliError("--policy-cache-ttl must be a number of seconds ≥ 0")


_DOMAIN = re.compile(r"[A-Za-z0-9_-]+")


def check_js_domain(domain: str | None, option: str) -> None:
    """A JetStream domain is one subject token: letters, digits, ``_`` and ``-``."""
    if domain is not None and domain != "" and not _DOMAIN.fullmatch(domain):
        raise CliError(f"{option} {domain!r} is not a JetStream domain name: use letters, "
                       "digits, '_' and '-' only (e.g. hub, edge-1)")


def check_js_replicas(replicas: int) -> None:
    if not 1 <= replicas <= 5:
        raise CliError(f"--js-replicas {replicas} is out of range: JetStream keeps 1 to 5 "
                       "replicas (use the number of nodes of the NATS cluster, at most 5)")


def _check_seed(seed: str | None, role: KeyRole, option: str, prefix: str) -> None:
    if seed is None:
        return
    try:
        KeyPair.from_seed(seed, role)
    except NKeyError as exc:
        raise CliError(f"{option} must be a {role.name.lower()} seed ({prefix}…): {exc}") from None


def run(args: argparse.Namespace) -> int:
    config = host_config(args)
    return asyncio.run(_serve(config))


async def _serve(config: HostConfig) -> int:
    from lattice.host import Host

    host = Host(config)
    try:
        await host.start()
    except NatsConnectError as exc:
        raise CliError(str(exc)) from None
    except (NatsError, TimeoutError) as exc:  # the lattice store (JetStream) is unreachable
        domain = f" domain {config.js_domain!r}" if config.js_domain else ""
        raise CliError(
            f"the host could not open the lattice store in JetStream{domain} at "
            f"{config.nats.url} ({exc or type(exc).__name__}): the NATS account needs "
            "JetStream; behind a leaf node, --js-domain must be the hub's domain; a new NATS "
            "cluster's JetStream starts once all its nodes run (docs/operations.md)") from None
    print(f"Host {host.host_id} ({host.friendly_name}) is running\n"
          f"  lattice      {host.lattice}\n"
          f"  NATS         {config.nats.url}\n"
          + (f"  JS domain    {config.js_domain}\n" if config.js_domain else "") +
          f"  cluster key  {host.cluster_key.public_key}\n"
          "Press Ctrl-C to stop it.", flush=True)
    await host.run_until_stopped()
    print(f"Host {host.host_id} stopped", flush=True)
    return 0
