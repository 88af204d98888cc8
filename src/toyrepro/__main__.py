from toyrepro.cli import main

main()
