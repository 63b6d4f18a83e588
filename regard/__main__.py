from regard.cli import main

raise SystemExit(main())
