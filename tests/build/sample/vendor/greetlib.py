"""A stand-in for a vendored pure-Python dependency."""


def greet(name: str) -> str:
    return f"Hello, {name}!"
