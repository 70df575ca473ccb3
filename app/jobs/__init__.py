"""Export job lifecycle (Qt-free): used by the CLI directly and by the GUI's QThreadPool runners."""
