from edgekd.cli import entry

entry()
