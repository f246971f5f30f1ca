"""`python -m policy_server.cli`: the `policy-server` command."""

import sys

from policy_server.cli.command import main

sys.exit(main())
