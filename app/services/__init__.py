"""Qt-free services shared by the GUI and the CLI (the CLI is never a second implementation)."""
