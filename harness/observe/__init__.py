"""The defendant and the judge: a method's code runs in its own process and only reports
plain observations (:mod:`.defendant`, :mod:`.plain`); lipbench computes every number a
verdict rests on in a process that never imports the method's module (README, "The trust model";
docs/methods.md)."""
from .defendant import DefendantError, in_defendant
from .plain import ObservationError, check_plain, load, plain, save

__all__ = ["DefendantError", "ObservationError", "check_plain", "in_defendant", "load", "plain", "save"]
