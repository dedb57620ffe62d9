from slo_engine.cli import main

raise SystemExit(main())
