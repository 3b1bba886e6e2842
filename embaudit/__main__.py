from embaudit.cli import run

run()
