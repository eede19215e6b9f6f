from telemetry_rollup import cli

raise SystemExit(cli.main())
