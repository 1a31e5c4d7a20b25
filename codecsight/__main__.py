from codecsight.cli import main

raise SystemExit(main())
