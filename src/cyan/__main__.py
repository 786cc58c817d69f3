from cyan.cli.entry import main

main()
