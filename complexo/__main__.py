from complexo.cli import main

main()
