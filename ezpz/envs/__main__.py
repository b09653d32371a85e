"""``python -m ezpz.envs``: the yeet-env worker, one rank per node (started by :func:`ezpz.envs.yeet.yeet_env`)."""

from ezpz.envs.yeet import _main

raise SystemExit(_main())
