from complexo.cli import entry

entry()
