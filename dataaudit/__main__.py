import sys

from dataaudit.cli import main

sys.exit(main())
