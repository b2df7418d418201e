from kdsim.cli import main

raise SystemExit(main())
