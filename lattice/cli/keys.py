"""`lattice keys` (placeholder until implemented)."""


def register(sub) -> None:
    sub.add_parser("keys", help="(not implemented yet)").set_defaults(handler=lambda a: 0)
