import sys

from b2m_neuro.cli import main

sys.exit(main())
