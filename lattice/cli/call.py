"""`lattice call` (placeholder until implemented)."""


def register(sub) -> None:
    sub.add_parser("call", help="(not implemented yet)").set_defaults(handler=lambda a: 0)
