"""typer sub-apps and shared CLI helpers; ``cli.py`` joins them into the ``vsearch`` command."""
