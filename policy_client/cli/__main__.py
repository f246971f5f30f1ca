"""`python -m policy_client.cli`: the `policy-client` command."""

import sys

from policy_client.cli.command import main

sys.exit(main())
