from cyan.cli.main import app

app()
