"""`python -m onprem_lb` is the `onprem-lb` command."""

from onprem_lb.cli import main

raise SystemExit(main())
