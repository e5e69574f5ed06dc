"""The ``twsbus`` command (``twsbus.cli:app``), one module per concern.

``app`` (the typer application and what commands share), ``login`` (the NATS options of the
client commands, written once), ``daemon`` (run, sim, demo), ``query`` (req, ops) with
``catalog`` (the ops, from subjects.yaml) and ``replies`` (order replies in brief), ``live``
(sub, orders), ``status`` (status, health) and ``surface`` (subjects, nats-config). Every
command is a thin layer over the library; heavy imports happen inside the commands, so
``twsbus --help`` stays quick.
"""

from twsbus.cli import daemon, live, query, status, surface  # noqa: F401  (register commands)
from twsbus.cli.app import app


def main() -> None:  # pragma: no cover
    app()


__all__ = ["app", "main"]
