"""`lattice claims` (placeholder until implemented)."""


def register(sub) -> None:
    sub.add_parser("claims", help="(not implemented yet)").set_defaults(handler=lambda a: 0)
