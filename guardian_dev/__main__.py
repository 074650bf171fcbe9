"""``python -m guardian_dev`` is ``guardian-dev``."""

from guardian_dev.cli import main

main()
