from polyfuse.cli import main

main()
