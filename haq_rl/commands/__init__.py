"""Sub-commands of the ``haq-rl`` CLI: each module has ``add_parser`` and ``run``.

``add_parser(subparsers)`` registers the command and calls
``parser.set_defaults(run=run)``; ``run(args) -> int`` returns the exit code.
"""
