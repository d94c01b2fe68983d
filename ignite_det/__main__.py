"""``python -m ignite_det evaluate GT.json PREDICTIONS.json ...``: the ``ignite-det`` command."""

from ignite_det.cli.main import main

raise SystemExit(main())
