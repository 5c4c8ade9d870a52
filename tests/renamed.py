"""Every built-in method subclassed under a new name and nothing else, importable as
``renamed:<built-in name>`` (``renamed:grad_penalty`` is the class ``Renamed_grad_penalty``,
registry-style name ``renamed_grad_penalty``).

A suite must treat each exactly as the built-in it copies: settings follow a method's claim,
tags and declarations, never its name (tests/test_settings_by_claim.py).
"""
from harness.methods import available
from harness.methods.registry import builtin

def _builtins() -> list[str]:
    names = []
    for name in available():
        try:
            builtin(name)
        except LookupError:
            continue  # an installed entry point, not a built-in
        names.append(name)
    return names


BUILTINS = _builtins()
for _name in BUILTINS:
    _cls = builtin(_name)
    globals()[_name] = type(f"Renamed_{_name}", (_cls,), {
        "name": f"renamed_{_name}", "__module__": __name__,
        "__doc__": f"{_cls.__name__} under another name, unchanged."})
