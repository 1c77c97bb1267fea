from ffnkv.cli import main

raise SystemExit(main())
