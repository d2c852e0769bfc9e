from cifarlab.cli import run

run()
