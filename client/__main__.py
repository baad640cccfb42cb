"""``python -m client``: raftkv-cli without the console script on PATH."""

from client.cli import main

main(prog_name="raftkv-cli")
