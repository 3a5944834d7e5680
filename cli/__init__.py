"""The ``clipfeed`` command: composes each stage's commands (see ``cli.main``)."""
